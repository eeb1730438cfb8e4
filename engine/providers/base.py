"""What the service layer needs from a telephony provider, independent of which one it is.

A provider module (``engine.providers.hoiio``, later ``engine.providers.voipnow``) supplies a client
that satisfies ``Provider`` and returns ``SendResult`` values whose ``category`` tells the service what
to do next, whatever the provider's own status strings are. ``PooledHttp`` is the per-process HTTP
session (connection pool) that the provider clients share the logic of; ``form_encode`` is their
form encoding.

May import ``engine.core`` and the standard library only (no requests, Flask or SQLAlchemy).
"""

from __future__ import annotations

import enum
import functools
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote_plus

from engine.core.actions import Block


class Category(enum.Enum):
    """What a provider answer means for the call, and so what the service should do with it."""

    #: Accepted.
    OK = "ok"
    #: Transient trouble (rate limit, session busy, provider or network failure). The client has
    #: already retried within its time budget; a ``SendResult`` carrying it means the budget ran out.
    RETRY = "retry"
    #: The call is over (session ended, unknown or not ours): close the session, send nothing more.
    SESSION_OVER = "session_over"
    #: The destination could not be called (bad/unsupported number, caller id, credit, concurrency,
    #: trial limits): the transfer's or side call's failure exit.
    DESTINATION = "destination"
    #: The request itself was wrong (message, tag, notify URL, parameters): a bug in the engine or
    #: the flow; the flow's error handler takes over.
    FLOW_ERROR = "flow_error"
    #: Bad or missing application credentials: the error handler, plus a loud log for the operator.
    AUTH = "auth"


@dataclass(frozen=True)
class SendResult:
    """The outcome of one logical provider request (possibly several HTTP attempts).

    ``status`` is the provider's status string (``success_ok``, ``error_*``) or one of the client's
    own: ``error_timeout``, ``error_connection``, ``error_bad_response``. ``maybe_delivered`` is True
    when the provider may have received and acted on the request but the answer was lost: do not
    resend a non-idempotent request; wait for its notification or give up per policy.
    ``request_params`` never contains credentials' secrets.
    """

    ok: bool
    status: str
    category: Category
    http_status: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 0
    elapsed_ms: int = 0
    maybe_delivered: bool = False
    request_params: tuple[tuple[str, str], ...] = ()
    endpoint: str = ""
    #: Plain-English meaning of ``status``.
    meaning: str = ""
    #: What went wrong in the transport, scrubbed of secrets; None when a response was parsed.
    error: str | None = None
    #: True when an earlier attempt may have reached the provider and the (idempotent) request was
    #: sent again: "already done" answers (e.g. session ended after a hangup) are then expected.
    resent: bool = False


@runtime_checkable
class Provider(Protocol):
    """A telephony provider client as the service layer uses it."""

    name: str

    def send_block(
        self,
        block: Block,
        *,
        session: str,
        notify_url: str | None,
        monitor_notify_url: str | None = None,
    ) -> SendResult: ...

    def call(self, api: str, params: Sequence[tuple[str, str]]) -> SendResult: ...


class _Closable(Protocol):
    def close(self) -> None: ...


_S = TypeVar("_S", bound=_Closable)


class PooledHttp(Generic[_S]):
    """One HTTP session (e.g. a ``requests.Session``: a connection pool) per process, made lazily.

    ``session()`` makes one with ``factory`` on first use, and again in a process other than the one
    that made it: a session inherited across fork is dropped, not closed (closing would shut sockets,
    and TLS state, that the parent process is still using). ``prepare``, if given, is applied once to
    each new session before it is handed out (a client reads proxy settings there, for instance).
    """

    def __init__(self, factory: Callable[[], _S], prepare: Callable[[_S], None] | None = None) -> None:
        self._factory = factory
        self._prepare = prepare
        self._session: _S | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def session(self) -> _S:
        """This process's session, made now if there is none yet."""
        pid = os.getpid()
        with self._lock:
            if self._session is None or self._pid != pid:
                session = self._factory()
                if self._prepare is not None:
                    self._prepare(session)
                self._session = session
                self._pid = pid
            return self._session

    def close(self) -> None:
        """Close this process's session (an inherited one is only dropped); a later ``session()``
        makes a new one."""
        with self._lock:
            if self._session is not None and self._pid == os.getpid():
                self._session.close()
            self._session = None
            self._pid = None


#: ``quote_plus`` of the values a flow sends again and again (prompts, tags, numbers). For a text
#: with spaces or markup, ``quote_plus`` runs a Python loop over its bytes: the prompts of one block
#: cost more to encode than to send.
_quote_cached = functools.lru_cache(maxsize=4096)(quote_plus)


def form_encode(pairs: Iterable[tuple[str, str]], *, uncached: Iterable[tuple[str, str]] = ()) -> str:
    """``urllib.parse.urlencode`` of str pairs, the same text, with the quoting of ``pairs``
    remembered. ``uncached`` pairs (credentials) are appended without being kept in the cache."""
    encoded = [f"{_quote_cached(key)}={_quote_cached(value if isinstance(value, str) else str(value))}"
               for key, value in pairs]
    encoded.extend(f"{quote_plus(key)}={quote_plus(value)}" for key, value in uncached)
    return "&".join(encoded)
