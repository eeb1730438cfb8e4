"""HTTP client for VoipNow's UnifiedAPI: conference invites, their status and hang-up.

``VoipNowClient`` satisfies ``engine.providers.base.Provider``: ``call(api, params)`` takes one of
``APIS`` with string parameters and answers with a ``SendResult`` whose ``status`` is ``success`` or
VoipNow's error code (``pc_destination_invalid``, ``access_denied``, ...) and whose ``category`` and
``meaning`` come from ``wire.ERRORS``. VoipNow runs no IVR blocks, so ``send_block`` always answers
``error_not_supported``.

The token travels in the ``Authorization: Bearer`` header only; it never appears in ``repr``, results
or error texts. A conferenceInvite is not idempotent: an answer lost after sending is reported as
``maybe_delivered`` and never re-sent. Queries and hang-ups are retried once when the connection
failed.

May import ``engine.core``, ``engine.providers`` and requests; never Flask or SQLAlchemy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from engine.core.actions import Block
from engine.providers.base import Category, PooledHttp, SendResult
from engine.providers.voipnow import wire

__all__ = ["APIS", "VoipNowClient"]

log = logging.getLogger(__name__)

#: What ``call`` accepts: the API name and its parameters (required ones first).
APIS: dict[str, tuple[str, ...]] = {
    "conferenceInvite": ("destination", "conference_number", "pin", "wait_for_pickup", "caller_id"),
    "phoneCall": ("id",),
    "hangup": ("id", "phone_number"),
}
_REQUIRED = {"conferenceInvite": ("destination",), "phoneCall": ("id",), "hangup": ("id",)}
MAX_RESPONSE_BYTES = 256 * 1024


class VoipNowClient:
    """Conference invites through one Conference extension of the token's user."""

    name = "voipnow"

    def __init__(
        self,
        base_url: str,
        token: str,
        extension: str,
        *,
        user: str = wire.ME,
        session_factory: Callable[[], requests.Session] = requests.Session,
        connect_timeout: float = 2.0,
        read_timeout: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http or https URL")
        if not token:
            raise ValueError("token must not be empty")
        if not wire.EXTENSION_RE.fullmatch(extension or ""):
            raise ValueError("extension must be an extension number such as 211 or 0003*211")
        self.base_url = base_url.rstrip("/")
        self.extension = extension
        self.user = user
        self._token = token
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._clock = clock
        self._http = PooledHttp(session_factory)

    def __repr__(self) -> str:
        return f"VoipNowClient(base_url={self.base_url!r}, extension={self.extension!r})"

    # -- Provider ----------------------------------------------------------------------------------

    def send_block(
        self, block: Block, *, session: str, notify_url: str | None, monitor_notify_url: str | None = None
    ) -> SendResult:
        info = wire.classify(wire.ERROR_NOT_SUPPORTED)
        return SendResult(ok=False, status=info.code, category=info.category, meaning=info.meaning,
                          endpoint=block.endpoint)  # fmt: skip

    def call(self, api: str, params: Sequence[tuple[str, str]]) -> SendResult:
        """``conferenceInvite`` (destination, conference_number?, pin?, wait_for_pickup?, caller_id?),
        ``phoneCall`` (id) or ``hangup`` (id, phone_number?). Raises ``wire.InviteError`` before any
        I/O for a request VoipNow could never accept."""
        layout = APIS.get(api)
        if layout is None:
            raise wire.InviteError("api", f"unsupported VoipNow API {api!r}; expected one of {', '.join(APIS)}")
        given: dict[str, str] = {}
        for name, value in params:
            if name not in layout:
                raise wire.InviteError(name, f"is not a parameter of {api}")
            if name in given:
                raise wire.InviteError(name, "is given more than once")
            given[name] = value
        for name in _REQUIRED[api]:
            if not given.get(name):
                raise wire.InviteError(name, "is required")
        if api == "conferenceInvite":
            wait = given.get("wait_for_pickup")
            if wait is not None and not (wait.isascii() and wait.isdigit()):
                raise wire.InviteError("wait_for_pickup", "must be a whole number of seconds")
            return self.invite(
                given["destination"], conference_number=given.get("conference_number"), pin=given.get("pin"),
                wait_for_pickup=None if wait is None else int(wait), caller_id=given.get("caller_id"),
            )  # fmt: skip
        if api == "phoneCall":
            return self.phone_call(given["id"])
        return self.hang_up(given["id"], phone_number=given.get("phone_number"))

    # -- the requests ------------------------------------------------------------------------------

    def invite(
        self,
        destination: str,
        *,
        conference_number: str | None = None,
        pin: str | None = None,
        wait_for_pickup: int | None = None,
        caller_id: str | None = None,
    ) -> SendResult:
        """Invite ``destination`` into the extension's conference. ``data["ids"]`` lists the created
        phone calls' ids (empty when VoipNow answered 204: nothing to follow)."""
        req = wire.invite_request(
            extension=self.extension, destination=destination, conference_number=conference_number, pin=pin,
            wait_for_pickup=wait_for_pickup, caller_id=caller_id, user=self.user,
        )  # fmt: skip
        result, data = self._send("conferenceInvite", req, idempotent=False)
        if not result.ok:
            return result
        try:
            created = [] if data is None else wire.parse_invite_answer(data)
        except ValueError as exc:
            return _replace(result, ok=False, status=wire.ERROR_BAD_RESPONSE, error=str(exc), maybe_delivered=True)
        return _replace(result, data={"ids": [c["id"] for c in created], "phone_calls": created})

    def phone_call(self, phone_call_id: str) -> SendResult:
        """The phone call's current PhoneCall (``data["phone_call"]``, None when VoipNow no longer
        lists it: it has ended)."""
        req = wire.phone_call_request(self.extension, phone_call_id, user=self.user)
        result, data = self._send("phoneCall", req, idempotent=True)
        if result.status == "pc_phonecall_invalid":
            return _replace(result, ok=True, status=wire.SUCCESS, category=Category.OK, data={"phone_call": None})
        if not result.ok:
            return result
        try:
            calls = [] if data is None else wire.parse_phone_calls(data)
        except ValueError as exc:
            return _replace(result, ok=False, status=wire.ERROR_BAD_RESPONSE, error=str(exc))
        found = next((c for c in calls if c.get("id") == phone_call_id), None)
        return _replace(result, data={"phone_call": found})

    def hang_up(self, phone_call_id: str, *, phone_number: str | None = None) -> SendResult:
        """Hang up the phone call. ``data["ids"]`` lists what VoipNow hung up (empty: nothing was
        live any more)."""
        req = wire.hangup_request(self.extension, phone_call_id, phone_number=phone_number, user=self.user)
        result, data = self._send("hangup", req, idempotent=True)
        if result.status == "pc_phonecall_invalid":
            return _replace(result, ok=True, status=wire.SUCCESS, category=Category.OK, data={"ids": []})
        if not result.ok:
            return result
        ids: list[str] = []
        items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                ids.append(item["id"])
        return _replace(result, data={"ids": ids})

    def close(self) -> None:
        self._http.close()

    # -- internals ---------------------------------------------------------------------------------

    def _send(self, endpoint: str, req: wire.HttpRequest, *, idempotent: bool) -> tuple[SendResult, Any]:
        started = self._clock()
        attempts = 0
        maybe_delivered = False
        while True:
            attempts += 1
            status, http_status, data, error, sent = self._attempt(req)
            maybe_delivered = maybe_delivered or (sent and status in (wire.ERROR_TIMEOUT, wire.ERROR_CONNECTION,
                                                                      wire.ERROR_BAD_RESPONSE))  # fmt: skip
            retry = status in (wire.ERROR_CONNECTION, wire.ERROR_TIMEOUT) and (idempotent or not sent)
            if attempts >= 2 or not retry:
                break
        info = wire.classify(status)
        ok = status == wire.SUCCESS
        result = SendResult(
            ok=ok,
            status=status,
            category=info.category,
            http_status=http_status,
            data={} if ok else ({"error": data.get("error")} if isinstance(data, dict) and "error" in data else {}),
            attempts=attempts,
            elapsed_ms=int(round((self._clock() - started) * 1000)),
            maybe_delivered=not ok and maybe_delivered and not idempotent,
            request_params=tuple(req.query),
            endpoint=endpoint,
            meaning=info.meaning,
            error=error,
        )
        if ok:
            log.info("voipnow %s: accepted (HTTP %s)", endpoint, http_status)
        else:
            log.warning("voipnow %s failed: %s (%s), HTTP %s", endpoint, status, info.meaning, http_status)
        return result, data

    def _attempt(self, req: wire.HttpRequest) -> tuple[str, int | None, Any, str | None, bool]:
        """(status, http status, parsed body, error text, whether the request may have been sent)."""
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        kwargs: dict[str, Any] = {}
        if req.body is not None:
            headers["Content-Type"] = "application/json"
            kwargs["data"] = json.dumps(req.body).encode()
        try:
            response = self._http.session().request(
                req.method, self.base_url + req.path, params=list(req.query) or None, headers=headers,
                timeout=(self.connect_timeout, self.read_timeout), allow_redirects=False, stream=True, **kwargs,
            )  # fmt: skip
        except requests.ConnectTimeout:
            return wire.ERROR_TIMEOUT, None, None, "connect timeout", False
        except requests.ConnectionError as exc:
            sent = "RemoteDisconnected" in str(exc) or "reset" in str(exc).lower()
            return wire.ERROR_CONNECTION, None, None, self._scrub(f"{type(exc).__name__}"), sent
        except requests.Timeout:
            return wire.ERROR_TIMEOUT, None, None, "read timeout", True
        except requests.RequestException as exc:
            return wire.ERROR_CONNECTION, None, None, self._scrub(type(exc).__name__), False
        try:
            raw = self._read(response)
        except requests.RequestException as exc:
            return wire.ERROR_CONNECTION, response.status_code, None, self._scrub(type(exc).__name__), True
        finally:
            response.close()
        code = response.status_code
        if raw is None:
            return wire.ERROR_BAD_RESPONSE, code, None, f"HTTP {code}: response too large", True
        if code == 204 or (200 <= code < 300 and not raw.strip()):
            return wire.SUCCESS, code, None, None, True
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if 200 <= code < 300:
            if data is None:
                return wire.ERROR_BAD_RESPONSE, code, None, f"HTTP {code}: response is not JSON", True
            return wire.SUCCESS, code, data, None, True
        error_code, message = wire.parse_error(data)
        if error_code is None:
            error_code = {401: "access_denied", 500: "internal_server_error", 501: "request_not_implemented"}.get(
                code, wire.ERROR_BAD_RESPONSE
            )
        text = f"HTTP {code}: {error_code}" + (f" ({message[:200]})" if message else "")
        return error_code, code, {"error": {"code": error_code, "message": message}}, self._scrub(text), True

    def _read(self, response: requests.Response) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=8192):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<redacted>")


def _replace(result: SendResult, **changes: Any) -> SendResult:
    from dataclasses import replace

    if "status" in changes and "meaning" not in changes:
        info = wire.classify(changes["status"])
        changes.setdefault("category", info.category)
        changes["meaning"] = info.meaning
    return replace(result, **changes)
