"""Hoiio wire format: notification forms in, request parameters out. Pure: no I/O, no clock.

Inbound (``parse_notification``, ``parse_monitor_ready``, ``parse_call_event``) takes the merged
multi-dict of a notification (the web layer merges the form body and the query string and passes
lists, so repeated fields stay visible). It is strict about the fields the engine acts on and raises
``NotificationError(field, reason)`` for anything malformed, and tolerant about the rest: unknown
fields are kept in ``extra``. The engine's own pass-on parameters (``step``, ``sig``, ``ref``) belong
to the web layer, which verifies them; they are skipped here.

Outbound (``block_params``, ``call_params``) produces exactly the documented parameters of a request,
in a stable order, without credentials (the client adds ``app_id`` and ``access_token``), and raises
``BlockError`` when a request could never be right.

May import ``engine.core`` and the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from engine.core.actions import Block
from engine.core.events import Billing, MonitorReady, Notification

MAX_VALUE_LENGTH = 2000
MAX_FIELD_NAME_LENGTH = 100
MAX_EXTRA_FIELDS = 50

IVR_BLOCKS = frozenset(
    {"answer", "dial", "play", "gather", "record", "monitor", "hold", "unhold", "transfer", "hangup"}
)
CALL_STATES = frozenset({"ringing", "ongoing", "ended"})
#: Caller ids a network may present instead of a number (compared case-insensitively).
ANONYMOUS_CALLER_IDS = frozenset(
    {"private", "anonymous", "unknown", "restricted", "unavailable", "withheld", "p"}
)
#: Query parameters the engine adds to its own notify URLs; verified by the web layer, not here.
PASS_ON_FIELDS = frozenset({"step", "sig", "ref"})
BILLING_FIELDS = ("date", "duration", "currency", "rate", "debit")

_SESSION_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_DIGITS_RE = re.compile(r"[0-9*#]{0,255}")
_E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")
_ROOM_DEST_RE = re.compile(r"room:[A-Za-z0-9._]{0,32}")
_STATUS_WORD_RE = re.compile(r"[A-Za-z_]{1,32}")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SPACE_RE = re.compile(r"\s")
_UNSIGNED_RE = re.compile(r"[0-9]{1,9}")


class NotificationError(ValueError):
    """A notification field is missing or malformed. ``reason`` is plain English and never
    repeats the offending value (it may be personal data or huge)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class BlockError(ValueError):
    """An outbound request that Hoiio could never accept (unknown or missing parameter, ...)."""


# --------------------------------------------------------------------------------------------------
# Inbound


@dataclass(frozen=True)
class CallLeg:
    dest: str | None
    status: str | None  # answered | unanswered | failed | busy


@dataclass(frozen=True)
class CallEvent:
    """End-of-call notification of a voice/call (two legs) or one conference/call participant."""

    api: str  # "voice/call" | "conference/call"
    txn_ref: str
    legs: tuple[CallLeg, ...]
    tag: str | None = None
    billing: Billing | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class _Fields:
    """Reads single values out of a multi-dict, remembering which names were consumed."""

    def __init__(self, fields: Mapping[str, Sequence[str] | str]) -> None:
        self._fields = fields
        self._used: set[str] = set(PASS_ON_FIELDS)

    def get(self, name: str) -> str | None:
        """The field's value; None when absent. Repeats must agree."""
        self._used.add(name)
        values = _values(name, self._fields.get(name))
        if not values:
            return None
        if any(v != values[0] for v in values[1:]):
            raise NotificationError(name, "was sent more than once with different values")
        return values[0]

    def text(self, name: str) -> str | None:
        """An optional free-text field; empty means absent."""
        value = self.get(name)
        if value and _CONTROL_RE.search(value):
            raise NotificationError(name, "contains control characters")
        return value or None

    def matching(self, name: str, pattern: re.Pattern[str], reason: str) -> str | None:
        """An optional field that must fully match ``pattern``; empty means absent."""
        value = self.get(name)
        if not value:
            return None
        if not pattern.fullmatch(value):
            raise NotificationError(name, reason)
        return value

    def required_session(self) -> str:
        value = self.get("session")
        if not value:
            raise NotificationError("session", "is missing")
        if not _SESSION_RE.fullmatch(value):
            raise NotificationError(
                "session", "must be 1 to 64 letters, digits, dots, dashes or underscores"
            )
        return value

    def extra(self) -> dict[str, str]:
        names = [n for n in self._fields if n not in self._used]
        if len(names) > MAX_EXTRA_FIELDS:
            raise NotificationError("(form)", f"has more than {MAX_EXTRA_FIELDS} unknown fields")
        out: dict[str, str] = {}
        for name in names:
            if len(name) > MAX_FIELD_NAME_LENGTH:
                raise NotificationError(
                    name[:40] + "...", f"field name is longer than {MAX_FIELD_NAME_LENGTH} characters"
                )
            values = _values(name, self._fields[name])
            # Unknown fields are kept, not judged: the first value wins when repeated.
            out[name] = values[0] if values else ""
        return out

    def billing(self) -> Billing:
        return Billing(**{name: self.text(name) for name in BILLING_FIELDS})


def _values(name: str, raw: Sequence[str] | str | None) -> list[str]:
    if raw is None:
        return []
    values = [raw] if isinstance(raw, str) else list(raw)
    for value in values:
        if not isinstance(value, str):
            raise NotificationError(name, "is not text")
        if len(value) > MAX_VALUE_LENGTH:
            raise NotificationError(name, f"is longer than {MAX_VALUE_LENGTH} characters")
    return values


def _number(fields: _Fields, name: str, *, anonymous_ok: bool = False, room_ok: bool = False) -> str | None:
    value = fields.get(name)
    if not value:
        return None
    if _E164_RE.fullmatch(value):
        return value
    if anonymous_ok and value.lower() in ANONYMOUS_CALLER_IDS:
        return value
    if room_ok and _ROOM_DEST_RE.fullmatch(value):
        return value
    expected = "an E.164 phone number such as +6561234567"
    if room_ok:
        expected += " or a conference room (room:<id>)"
    if anonymous_ok:
        expected += " or a withheld caller id such as 'private'"
    raise NotificationError(name, f"must be {expected}")


def _http_url(fields: _Fields, name: str) -> str | None:
    value = fields.get(name)
    if not value:
        return None
    if not _is_http_url(value):
        raise NotificationError(name, "must be an absolute http or https URL")
    return value


def _is_http_url(value: str) -> bool:
    if _SPACE_RE.search(value) or _CONTROL_RE.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def parse_notification(fields: Mapping[str, Sequence[str] | str]) -> Notification:
    """Parse one IVR notification. ``step`` is left None: the web layer sets the verified value."""
    f = _Fields(fields)
    session = f.required_session()

    block = f.get("ivr_block") or ""
    if block and block not in IVR_BLOCKS:
        raise NotificationError("ivr_block", "is not a known IVR block")

    call_state = f.get("call_state")
    if not call_state:
        # The Answer notification may come without a call state: the call is still ringing.
        if block != "answer":
            raise NotificationError("call_state", "is missing")
        call_state = "ringing"
    elif call_state not in CALL_STATES:
        raise NotificationError("call_state", "must be one of ringing, ongoing or ended")

    digits = f.get("digits")
    if digits is not None and not _DIGITS_RE.fullmatch(digits):
        raise NotificationError("digits", "must be at most 255 of the keys 0-9, * and #")

    txn_ref = f.matching(
        "txn_ref", _SESSION_RE, "must be 1 to 64 letters, digits, dots, dashes or underscores"
    )
    status_reason = "must be a single word such as answered, unanswered, busy or failed"
    billing = f.billing()  # read (and checked) always, kept only once the call has ended
    return Notification(
        session=session,
        block=block,
        call_state=call_state,
        txn_ref=txn_ref,
        caller=_number(f, "from", anonymous_ok=True),
        called=_number(f, "to"),
        dest=_number(f, "dest", room_ok=True),
        digits=digits,
        record_url=_http_url(f, "record_url"),
        transfer_status=f.matching("transfer_status", _STATUS_WORD_RE, status_reason),
        dial_status=f.matching("dial_status", _STATUS_WORD_RE, status_reason),
        tag=f.text("tag"),
        billing=billing if call_state == "ended" else None,
        extra=f.extra(),  # last: every known field has been consumed by now
    )


def parse_monitor_ready(fields: Mapping[str, Sequence[str] | str]) -> MonitorReady:
    """The notification posted to a Monitor block's ``monitor_notify_url``: the recording is ready."""
    f = _Fields(fields)
    session = f.required_session()
    record_url = _http_url(f, "record_url")
    if record_url is None:
        raise NotificationError("record_url", "is missing")
    return MonitorReady(session=session, record_url=record_url)


def parse_call_event(fields: Mapping[str, Sequence[str] | str]) -> CallEvent:
    """A voice/call notification (dest1, dest2, call_status_dest1/2) or a conference/call
    participant's (dest, call_status_dest), with billing."""
    f = _Fields(fields)
    txn_ref = f.matching(
        "txn_ref", _SESSION_RE, "must be 1 to 64 letters, digits, dots, dashes or underscores"
    )
    if txn_ref is None:
        raise NotificationError("txn_ref", "is missing")
    status_reason = "must be one word such as answered, unanswered, busy or failed"

    def leg(dest_name: str, status_name: str) -> CallLeg:
        return CallLeg(
            dest=_number(f, dest_name),
            status=f.matching(status_name, _STATUS_WORD_RE, status_reason),
        )

    names = set(fields)
    if names & {"dest1", "dest2", "call_status_dest1", "call_status_dest2"}:
        api = "voice/call"
        legs: tuple[CallLeg, ...] = (leg("dest1", "call_status_dest1"), leg("dest2", "call_status_dest2"))
    elif names & {"dest", "call_status_dest"}:
        api = "conference/call"
        legs = (leg("dest", "call_status_dest"),)
    else:
        raise NotificationError("dest", "is missing (neither dest1/dest2 nor dest was sent)")
    return CallEvent(api=api, txn_ref=txn_ref, legs=legs, tag=f.text("tag"), billing=f.billing(), extra=f.extra())


# --------------------------------------------------------------------------------------------------
# Outbound

#: Documented parameters of each block, in the order they are sent. ``session``, ``notify_url`` and
#: ``monitor_notify_url`` come from the service; the rest from ``Block.params``.
BLOCK_PARAMS: dict[str, tuple[str, ...]] = {
    "dial": ("msg", "dest", "caller_id", "max_duration", "tag", "notify_url"),
    "play": ("session", "msg", "tag", "notify_url"),
    "gather": ("session", "msg", "max_digits", "timeout", "attempts", "tag", "notify_url"),
    "record": ("session", "msg", "max_duration", "tag", "notify_url"),
    "monitor": ("session", "msg", "tag", "monitor_notify_url", "notify_url"),
    "hold": ("session", "msg"),
    "unhold": ("session", "tag", "notify_url"),
    "transfer": (
        "session", "msg", "dest", "caller_id", "on_failure", "ring_time", "room_profile", "tag", "notify_url",
    ),
    "hangup": ("session", "force", "msg", "tag", "notify_url"),
}
_SERVICE_PARAMS = frozenset({"session", "notify_url", "monitor_notify_url"})
#: Blocks that cannot go without a notify URL: Hoiio hangs up after the block when it is missing.
NOTIFY_URL_REQUIRED = frozenset({"dial", "play", "gather", "record", "monitor", "unhold"})

#: Documented parameters of the non-IVR endpoints ``HoiioClient.call`` may use, in order.
CALL_PARAMS: dict[str, tuple[str, ...]] = {
    "voice/call": ("dest1", "dest2", "caller_id", "max_duration", "tag", "notify_url"),
    "voice/hangup": ("txn_ref",),
    "voice/query_status": ("txn_ref",),
    "conference/call": ("dest", "room", "caller_id", "tag", "notify_url"),
    "conference/moderate": ("txn_ref", "action"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "dial": ("dest",),
    "transfer": ("dest",),
    "voice/call": ("dest2",),
    "voice/hangup": ("txn_ref",),
    "voice/query_status": ("txn_ref",),
    "conference/call": ("dest",),
    "conference/moderate": ("txn_ref", "action"),
}
_CHOICES: dict[str, frozenset[str]] = {
    "force": frozenset({"enabled"}),
    "on_failure": frozenset({"hangup", "continue"}),
    "room_profile": frozenset({"music", "ringing"}),
    "action": frozenset({"kick", "mute", "unmute"}),
}
_MAX_LENGTH = {"msg": 1000, "tag": 256, "notify_url": 4000, "monitor_notify_url": 4000}
_INTEGER_PARAMS = frozenset({"max_digits", "timeout", "attempts", "max_duration", "ring_time"})
_CREDENTIALS = frozenset({"app_id", "access_token"})


def block_params(
    block: Block,
    *,
    session: str,
    notify_url: str | None,
    monitor_notify_url: str | None = None,
) -> list[tuple[str, str]]:
    """The parameters of ``block``'s request, in documented order, without credentials.

    Dial starts a session, so it takes no ``session``; Hold sends no notification, so it takes no
    ``notify_url`` (one given is dropped); ``monitor_notify_url`` is used by Monitor only.
    """
    kind = block.kind
    layout = BLOCK_PARAMS.get(kind)
    if layout is None:
        raise BlockError(f"unknown block kind {kind!r}")
    given = _collect(kind, block.params, allowed=set(layout) - _SERVICE_PARAMS)
    if "session" in layout:
        if not isinstance(session, str) or not _SESSION_RE.fullmatch(session):
            raise BlockError(f"{kind}: session must be 1 to 64 letters, digits, dots, dashes or underscores")
        given["session"] = session
    if "notify_url" in layout and notify_url is not None:
        given["notify_url"] = notify_url
    if "monitor_notify_url" in layout and monitor_notify_url is not None:
        given["monitor_notify_url"] = monitor_notify_url
    if kind in NOTIFY_URL_REQUIRED and not given.get("notify_url"):
        raise BlockError(f"{kind}: notify_url is required (without it Hoiio hangs up after the block)")
    if kind == "hangup" and "force" in given and given.get("msg"):
        raise BlockError("hangup: force must not be combined with msg")
    if kind == "dial" and not _E164_RE.fullmatch(given.get("dest", "")):
        raise BlockError("dial: dest must be an E.164 phone number")
    if kind == "transfer":
        dest = given.get("dest", "")
        if not (_E164_RE.fullmatch(dest) or _ROOM_DEST_RE.fullmatch(dest)):
            raise BlockError("transfer: dest must be an E.164 phone number or room:<id>")
    _check_values(kind, given)
    return [(name, given[name]) for name in layout if name in given]


def call_params(api: str, params: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The parameters of a non-IVR request (voice/call, conference/call, ...), in documented order."""
    layout = CALL_PARAMS.get(api)
    if layout is None:
        raise BlockError(f"unsupported API {api!r}; expected one of {', '.join(CALL_PARAMS)}")
    given = _collect(api, params, allowed=set(layout))
    _check_values(api, given)
    return [(name, given[name]) for name in layout if name in given]


def _collect(what: str, params: Iterable[tuple[str, str]], *, allowed: set[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for item in params:
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            raise BlockError(f"{what}: parameter names and values must be strings")
        if name in _CREDENTIALS:
            raise BlockError(f"{what}: credentials are added by the client, not passed as parameters")
        if name not in allowed:
            raise BlockError(f"{what}: {name!r} is not a documented parameter here")
        if name in given:
            raise BlockError(f"{what}: {name!r} is given more than once")
        given[name] = value
    for name in _REQUIRED.get(what, ()):
        if not given.get(name):
            raise BlockError(f"{what}: {name} is required")
    return given


def _check_values(what: str, given: Mapping[str, str]) -> None:
    for name, value in given.items():
        limit = _MAX_LENGTH.get(name)
        if limit is not None and len(value) > limit:
            raise BlockError(f"{what}: {name} is longer than {limit} characters")
        choices = _CHOICES.get(name)
        if choices is not None and value not in choices:
            raise BlockError(f"{what}: {name} must be one of {', '.join(sorted(choices))}")
        if name in _INTEGER_PARAMS and not _UNSIGNED_RE.fullmatch(value):
            raise BlockError(f"{what}: {name} must be a whole number of 0 or more")
        if name in ("notify_url", "monitor_notify_url") and not _is_http_url(value):
            raise BlockError(f"{what}: {name} must be an absolute http or https URL")
    if "max_digits" in given and int(given["max_digits"]) > 255:
        raise BlockError(f"{what}: max_digits must be from 0 to 255")


def redact(params: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``params`` without the access token (the app id is not secret and helps debugging)."""
    return [(name, value) for name, value in params if name != "access_token"]
