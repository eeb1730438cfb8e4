"""Events the interpreter reacts to: provider notifications, results of engine-side steps.

Inbound data is tolerant: unknown provider fields are kept in ``extra`` rather than rejected.
Parsing raw HTTP forms into these values happens in ``engine.providers.hoiio.wire``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Billing:
    date: str | None = None
    duration: str | None = None  # minutes, as Hoiio sends it
    currency: str | None = None
    rate: str | None = None
    debit: str | None = None


@dataclass(frozen=True)
class Notification:
    """One Hoiio IVR notification for a session.

    ``step`` is the engine's own pass-on parameter from the ``notify_url`` (verified by the web
    layer); ``None`` for the first notification of an incoming call (the Answer block).
    """

    session: str
    block: str  # ivr_block: answer | dial | play | gather | record | monitor | unhold | transfer | hangup | ""
    call_state: str  # ringing | ongoing | ended
    step: int | None = None
    txn_ref: str | None = None
    caller: str | None = None  # "from"
    called: str | None = None  # "to"
    dest: str | None = None
    digits: str | None = None
    record_url: str | None = None
    transfer_status: str | None = None
    dial_status: str | None = None
    tag: str | None = None
    billing: Billing | None = None  # present when call_state == "ended"
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitorReady:
    """The recording of a Monitor block is ready (``monitor_notify_url``); not a flow step."""

    session: str
    record_url: str


@dataclass(frozen=True)
class HttpResult:
    """Outcome of an ``HttpCall`` action, fed back by the service."""

    step: int
    status: int | None  # HTTP status; None when no response (timeout, refused, ...)
    json: Any = None  # parsed JSON body, or None
    error: str | None = None  # why it failed, for the record


@dataclass(frozen=True)
class ProviderRejected:
    """The provider refused (or never answered) the block sent for ``step``.

    ``status`` is Hoiio's ``error_*`` value, or ``"error_timeout"``/``"error_connection"`` when the
    request may or may not have arrived.
    """

    step: int
    status: str


@dataclass(frozen=True)
class SideCallResult:
    """Outcome of a provider call that is not an IVR block (e.g. conference/call)."""

    step: int
    ok: bool
    status: str
    data: Mapping[str, Any] = field(default_factory=dict)


Event = Notification | MonitorReady | HttpResult | ProviderRejected | SideCallResult
