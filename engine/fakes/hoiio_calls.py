"""Values of the fake Hoiio: the scripted far end of a call and what tests can observe.

``CallerScript`` says how a simulated person behaves: the keys pressed at each Gather, the outcome of
each Transfer, the recordings made, whether they pick up when called, and when they hang up. The
records (``RequestRecord``, ``NotificationRecord``, ``SessionSnapshot``) are immutable copies taken
under the fake's lock, safe to keep and compare.

May import the Python standard library and ``engine.fakes.hoiio_rules``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.fakes.hoiio_rules import is_http_url

OUTCOMES = ("answered", "busy", "unanswered", "failed")
_KEYS_RE = re.compile(r"[0-9*#]*")


class CallLimitReached(RuntimeError):
    """An incoming call could not start: the account already has ``call_limit`` active calls."""


class ConnectionDropped(ConnectionError):
    """Fault injection closed the connection without an answer (raised in-process, e.g. under a test
    client, where there is no socket to close)."""


@dataclass(frozen=True)
class CallerScript:
    """How the person on the other end behaves.

    * ``keys``: what they type at each Gather, in order. A string of ``0-9 * #`` (input stops at
      ``#``, which is not reported, and at the Gather's ``max_digits``), or ``None`` for silence (the
      Gather times out and reports ``digits=""``). Gathers past the end of the list get silence.
    * ``transfers``: the outcome of each Transfer, in order (``answered`` | ``busy`` |
      ``unanswered`` | ``failed``); ``answered`` past the end of the list.
    * ``records``: the ``record_url`` of each Record block, in order; generated past the end.
    * ``dial``: the outcome when this person is called (``ivr/start/dial``, a ``voice/call`` or
      ``conference/call`` leg).
    * ``hangup_after``: the caller hangs up after N blocks. The first N blocks complete normally; the
      caller hangs up during block N+1, whose notification is then ``call_state=ended`` (with billing)
      for that ``ivr_block``. ``0`` = during the first block. Only blocks sent after the Start block
      (Answer / Dial) count, Hold and Unhold included. ``FakeHoiio.hangup_caller`` hangs up at any
      other moment (while ringing, between blocks, on hold).
    * ``stay_on_line``: once connected by an answered Transfer, ``voice/call`` or ``conference/call``,
      stay connected until someone hangs up (``voice/hangup``, ``conference/moderate`` kick, a forced
      ``ivr/end/hangup`` or ``FakeHoiio.hangup_caller``). Otherwise the connected call ends at once
      (after the fake's ``notify_delay``).
    * ``ask``: for interactive use (``ivr try``). Called as ``ask(session_id, gather_block)`` for each
      Gather past the end of ``keys``, from the notification thread once the block's ``notify_delay``
      is over (never under the fake's lock, so it may block on a prompt); returns the keys typed, or
      ``None`` for silence. Characters other than ``0-9 * #`` are dropped.
    """

    keys: Sequence[str | None] = ()
    transfers: Sequence[str] = ()
    records: Sequence[str] = ()
    dial: str = "answered"
    hangup_after: int | None = None
    stay_on_line: bool = False
    ask: Callable[[str, BlockRecord], str | None] | None = None

    def __post_init__(self) -> None:
        for name in ("keys", "transfers", "records"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f"{name} must be a sequence, not a string")
            object.__setattr__(self, name, tuple(value))
        for keys in self.keys:
            if keys is not None and (not isinstance(keys, str) or not _KEYS_RE.fullmatch(keys)):
                raise ValueError(f"keys entries must be None or strings of 0-9 * #, not {keys!r}")
        for outcome in (*self.transfers, self.dial):
            if outcome not in OUTCOMES:
                raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        for url in self.records:
            if not isinstance(url, str) or not is_http_url(url):
                raise ValueError(f"record url {url!r} is not an http(s) URL")
        if self.hangup_after is not None and (
            isinstance(self.hangup_after, bool) or not isinstance(self.hangup_after, int) or self.hangup_after < 0
        ):
            raise ValueError("hangup_after must be None or an integer >= 0")
        if not isinstance(self.stay_on_line, bool):
            raise ValueError("stay_on_line must be a boolean")
        if self.ask is not None and not callable(self.ask):
            raise ValueError("ask must be callable")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallerScript:
        """Build from the control API's JSON (``keys``, ``transfers``, ``records``, ``dial``,
        ``hangup_after``, ``stay_on_line``); unknown names are an error."""
        names = {"keys", "transfers", "records", "dial", "hangup_after", "stay_on_line"}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown script fields: {', '.join(sorted(unknown))}")
        return cls(**{name: data[name] for name in names if name in data})


def gathered_digits(keys: str | None, max_digits: int) -> str:
    """What a Gather reports for the keys typed: up to ``#`` (excluded), at most ``max_digits``
    (0 = no limit). Characters that are not keys are dropped."""
    if keys is None:
        return ""
    digits = "".join(c for c in keys if c in "0123456789*#").split("#", 1)[0]
    return digits[:max_digits] if max_digits else digits


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the fake saw it (``access_token`` redacted)."""

    time: float
    method: str
    endpoint: str
    params: Mapping[str, str]
    response: Mapping[str, Any] | None  # None when the connection was dropped
    ignored: tuple[str, ...] = ()  # parameter names Hoiio would ignore for this endpoint
    fault: str | None = None  # how fault injection changed this request, if it did

    @property
    def status(self) -> str | None:
        return None if self.response is None else self.response.get("status")


@dataclass(frozen=True)
class NotificationRecord:
    """One notification the fake posted (or tried to): ``url`` includes any pass-on query."""

    time: float
    url: str
    body: str
    fields: Mapping[str, str]
    signature: str
    session: str | None = None
    txn_ref: str | None = None
    http_status: int | None = None  # the receiver's answer; None while in flight or on error
    error: str | None = None  # connection error text, if the post failed
    done: bool = False


@dataclass(frozen=True)
class BlockRecord:
    name: str  # ivr_block: play, gather, ...
    params: Mapping[str, str]
    time: float


@dataclass(frozen=True)
class SessionSnapshot:
    """An IVR session (incoming call or ``ivr/start/dial``) at one moment."""

    session: str
    txn_ref: str
    app_id: str
    direction: str  # incoming | outgoing
    state: str  # ringing | ongoing | on_hold | ended
    waiting: bool  # a notification is still to be posted: new blocks get error_session_not_ready
    blocks: tuple[BlockRecord, ...]
    caller: str | None = None  # "from" of an incoming call
    to: str | None = None
    dest: str | None = None  # number dialled by ivr/start/dial
    room: str | None = None  # conference room joined by a transfer
    monitored: bool = False
    muted: bool = False
    end_reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(block.name for block in self.blocks)

    @property
    def ended(self) -> bool:
        return self.state == "ended"


@dataclass(frozen=True)
class CallSnapshot:
    """A ``voice/call`` or one ``conference/call`` participant."""

    txn_ref: str
    app_id: str
    kind: str  # voice | conference
    active: bool
    dests: tuple[str, ...]
    statuses: tuple[str, ...]
    room: str | None = None
    muted: bool = False
    tag: str | None = None
