"""HTTP client for the Hoiio REST API: IVR blocks and the voice / conference endpoints.

Theory of operation. One logical request may take several HTTP attempts, all inside a total time
budget (a caller is listening to dead air meanwhile). An attempt is retried, after a capped
exponential backoff with full jitter, when it certainly did not reach Hoiio (connection refused,
connect timeout), when Hoiio says "try again" (``error_rate_limit_exceeded``,
``error_session_not_ready``, ``error_internal_server_error``, HTTP 429/500/503), and when the answer
was lost but the request is idempotent (hangup, hold/unhold, voice/hangup, query_status, moderate).
Hoiio has no idempotency key, so a play, gather, record, monitor, transfer, dial, voice/call or
conference/call whose answer was lost (read timeout, connection dropped after sending, 502/504
gateway errors, an unreadable 2xx) is never sent again: the result says ``maybe_delivered`` and the
service decides (wait for the notification, or give up).

The access token travels in the POST body only. It is kept in a ``_Secret`` wrapper so it does not
show in ``repr``, and it is scrubbed from every error text; ``SendResult.request_params`` is redacted.

One ``requests.Session`` (connection pool) per process, created lazily: a session created before a
gunicorn fork is never used by the child (sockets would be shared between processes).

May import ``engine.core``, ``engine.providers`` and requests (with urllib3's exception types);
never Flask or SQLAlchemy.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)

from engine.core.actions import Block
from engine.providers.base import Category, PooledHttp, SendResult, form_encode
from engine.providers.hoiio import wire
from engine.providers.hoiio.statuses import (
    ERROR_BAD_RESPONSE,
    ERROR_CONNECTION,
    ERROR_TIMEOUT,
    SUCCESS,
    classify,
)

__all__ = ["HoiioClient", "HoiioClientError", "SendResult", "IDEMPOTENT_BLOCKS", "IDEMPOTENT_APIS"]

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://secure.hoiio.com/open"
#: Requests that may be sent again when their answer was lost.
IDEMPOTENT_BLOCKS = frozenset({"hangup", "hold", "unhold"})
IDEMPOTENT_APIS = frozenset({"voice/hangup", "voice/query_status", "conference/moderate"})

#: Do not start an attempt with less time than this left in the budget.
MIN_ATTEMPT_SECONDS = 0.05
MAX_RESPONSE_BYTES = 64 * 1024
_RETRY_HTTP = frozenset({429, 500, 503, 505, 506, 507, 508, 510, 511})
_GATEWAY_HTTP = frozenset({502, 504})  # a proxy gave up: the request may have been carried out


class HoiioClientError(RuntimeError):
    """An unexpected failure inside the client (a bug, not a provider answer); secrets scrubbed."""


class _Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


@dataclass
class _Attempt:
    """What one HTTP attempt produced."""

    status: str
    http_status: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    sent: bool = True  # False: certainly never reached Hoiio
    answered: bool = False  # True: Hoiio's JSON answer was read
    known: bool = False  # True: what happened is known (an answer, or a refusal page)
    permanent: bool = False  # a transport failure that retrying cannot fix (DNS, TLS, bad URL)
    retry_after: float | None = None
    error: str | None = None

    @property
    def maybe_delivered(self) -> bool:
        return self.sent and not (self.answered or self.known)


class HoiioClient:
    """Sends IVR blocks and voice/conference requests to Hoiio; see the module docstring."""

    name = "hoiio"

    def __init__(
        self,
        api_url: str,
        app_id: str,
        access_token: str,
        *,
        session_factory: Callable[[], requests.Session] = requests.Session,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        budget: float = 6.0,
        max_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        backoff_base: float = 0.2,
        backoff_max: float = 2.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise ValueError("api_url must be an http or https URL")
        if not app_id or not access_token:
            raise ValueError("app_id and access_token must not be empty")
        if budget <= 0 or max_attempts < 1:
            raise ValueError("budget must be positive and max_attempts at least 1")
        self.api_url = api_url.rstrip("/")
        self.app_id = app_id
        self._token = _Secret(access_token)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.budget = budget
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_response_bytes = max_response_bytes
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._http = PooledHttp(session_factory, self._prepare_session)
        #: url -> a prepared POST without its body, copied for each request (see ``_attempt``)
        self._prepared: dict[str, requests.PreparedRequest] = {}

    def __repr__(self) -> str:
        return f"HoiioClient(api_url={self.api_url!r}, app_id={self.app_id!r})"

    # -- public API --------------------------------------------------------------------------------

    def send_block(
        self,
        block: Block,
        *,
        session: str,
        notify_url: str | None,
        monitor_notify_url: str | None = None,
    ) -> SendResult:
        """Send one IVR block. Raises ``wire.BlockError`` (before any I/O) for a block that Hoiio
        could never accept; every provider or network outcome comes back as a ``SendResult``."""
        params = wire.block_params(
            block, session=session, notify_url=notify_url, monitor_notify_url=monitor_notify_url
        )
        return self._request(block.endpoint, params, idempotent=block.kind in IDEMPOTENT_BLOCKS)

    def call(self, api: str, params: Sequence[tuple[str, str]]) -> SendResult:
        """Call voice/call, voice/hangup, voice/query_status, conference/call or conference/moderate.
        ``params`` are the documented ones without credentials (``wire.BlockError`` otherwise)."""
        ordered = wire.call_params(api, params)
        return self._request(api, ordered, idempotent=api in IDEMPOTENT_APIS)

    def close(self) -> None:
        """Close this process's connection pool (a later request opens a new one)."""
        self._http.close()

    # -- internals ---------------------------------------------------------------------------------

    def _prepare_session(self, http: requests.Session) -> None:
        # Read proxy settings from the environment once, not on every request (requests otherwise
        # scans os.environ for each call: a measurable share of a notification).
        http.proxies.update(requests.utils.get_environ_proxies(self.api_url))
        http.trust_env = False

    def _request(self, endpoint: str, params: list[tuple[str, str]], *, idempotent: bool) -> SendResult:
        start = self._clock()
        deadline = start + self.budget
        url = f"{self.api_url}/{endpoint}"
        body = form_encode([*params, ("app_id", self.app_id)],
                           uncached=[("access_token", self._token.reveal())]).encode("ascii")
        attempts = 0
        resent = False
        ever_ambiguous = False
        while True:
            attempts += 1
            remaining = max(deadline - self._clock(), MIN_ATTEMPT_SECONDS)
            outcome = self._attempt(url, body, remaining)
            ever_ambiguous = ever_ambiguous or outcome.maybe_delivered
            log.debug(
                "hoiio %s attempt %d: http=%s status=%s", endpoint, attempts, outcome.http_status, outcome.status
            )
            if attempts >= self.max_attempts or not self._should_retry(outcome, idempotent):
                break
            delay = self._rng() * min(self.backoff_max, self.backoff_base * 2 ** (attempts - 1))
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            if self._clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
                break
            resent = resent or outcome.maybe_delivered
            self._sleep(delay)
        return self._result(endpoint, params, outcome, attempts, start, resent, ever_ambiguous)

    def _should_retry(self, outcome: _Attempt, idempotent: bool) -> bool:
        if outcome.permanent:
            return False
        if not outcome.sent:
            return True
        if outcome.answered:
            info = classify(outcome.status)
            return info.retry_now or (not info.known and outcome.http_status in _RETRY_HTTP)
        if outcome.http_status in _RETRY_HTTP:
            return True  # an error page from Hoiio's front end: nothing was carried out
        if outcome.known:
            return False  # a plain refusal page (3xx/4xx/501): retrying will not help
        return idempotent  # the answer was lost

    def _result(
        self,
        endpoint: str,
        params: list[tuple[str, str]],
        outcome: _Attempt,
        attempts: int,
        start: float,
        resent: bool,
        ever_ambiguous: bool,
    ) -> SendResult:
        info = classify(outcome.status)
        ok = outcome.answered and outcome.status == SUCCESS
        category = info.category
        if outcome.status == ERROR_BAD_RESPONSE and outcome.known and outcome.http_status not in _RETRY_HTTP:
            category = Category.FLOW_ERROR  # a plain refusal (wrong URL, 4xx page): configuration
        result = SendResult(
            ok=ok,
            status=outcome.status,
            category=category,
            http_status=outcome.http_status,
            data=outcome.data,
            attempts=attempts,
            elapsed_ms=int(round((self._clock() - start) * 1000)),
            maybe_delivered=not ok and ever_ambiguous,
            request_params=tuple(wire.redact([*params, ("app_id", self.app_id)])),
            endpoint=endpoint,
            meaning=info.meaning,
            error=outcome.error,
            resent=resent,
        )
        if ok:  # debug: the notification's own log line lists what was sent
            log.debug("hoiio %s: %s after %d attempt(s)", endpoint, result.status, attempts)
        elif result.category is Category.AUTH:
            log.error(
                "hoiio %s rejected the credentials of app %s: %s (%s)",
                endpoint, self.app_id, result.status, result.meaning,
            )
        else:
            log.warning(
                "hoiio %s failed: %s (%s) after %d attempt(s), http=%s maybe_delivered=%s",
                endpoint, result.status, result.meaning, attempts, result.http_status, result.maybe_delivered,
            )
        return result

    def _attempt(self, url: str, body: bytes, remaining: float) -> _Attempt:
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        try:
            http = self._http.session()
            response = http.send(self._request_for(http, url, body), timeout=timeout, stream=True,
                                 allow_redirects=False)
            try:
                return self._read(response)
            finally:
                if response.raw is not None:
                    response.close()
        except requests.RequestException as exc:
            return self._transport_failure(exc)
        except Exception as exc:
            unexpected = f"unexpected {type(exc).__name__} while calling Hoiio: {self._scrub(str(exc))}"
        # Raised outside the except block so the original (which may hold the request body, token
        # included) is neither chained nor kept as __context__.
        raise HoiioClientError(unexpected)

    def _request_for(self, http: requests.Session, url: str, body: bytes) -> requests.PreparedRequest:
        """The POST of ``body`` to ``url``: a copy of one prepared per URL, with the body set.

        What ``session.post`` would send (the session's headers with ours, no cookies, no auth),
        without preparing the URL and merging the session's settings again on every request: for
        requests that is more work than sending."""
        template = self._prepared.get(url)
        if template is None:
            headers = {**http.headers, "Content-Type": "application/x-www-form-urlencoded",
                       "Accept": "application/json"}
            template = requests.Request("POST", url, headers=headers).prepare()
            if len(self._prepared) < 64:  # the endpoints of one API: a handful
                self._prepared[url] = template
        prepared = template.copy()
        prepared.body = body
        prepared.headers["Content-Length"] = str(len(body))
        return prepared

    def _read(self, response: requests.Response) -> _Attempt:
        code = response.status_code
        retry_after = _retry_after(response.headers.get("Retry-After"))
        try:
            raw, too_large = self._read_body(response)
        except requests.RequestException as exc:
            # The status line arrived, so Hoiio has the request; what it did with it is unknown.
            timed_out = _has_cause(exc, (ReadTimeoutError, requests.Timeout))
            return _Attempt(
                ERROR_TIMEOUT if timed_out else ERROR_CONNECTION,
                http_status=code,
                error=self._describe(exc),
            )
        status, data = (None, {}) if too_large else _parse_json(raw)
        if status is not None:
            return _Attempt(
                status, http_status=code, data=data, answered=True, known=True, retry_after=retry_after
            )
        why = "response too large" if too_large else "response is not JSON with a status"
        # A gateway error (502/504) or an unreadable 2xx leaves the outcome unknown; any other
        # error page (429/5xx from the front end, 3xx/4xx refusals) means nothing was carried out.
        unknown = code in _GATEWAY_HTTP or 200 <= code < 300
        return _Attempt(
            ERROR_BAD_RESPONSE,
            http_status=code,
            known=not unknown,
            retry_after=retry_after,
            error=f"HTTP {code}: {why}",
        )

    def _read_body(self, response: requests.Response) -> tuple[bytes, bool]:
        if response.raw is None:  # a transport (test double) that filled in the content directly
            content = response.content or b""
            return (b"", True) if len(content) > self.max_response_bytes else (content, False)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=8192):
            size += len(chunk)
            if size > self.max_response_bytes:
                return b"", True
            chunks.append(chunk)
        return b"".join(chunks), False

    def _transport_failure(self, exc: requests.RequestException) -> _Attempt:
        error = self._describe(exc)
        # Order matters: urllib3's NameResolutionError is a NewConnectionError, which is a
        # ConnectTimeoutError.
        if isinstance(exc, requests.exceptions.SSLError) or _has_cause(exc, (NameResolutionError,)):
            return _Attempt(ERROR_CONNECTION, sent=False, permanent=True, error=error)
        if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ProxyError) or _has_cause(
            exc, (ConnectTimeoutError, NewConnectionError, ConnectionRefusedError)
        ):
            return _Attempt(ERROR_CONNECTION, sent=False, error=error)
        if isinstance(exc, requests.exceptions.ReadTimeout) or _has_cause(exc, (ReadTimeoutError,)):
            return _Attempt(ERROR_TIMEOUT, error=error)
        if isinstance(exc, requests.ConnectionError):
            # Dropped or reset after the request went out (or an unknown cause): it may have arrived.
            return _Attempt(ERROR_CONNECTION, error=error)
        # InvalidURL, MissingSchema, InvalidHeader, ...: nothing was sent and nothing will work.
        return _Attempt(ERROR_CONNECTION, sent=False, permanent=True, error=error)

    def _describe(self, exc: BaseException) -> str:
        return self._scrub(f"{type(exc).__name__}: {exc}")[:500]

    def _scrub(self, text: str) -> str:
        token = self._token.reveal()
        for form in {token, quote_plus(token), quote(token, safe="")}:
            text = text.replace(form, "<redacted>")
        return text


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: args, MaxRetryError.reason, __cause__/__context__."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, MaxRetryError) and current.reason is not None:
            stack.append(current.reason)
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _has_cause(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(c, types) for c in _causes(exc))


def _parse_json(raw: bytes) -> tuple[str | None, dict[str, Any]]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, {}
    if not isinstance(data, dict):
        return None, {}
    status = data.get("status")
    if not isinstance(status, str) or not status or len(status) > 100:
        return None, {}
    return status, data


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delay form; the date form is ignored."""
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        return None
    return float(int(value))
