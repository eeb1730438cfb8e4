"""VoipNow UAPI wire format for conference invites. Pure: no I/O, no clock.

Outbound (``invite_request``) builds exactly the documented request of ``POST
/uapi/phoneCalls/{userId}/conferenceInvite``: the query parameters ``number`` (the scheduled
conference's number), ``pin`` and ``waitForPickup``, and a JSON ``PhoneCall`` body whose
``extension`` is the Conference extension and whose single ``phoneCallView`` has ``source`` (that
extension), ``destination`` (the callee) and ``callerId`` in ``"Name <number>"`` form. A request that
VoipNow could never accept raises ``InviteError(field, reason)`` before any I/O.

Inbound (``parse_error``, ``parse_invite_answer``, ``parse_phone_calls``) reads VoipNow's answers:
errors are ``{"error": {"code": ..., "message": ...}}``; a created invite is a list of
``{"id", "extension", "link"}``; a query is a collection ``{"entry": [PhoneCall, ...], ...}``.

``ERRORS`` maps every documented error code to the engine's ``Category``, a plain-English meaning and,
where one applies, the request field at fault.

May import ``engine.providers.base`` and the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from engine.providers.base import Category

#: The authenticated user (the one who granted the token).
ME = "@me"
SUCCESS = "success"
#: The client's own statuses for answers that never came or could not be read.
ERROR_TIMEOUT = "error_timeout"
ERROR_CONNECTION = "error_connection"
ERROR_BAD_RESPONSE = "error_bad_response"
#: VoipNow runs no IVR blocks: ``send_block`` answers with this status.
ERROR_NOT_SUPPORTED = "error_not_supported"

#: A short extension (``211``) or an extended one (``0003*211``).
EXTENSION_RE = re.compile(r"[0-9]{1,10}(?:\*[0-9]{1,10})?")
#: Who may be invited: an extension, or a public number (VoipNow takes digits, with or without +).
DESTINATION_RE = re.compile(r"\+?[0-9]{3,20}|[0-9]{1,10}(?:\*[0-9]{1,10})?")
CONFERENCE_NUMBER_RE = re.compile(r"[0-9]{1,10}")
PIN_RE = re.compile(r"[0-9]{1,16}")
#: ``John Doe <+3334444>``: a name without angle brackets or control characters, then the number.
CALLER_ID_RE = re.compile(r"[^<>\x00-\x1f\x7f]{0,64}<\+?[0-9]{1,20}>")
_BARE_NUMBER_RE = re.compile(r"\+?[0-9]{1,20}")
PHONE_CALL_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_WAIT_FOR_PICKUP = 3600

#: PhoneCallView ``status`` codes.
VIEW_STATUSES = {
    "0": "unknown",
    "1": "off_hook",
    "2": "trying",
    "3": "ringing",
    "4": "other_side_ringing",
    "5": "on_call",
}
#: PhoneCallView ``disposition`` codes.
DISPOSITIONS = {
    "0": "answered",
    "1": "busy",
    "2": "failed",
    "3": "no_answer",
    "4": "unknown",
    "5": "not_allowed",
}


class InviteError(ValueError):
    """A conference invite VoipNow could never accept; ``field`` names the request field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    category: Category
    meaning: str
    field: str | None = None  # the engine's request field this error is about
    known: bool = True


_DEST = Category.DESTINATION
_FLOW = Category.FLOW_ERROR
_AUTH = Category.AUTH
_RETRY = Category.RETRY

_TABLE: tuple[tuple[str, Category, str, str | None], ...] = (
    (SUCCESS, Category.OK, "The request was accepted.", None),
    # conferenceInvite (documented 400 codes)
    ("extension_invalid", _FLOW, "The extension is missing or is not a Conference extension owned by the user "
     "(check VOIPNOW_EXTENSION).", None),
    ("pc_duration_invalid", _FLOW, "The call duration (callDuration) is missing or is not a number of seconds.",
     "max_duration"),
    ("pc_source_invalid", _FLOW, "The source is missing or is not an existing Conference extension "
     "(check VOIPNOW_EXTENSION).", None),
    ("pc_destination_invalid", _DEST, "The destination is not an extension number or a public phone number.",
     "number"),
    ("pc_timeout_invalid", _FLOW, "waitForPickup must be a number of seconds greater than 0.", "wait_for_pickup"),
    ("pc_callerid_invalid", _FLOW, "The caller ID must look like: John Doe <+3334444>.", "caller_id"),
    ("pc_pin_invalid", _FLOW, "The conference PIN is invalid.", "pin"),
    ("pc_number_invalid", _FLOW, "The conference number is invalid.", "conference_number"),
    ("pc_phonecall_invalid", _FLOW, "The phone call does not exist (it may have ended).", None),
    # common to every request
    ("request_not_implemented", _FLOW, "VoipNow does not implement this request.", None),
    ("user_invalid", _AUTH, "The user in the request is not the token's user or does not exist.", None),
    ("access_denied", _AUTH, "The access token is missing, invalid or expired (check VOIPNOW_TOKEN).", None),
    ("internal_server_error", _RETRY, "VoipNow had an internal error.", None),
    # the client's own, when no usable answer came back
    (ERROR_TIMEOUT, _RETRY, "VoipNow did not answer in time; the request may or may not have been carried out.",
     None),
    (ERROR_CONNECTION, _RETRY, "The connection to VoipNow failed.", None),
    (ERROR_BAD_RESPONSE, _RETRY, "VoipNow's answer could not be read.", None),
    (ERROR_NOT_SUPPORTED, _FLOW, "VoipNow runs no IVR blocks; only conference invites are supported.", None),
)

ERRORS: dict[str, ErrorInfo] = {code: ErrorInfo(code, cat, meaning, fld) for code, cat, meaning, fld in _TABLE}


def classify(code: str) -> ErrorInfo:
    """Category and meaning of a VoipNow status or error code; unknown codes are ``FLOW_ERROR``."""
    info = ERRORS.get(code)
    if info is not None:
        return info
    return ErrorInfo(code, _FLOW, "VoipNow answered with an error this engine does not know.", known=False)


# --------------------------------------------------------------------------------------------------
# Outbound


@dataclass(frozen=True)
class HttpRequest:
    """One UAPI request: method, path (from the API root), query parameters and JSON body."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None


def caller_id_value(value: str) -> str:
    """``"John Doe <+6531580000>"`` as given, or a bare number as ``"<number> <number>"``."""
    value = value.strip()
    if _BARE_NUMBER_RE.fullmatch(value):
        return f"{value} <{value}>"
    if not CALLER_ID_RE.fullmatch(value):
        raise InviteError("caller_id", "must look like: John Doe <+6531580000> (or be a phone number)")
    return value


def invite_request(
    *,
    extension: str,
    destination: str,
    conference_number: str | None = None,
    pin: str | None = None,
    wait_for_pickup: int | None = None,
    caller_id: str | None = None,
    user: str = ME,
) -> HttpRequest:
    """The documented conferenceInvite request. Raises ``InviteError`` for values VoipNow refuses."""
    if not EXTENSION_RE.fullmatch(extension or ""):
        raise InviteError("extension", "must be the number of a Conference extension, e.g. 211 or 0003*211")
    if not DESTINATION_RE.fullmatch(destination or ""):
        raise InviteError("number", "must be a phone number or an extension number")
    query: list[tuple[str, str]] = []
    if conference_number is not None:
        if not CONFERENCE_NUMBER_RE.fullmatch(conference_number):
            raise InviteError("conference_number", "must be 1 to 10 digits")
        query.append(("number", conference_number))
    if pin is not None:
        if not PIN_RE.fullmatch(pin):
            raise InviteError("pin", "must be 1 to 16 digits")
        query.append(("pin", pin))
    if wait_for_pickup is not None:
        if isinstance(wait_for_pickup, bool) or not isinstance(wait_for_pickup, int) or not (
            0 < wait_for_pickup <= MAX_WAIT_FOR_PICKUP
        ):
            raise InviteError("wait_for_pickup", f"must be a whole number of seconds from 1 to {MAX_WAIT_FOR_PICKUP}")
        query.append(("waitForPickup", str(wait_for_pickup)))
    view: dict[str, Any] = {"source": [extension], "destination": [destination]}
    if caller_id is not None:
        view["callerId"] = caller_id_value(caller_id)
    body = {"extension": extension, "phoneCallView": [view]}
    return HttpRequest("POST", f"/uapi/phoneCalls/{_segment(user)}/conferenceInvite", tuple(query), body)


def phone_call_request(extension: str, phone_call_id: str, *, user: str = ME) -> HttpRequest:
    """Query one phone call: ``GET /uapi/phoneCalls/{user}/{extension}/{id}``."""
    _check_id(phone_call_id)
    return HttpRequest("GET", f"/uapi/phoneCalls/{_segment(user)}/{_segment(extension)}/{_segment(phone_call_id)}")


def hangup_request(
    extension: str, phone_call_id: str, *, phone_number: str | None = None, user: str = ME
) -> HttpRequest:
    """Hang up one phone call (or only ``phone_number``'s part of it): ``DELETE`` on the phone call."""
    _check_id(phone_call_id)
    query = (("phoneNumber", phone_number),) if phone_number else ()
    path = f"/uapi/phoneCalls/{_segment(user)}/{_segment(extension)}/{_segment(phone_call_id)}"
    return HttpRequest("DELETE", path, query)


def _check_id(phone_call_id: str) -> None:
    if not PHONE_CALL_ID_RE.fullmatch(phone_call_id or ""):
        raise InviteError("id", "must be 1 to 64 letters, digits, '-' or '_'")


def _segment(value: str) -> str:
    return quote(value, safe="@*")


# --------------------------------------------------------------------------------------------------
# Inbound


def parse_error(data: Any) -> tuple[str | None, str | None]:
    """``(code, message)`` of an error answer; ``(None, None)`` when it is not one."""
    if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
        error = data["error"]
        code = error.get("code")
        message = error.get("message")
        return (code if isinstance(code, str) and code else None), (message if isinstance(message, str) else None)
    return None, None


def parse_invite_answer(data: Any) -> list[dict[str, Any]]:
    """The phone calls a conferenceInvite created: ``[{"id", "extension", "link"}]``. Raises
    ``ValueError`` when the answer has another shape."""
    items = data if isinstance(data, list) else [data] if isinstance(data, Mapping) else None
    if items is None:
        raise ValueError("the answer is neither a list of phone calls nor a phone call")
    created = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
            raise ValueError("a created phone call has no id")
        created.append({"id": item["id"], "extension": item.get("extension"), "link": item.get("link")})
    return created


def parse_phone_calls(data: Any) -> list[dict[str, Any]]:
    """The PhoneCall entries of a query answer (``{"entry": [...]}``; link-only entries skipped)."""
    if isinstance(data, list):  # some deployments answer with the bare list
        entries = data
    elif isinstance(data, Mapping) and isinstance(data.get("entry"), list):
        entries = data["entry"]
    else:
        raise ValueError("the answer has no entry list")
    return [dict(e) for e in entries if isinstance(e, Mapping) and isinstance(e.get("id"), str)]


def describe_phone_call(call: Mapping[str, Any] | None) -> dict[str, Any]:
    """A phone call's state in the engine's words: ``state`` (``ended`` when VoipNow no longer lists
    it), the view's ``status`` and ``disposition`` words, and when it was answered."""
    if call is None:
        return {"state": "ended", "answered_at": None, "disposition": None}
    views = [v for v in call.get("phoneCallView") or () if isinstance(v, Mapping)]
    view = views[0] if views else {}
    status = VIEW_STATUSES.get(str(view.get("status")), "unknown")
    disposition = DISPOSITIONS.get(str(view.get("disposition"))) if view.get("disposition") is not None else None
    answered = view.get("answered") or call.get("answered")
    return {
        "state": status,
        "answered_at": answered if isinstance(answered, str) else None,
        "disposition": disposition,
    }
