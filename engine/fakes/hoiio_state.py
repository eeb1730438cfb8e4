"""Bookkeeping of the fake Hoiio: sessions, calls, blocks in progress, notifications to post, faults.

Mutable values, internal to ``engine.fakes``; only touched under ``FakeHoiio``'s lock. Tests see
immutable snapshots instead (``engine.fakes.hoiio_calls``). Also the billing arithmetic.

May import the standard library and ``engine.fakes.hoiio_calls``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from engine.fakes.hoiio_calls import BlockRecord, CallerScript

CURRENCY = "SGD"
INCOMING_RATE = Decimal("0.010")
OUTGOING_RATE = Decimal("0.020")
_GMT8 = timezone(timedelta(hours=8))


@dataclass(eq=False)
class Pending:
    """A block being executed; its notification is still to come."""

    block: str
    url: str | None  # None: nothing is posted, the call ends after the block
    tag: str = ""
    caller_hangs_up: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    armed: bool = False  # the response went out and the timer runs
    connected: bool = False  # an answered transfer that stays up until someone hangs up
    interrupted: bool = False  # hangup_caller before the timer started: post at once
    cancel: threading.Event = field(default_factory=threading.Event)  # wakes and voids the timer


@dataclass(eq=False)
class Monitor:
    """A Monitor block's recording, posted to ``url`` once the call ends."""

    url: str | None
    tag: str
    record_url: str


@dataclass(eq=False)
class Session:
    """An IVR session: an incoming call (Answer) or an ``ivr/start/dial``."""

    sid: str
    txn_ref: str
    app_id: str
    direction: str
    script: CallerScript
    created_at: float
    rate: Decimal
    caller: str | None = None
    to: str | None = None
    dest: str | None = None
    state: str = "ringing"
    answered_at: float | None = None
    ended_at: float | None = None
    blocks: list[BlockRecord] = field(default_factory=list)
    pending: Pending | None = None
    ending: bool = False  # a hangup block was accepted
    cursor: dict[str, int] = field(default_factory=lambda: {"keys": 0, "transfers": 0, "records": 0})
    monitor: Monitor | None = None
    room: str | None = None
    muted: bool = False
    transfer_leg: bool = False  # an outgoing transfer leg rings or talks (counts toward the limit)
    extra_rate: Decimal = Decimal("0")
    end_reason: str | None = None

    def next(self, what: str) -> Any:
        """The script's next ``keys`` / ``transfers`` / ``records`` entry, None past the end."""
        items = getattr(self.script, what)
        index = self.cursor[what]
        self.cursor[what] = index + 1
        return items[index] if index < len(items) else None


@dataclass(eq=False)
class Call:
    """A voice/call, or one conference/call participant."""

    txn_ref: str
    app_id: str
    kind: str  # voice | conference
    dests: tuple[str, ...]
    statuses: tuple[str, ...]
    stay: bool
    created_at: float
    rate: Decimal
    tag: str | None = None
    notify_url: str | None = None
    room: str | None = None
    active: bool = True
    connected: bool = False
    answered_at: float | None = None
    ended_at: float | None = None
    muted: bool = False


@dataclass(frozen=True)
class Delivery:
    """A notification to post: form fields in order, signed with ``app_id``'s token."""

    url: str
    fields: tuple[tuple[str, str], ...]
    app_id: str
    session: str | None
    txn_ref: str | None


@dataclass
class Fault:
    """An injected fault (see ``FakeHoiio.inject``)."""

    endpoint: str  # an endpoint, or "*" for all
    status: str | None
    delay: float
    drop: bool
    processed: bool
    times: int | None  # None: until cleared


def billing_fields(started: float, answered: float | None, ended: float, rate: Decimal) -> list[tuple[str, str]]:
    """``date`` (the call's start), ``duration`` (per-minute blocks from the answer; 0 if never
    answered), ``currency``, ``rate`` and ``debit``, as Hoiio sends them."""
    minutes = 0 if answered is None else max(1, math.ceil((ended - answered) / 60))
    return [
        ("date", format_date(started)),
        ("duration", str(minutes)),
        ("currency", CURRENCY),
        ("rate", f"{rate:.3f}"),
        ("debit", f"{rate * minutes:.3f}"),
    ]


def format_date(epoch: float) -> str:
    """Hoiio's ``YYYY-MM-DD HH:MM:SS`` in GMT+8."""
    return datetime.fromtimestamp(epoch, UTC).astimezone(_GMT8).strftime("%Y-%m-%d %H:%M:%S")
