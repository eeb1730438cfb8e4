"""Request rules of the fake Hoiio API: the documented statuses, parameter parsing and checks.

Pure: no I/O, no clock, no state. ``parse_params`` turns raw query/body bytes into parameters (or
refuses them as ``error_malformed_params``); ``check_params`` applies one endpoint's stateless rules
in a fixed order: every required parameter first (``error_X_param_missing``, in the documented
parameter order), then each present parameter's format, then cross-parameter rules. Credentials,
sessions, limits and rate limits need state and live in ``engine.fakes.hoiio``.

``STATUSES`` is the one list of statuses the fake may answer with. ``source`` says where a status
comes from: ``doc`` (a Hoiio documentation page), ``sdk`` (Hoiio's own SDK status enum, not a doc
page) or ``inferred`` (a rule the docs state without naming its status; the name follows Hoiio's
``error_invalid_X`` pattern). ``enforced`` statuses are produced by the fake's own rules; the others
are only ever returned through fault injection (``FakeHoiio.inject``).

May import the Python standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

SUCCESS = "success_ok"


@dataclass(frozen=True)
class Status:
    name: str
    meaning: str
    source: str  # doc | sdk | inferred
    enforced: bool = True  # False: only returned through fault injection


def _s(name: str, meaning: str, source: str = "doc", enforced: bool = True) -> Status:
    return Status(name, meaning, source, enforced)


_STATUS_LIST: tuple[Status, ...] = (
    _s(SUCCESS, "The request has been processed successfully."),
    # Common to every endpoint (REST format, authentication, limits).
    _s("error_invalid_http_method", "Only GET or POST are allowed."),
    _s("error_malformed_params", "The request parameters contain non-readable bytes."),
    _s("error_app_id_param_missing", "app_id is missing."),
    _s("error_access_token_param_missing", "access_token is missing."),
    _s("error_invalid_app_id", "The Application ID is invalid or has been revoked."),
    _s("error_invalid_access_token", "The Access Token is invalid, expired or has been revoked."),
    _s("error_rate_limit_exceeded", "More than 60 requests per minute (voice/hangup, conference/moderate)."),
    _s("error_internal_server_error", "Unexpected error at Hoiio.", enforced=False),
    # error_X_param_missing for each required parameter of the endpoints the fake serves.
    _s("error_session_param_missing", "session is missing."),
    _s("error_dest_param_missing", "dest is missing (dial, transfer, conference/call)."),
    _s("error_dest2_param_missing", "dest2 is missing (voice/call)."),
    _s("error_msg_param_missing", "msg is missing (play has nothing to play without it).", "sdk"),
    _s("error_notify_url_param_missing", "notify_url is missing (gather, record).", "sdk"),
    _s("error_txn_ref_param_missing", "txn_ref is missing (voice/hangup, query_status, moderate)."),
    _s("error_action_param_missing", "action is missing (conference/moderate)."),
    # msg and its markup.
    _s("error_msg_invalid_length", "msg is longer than 1000 characters."),
    _s("error_msg_invalid_xml", "The markup in msg is not well-formed <speech>/<url> markup."),
    _s("error_msg_invalid_language", "<speech language> is not a supported text-to-speech language."),
    _s("error_msg_invalid_gender", "<speech gender> is neither male nor female."),
    _s("error_msg_invalid_url", "<url> is not an http or https URL."),
    _s("error_msg_invalid_file_format", "<url> does not name an .mp3, .wav or .gsm file."),
    _s("error_msg_cannot_convert_text", "Text-to-speech failed.", enforced=False),
    _s("error_msg_download_failed", "The <url> file could not be downloaded.", enforced=False),
    _s("error_msg_invalid_file_size", "The <url> file is larger than 10 MB.", enforced=False),
    # tag and notify_url.
    _s("error_tag_invalid_length", "tag is longer than 256 characters."),
    _s("error_invalid_notify_url", "notify_url is longer than 4000 characters or not an http(s) URL."),
    _s("error_unable_to_resolve_notify_url", "The notify_url host cannot be resolved.", enforced=False),
    _s(
        "error_unable_to_complete_ssl_handshake_notify_url",
        "TLS handshake with the notify_url failed.",
        enforced=False,
    ),
    # IVR sessions.
    _s("error_invalid_session", "The session is invalid (unknown)."),
    _s("error_session_access_denied", "The session belongs to another application."),
    _s("error_session_ended", "The session is ended or expired, or an End block was already sent."),
    _s("error_session_not_ready", "The previous block is still executing, or the call is on hold."),
    _s("error_session_not_on_hold", "Unhold was sent for a session that is not on hold."),
    _s("error_monitor_in_progress", "The session is already being monitored.", "sdk"),
    # Destinations, caller id, account.
    _s("error_dest_invalid", "dest is not E.164 (or room:<id> for transfer), or conference dest is bad."),
    _s("error_dest_not_supported", "Calling this destination is not supported.", enforced=False),
    _s("error_number_not_supported", "Destination number is not supported.", enforced=False),
    _s("error_caller_id_invalid", "caller_id is neither E.164 nor 'private'."),
    _s("error_insufficient_credit", "Not enough credit for this call.", enforced=False),
    _s("error_concurrent_call_limit_reached", "The account already has 8 active calls."),
    _s("error_not_allowed_for_trial", "Destination not allowed for trial accounts.", enforced=False),
    _s("error_call_service_not_available", "Problems initiating the call; retry later.", enforced=False),
    # Block parameters.
    _s("error_on_failure_invalid", "on_failure is neither hangup nor continue.", "sdk"),
    _s("error_invalid_ring_time", "ring_time is not a positive integer.", "inferred"),
    _s("error_invalid_room_profile", "room_profile is neither music nor ringing.", "inferred"),
    _s("error_invalid_max_digits", "max_digits is not an integer from 0 to 255.", "sdk"),
    _s("error_invalid_timeout", "timeout is not a positive integer.", "sdk"),
    _s("error_invalid_attempts", "attempts is not a positive integer.", "sdk"),
    _s("error_invalid_max_duration", "max_duration is not a positive integer.", "sdk"),
    _s("error_invalid_force", "force is not 'enabled', or force is combined with msg.", "inferred"),
    # voice/call.
    _s("error_dest1_invalid", "dest1 is not an E.164 number."),
    _s("error_dest2_invalid", "dest2 is not an E.164 number."),
    _s("error_same_dest1_dest2", "dest1 and dest2 are the same number."),
    _s("error_dest1_not_supported", "dest1 is not supported.", enforced=False),
    _s("error_dest2_not_supported", "dest2 is not supported.", enforced=False),
    # conference/call and txn_ref based endpoints.
    _s("error_invalid_room", "room is not 1-32 of [A-Za-z0-9._]."),
    _s("error_invalid_txn_ref", "txn_ref names no call of this account.", "sdk"),
    _s("error_txn_ref_access_denied", "txn_ref belongs to another application.", "sdk"),
    _s("error_invalid_action", "action is not kick, mute or unmute.", "inferred"),
)

STATUSES: dict[str, Status] = {status.name: status for status in _STATUS_LIST}


class Refused(Exception):
    """A request refused with a documented status."""

    def __init__(self, status: str) -> None:
        if status not in STATUSES:  # keeps the fake honest: only listed statuses go out
            raise ValueError(f"undocumented status {status!r}")
        super().__init__(status)
        self.status = status


# --------------------------------------------------------------------------------------------------
# Parameter parsing

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_UNREADABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def parse_params(query: bytes, body: bytes | None) -> dict[str, str]:
    """Parameters of one request: the form body first, then the query string for names not in it.

    The first occurrence of a repeated name wins. Bytes that are not UTF-8 (raw or percent-encoded)
    and control characters other than tab/CR/LF are "non-readable bytes".
    """
    params: dict[str, str] = {}
    for raw in (body or b"", query):
        for name, value in _parse_one(raw):
            params.setdefault(name, value)
    return params


def redact(params: Mapping[str, str]) -> dict[str, str]:
    """Parameters fit for a log: the access token replaced."""
    return {name: ("***" if name == "access_token" else value) for name, value in params.items()}


def _parse_one(raw: bytes) -> list[tuple[str, str]]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused("error_malformed_params") from exc
    for name, value in pairs:
        if _UNREADABLE.search(name) or _UNREADABLE.search(value):
            raise Refused("error_malformed_params")
    return pairs


# --------------------------------------------------------------------------------------------------
# Value checks (each returns the refusal status, or None when the value is fine)

E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")
ROOM_ID_RE = re.compile(r"[A-Za-z0-9._]{0,32}")
CONFERENCE_ROOM_RE = re.compile(r"[A-Za-z0-9._]{1,32}")
MAX_MSG_LENGTH = 1000
MAX_TAG_LENGTH = 256
MAX_NOTIFY_URL_LENGTH = 4000
MAX_CONFERENCE_DESTS = 8
AUDIO_EXTENSIONS = (".mp3", ".wav", ".gsm")
GENDERS = frozenset({"male", "female"})
#: Text-to-speech languages. Hoiio's own list was not available; these are the codes its docs and
#: SDK samples use (``en``, ``zh-HK``) plus the usual neighbours. Matching is exact.
LANGUAGES = frozenset(
    {
        "en", "en-US", "en-GB", "en-AU", "en-IN", "en-SG",
        "zh", "zh-CN", "zh-HK", "zh-TW",
        "ms", "ms-MY", "id", "id-ID", "th", "th-TH", "vi", "vi-VN", "tl", "tl-PH",
        "ja", "ja-JP", "ko", "ko-KR", "hi", "hi-IN", "ta", "ta-IN",
        "fr", "fr-FR", "de", "de-DE", "es", "es-ES", "it", "it-IT", "pt", "pt-BR", "nl", "nl-NL",
        "ru", "ru-RU",
    }
)  # fmt: skip
CALLER_ID_PRIVATE = "private"

Check = Callable[[str], "str | None"]


def is_e164(value: str) -> bool:
    return E164_RE.fullmatch(value) is not None


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host and nothing unreadable in it."""
    if not value or any(c.isspace() for c in value) or _UNREADABLE.search(value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_tag(value: str) -> str | None:
    return "error_tag_invalid_length" if len(value) > MAX_TAG_LENGTH else None


def check_notify_url(value: str) -> str | None:
    if len(value) > MAX_NOTIFY_URL_LENGTH or not is_http_url(value):
        return "error_invalid_notify_url"
    return None


def check_caller_id(value: str) -> str | None:
    return None if value == CALLER_ID_PRIVATE or is_e164(value) else "error_caller_id_invalid"


def e164(status: str) -> Check:
    return lambda value: None if is_e164(value) else status


def integer(status: str, low: int, high: int | None = None) -> Check:
    def check(value: str) -> str | None:
        if not value.isascii() or not value.isdigit():
            return status
        number = int(value)
        return status if number < low or (high is not None and number > high) else None

    return check


def choice(status: str, allowed: frozenset[str]) -> Check:
    return lambda value: None if value in allowed else status


def room_of(dest: str) -> str | None:
    """The room ID of a transfer ``dest=room:<id>`` (``""`` asks for a new room), else None."""
    return dest[len("room:") :] if dest.startswith("room:") else None


def check_transfer_dest(value: str) -> str | None:
    room = room_of(value)
    if room is not None:
        return None if ROOM_ID_RE.fullmatch(room) else "error_dest_invalid"
    return None if is_e164(value) else "error_dest_invalid"


def conference_dests(value: str) -> list[str]:
    return value.split(",")


def check_conference_dest(value: str) -> str | None:
    numbers = conference_dests(value)
    if len(numbers) > MAX_CONFERENCE_DESTS or len(set(numbers)) != len(numbers):
        return "error_dest_invalid"
    return None if all(is_e164(n) for n in numbers) else "error_dest_invalid"


def check_conference_room(value: str) -> str | None:
    return None if CONFERENCE_ROOM_RE.fullmatch(value) else "error_invalid_room"


# --------------------------------------------------------------------------------------------------
# msg markup: plain text, <speech language=".." gender="..">text</speech>, <url>http(s)://..</url>

_TAG_RE = re.compile(r"<(/?)([A-Za-z_][\w.-]*)((?:\s+[^\s=/>\"']+\s*=\s*(?:\"[^\"<]*\"|'[^'<]*'))*)\s*(/?)>")
_ATTR_RE = re.compile(r"([^\s=/>\"']+)\s*=\s*(?:\"([^\"<]*)\"|'([^'<]*)')")
_ENTITY_RE = re.compile(r"&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


@dataclass(frozen=True)
class MsgPart:
    kind: str  # text | speech | url
    text: str
    language: str | None = None
    gender: str | None = None


def check_msg(value: str) -> str | None:
    if len(value) > MAX_MSG_LENGTH:
        return "error_msg_invalid_length"
    try:
        parts = parse_msg(value)
    except Refused as refused:
        return refused.status
    for part in parts:
        if part.kind == "speech":
            if part.language is not None and part.language not in LANGUAGES:
                return "error_msg_invalid_language"
            if part.gender is not None and part.gender not in GENDERS:
                return "error_msg_invalid_gender"
        elif part.kind == "url":
            url = part.text.strip()
            if not is_http_url(url):
                return "error_msg_invalid_url"
            if not urlsplit(url).path.lower().endswith(AUDIO_EXTENSIONS):
                return "error_msg_invalid_file_format"
    return None


def parse_msg(value: str) -> list[MsgPart]:
    """Split ``msg`` into text, speech and url parts.

    Text without ``<`` is plain text-to-speech (a bare ``&`` is fine there). Once markup is present
    the whole value must be well-formed: only top-level ``<speech>`` (attributes ``language`` and
    ``gender``) and ``<url>`` elements, no nesting, entities escaped. Anything else refuses with
    ``error_msg_invalid_xml``.
    """
    if "<" not in value:
        return [MsgPart("text", value)] if value else []
    parts: list[MsgPart] = []
    pos = 0
    open_tag: tuple[str, dict[str, str]] | None = None
    buffer = ""
    while pos < len(value):
        lt = value.find("<", pos)
        end = len(value) if lt < 0 else lt
        buffer += _unescape(value[pos:end])
        if lt < 0:
            break
        match = _TAG_RE.match(value, lt)
        if match is None:
            raise Refused("error_msg_invalid_xml")
        closing, name, raw_attrs, self_closing = match.groups()
        pos = match.end()
        if name not in ("speech", "url") or (closing and (raw_attrs or self_closing)):
            raise Refused("error_msg_invalid_xml")
        if closing:
            if open_tag is None or open_tag[0] != name:
                raise Refused("error_msg_invalid_xml")
            parts.append(_element(open_tag[0], open_tag[1], buffer))
            open_tag, buffer = None, ""
            continue
        if open_tag is not None:  # no nesting
            raise Refused("error_msg_invalid_xml")
        attrs = _attributes(name, raw_attrs)
        if buffer:
            parts.append(MsgPart("text", buffer))
            buffer = ""
        if self_closing:
            parts.append(_element(name, attrs, ""))
        else:
            open_tag = (name, attrs)
    if open_tag is not None:
        raise Refused("error_msg_invalid_xml")
    if buffer:
        parts.append(MsgPart("text", buffer))
    return parts


def _attributes(name: str, raw: str) -> dict[str, str]:
    allowed = {"speech": ("language", "gender"), "url": ()}[name]
    attrs: dict[str, str] = {}
    for attr in _ATTR_RE.finditer(raw):
        key = attr.group(1)
        if key not in allowed or key in attrs:
            raise Refused("error_msg_invalid_xml")
        raw_value = attr.group(2) if attr.group(2) is not None else attr.group(3)
        attrs[key] = _unescape(raw_value)
    return attrs


def _element(name: str, attrs: Mapping[str, str], text: str) -> MsgPart:
    if name == "url":
        return MsgPart("url", text)
    return MsgPart("speech", text, language=attrs.get("language"), gender=attrs.get("gender"))


def _unescape(text: str) -> str:
    out: list[str] = []
    pos = 0
    while True:
        amp = text.find("&", pos)
        if amp < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:amp])
        match = _ENTITY_RE.match(text, amp)
        if match is None:
            raise Refused("error_msg_invalid_xml")
        entity = match.group(0)[1:-1]
        if entity.startswith("#x"):
            code = int(entity[2:], 16)
        elif entity.startswith("#"):
            code = int(entity[1:])
        else:
            out.append(_ENTITIES[entity])
            pos = match.end()
            continue
        if code == 0 or code > 0x10FFFF:
            raise Refused("error_msg_invalid_xml")
        out.append(chr(code))
        pos = match.end()


# --------------------------------------------------------------------------------------------------
# Endpoints and their parameters, in documented order


@dataclass(frozen=True)
class Param:
    name: str
    required: bool = False
    check: Check | None = None


def _p(name: str, check: Check | None = None, *, required: bool = False) -> Param:
    return Param(name, required, check)


_SESSION = _p("session", required=True)
_MSG = _p("msg", check_msg)
_TAG = _p("tag", check_tag)
_NOTIFY = _p("notify_url", check_notify_url)
_NOTIFY_REQUIRED = _p("notify_url", check_notify_url, required=True)
_CALLER_ID = _p("caller_id", check_caller_id)
_MAX_DURATION = _p("max_duration", integer("error_invalid_max_duration", 1))

ENDPOINTS: dict[str, tuple[Param, ...]] = {
    "ivr/start/dial": (_MSG, _p("dest", e164("error_dest_invalid"), required=True), _CALLER_ID, _MAX_DURATION,
                       _TAG, _NOTIFY),
    "ivr/middle/play": (_SESSION, _p("msg", check_msg, required=True), _TAG, _NOTIFY),
    "ivr/middle/gather": (
        _SESSION, _MSG,
        _p("max_digits", integer("error_invalid_max_digits", 0, 255)),
        _p("timeout", integer("error_invalid_timeout", 1)),
        _p("attempts", integer("error_invalid_attempts", 1)),
        _TAG, _NOTIFY_REQUIRED,
    ),
    "ivr/middle/record": (_SESSION, _MSG, _MAX_DURATION, _TAG, _NOTIFY_REQUIRED),
    "ivr/middle/monitor": (_SESSION, _MSG, _TAG, _p("monitor_notify_url", check_notify_url), _NOTIFY),
    "ivr/middle/hold": (_SESSION, _MSG),
    "ivr/middle/unhold": (_SESSION, _TAG, _NOTIFY),
    "ivr/end/transfer": (
        _SESSION, _MSG,
        _p("dest", check_transfer_dest, required=True),
        _CALLER_ID,
        _p("on_failure", choice("error_on_failure_invalid", frozenset({"hangup", "continue"}))),
        _p("ring_time", integer("error_invalid_ring_time", 1)),
        _p("room_profile", choice("error_invalid_room_profile", frozenset({"music", "ringing"}))),
        _TAG, _NOTIFY,
    ),
    "ivr/end/hangup": (_SESSION, _p("force", choice("error_invalid_force", frozenset({"enabled"}))), _MSG, _TAG,
                       _NOTIFY),
    "voice/call": (_p("dest1", e164("error_dest1_invalid")), _p("dest2", e164("error_dest2_invalid"), required=True),
                   _CALLER_ID, _MAX_DURATION, _TAG, _NOTIFY),
    "voice/hangup": (_p("txn_ref", required=True),),
    "voice/query_status": (_p("txn_ref", required=True),),
    "conference/call": (_p("dest", check_conference_dest, required=True), _p("room", check_conference_room),
                        _CALLER_ID, _TAG, _NOTIFY),
    "conference/moderate": (_p("txn_ref", required=True),
                            _p("action", choice("error_invalid_action", frozenset({"kick", "mute", "unmute"})),
                               required=True)),
}  # fmt: skip

CREDENTIALS = ("app_id", "access_token")


def block_name(endpoint: str) -> str:
    """``ivr/middle/gather`` -> ``gather`` (the ``ivr_block`` value)."""
    return endpoint.rsplit("/", 1)[-1]


def check_params(endpoint: str, params: Mapping[str, str]) -> dict[str, str]:
    """The endpoint's documented parameters that were given (empty values count as absent).

    Raises ``Refused`` with the first broken rule. Credentials are not checked here.
    """
    spec = ENDPOINTS[endpoint]
    given = {p.name: params[p.name] for p in spec if params.get(p.name)}
    for param in spec:
        if param.required and param.name not in given:
            raise Refused(f"error_{param.name}_param_missing")
    for param in spec:
        value = given.get(param.name)
        if value is not None and param.check is not None:
            status = param.check(value)
            if status is not None:
                raise Refused(status)
    if endpoint == "ivr/end/hangup" and "force" in given and "msg" in given:
        raise Refused("error_invalid_force")
    return given


def unknown_params(endpoint: str, params: Mapping[str, str]) -> tuple[str, ...]:
    """Names Hoiio would ignore: neither a credential nor a documented parameter of the endpoint."""
    known = {p.name for p in ENDPOINTS[endpoint]} | set(CREDENTIALS)
    return tuple(sorted(name for name in params if name not in known))
