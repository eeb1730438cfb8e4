"""Hoiio's limits and the value formats flow files must respect, in one place.

Everything the checker enforces about the provider lives here, with where it comes from
(``/work/shared/hoiio-api.md`` section numbers in brackets), so a changed limit is a one-line edit.
The JSON Schema repeats some of these as patterns for editors; ``tests/unit/flowfile`` keeps the two
in step. Standard library only.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: ``msg`` length [2.4]: current docs say 1000, older docs and the Transfer page's own error text say
#: 500. Above ``MSG_MAX`` is an error; above ``MSG_SAFE`` a warning. Counted on the generated markup.
MSG_MAX = 1000
MSG_SAFE = 500

#: ``tag`` [1.7]
TAG_MAX = 256

#: E.164 with the leading + [1.1]: a + then 8 to 15 digits.
PHONE_RE = re.compile(r"\+[0-9]{8,15}")
PHONE_EXAMPLE = "+6561234567"
#: ``caller_id`` [1.7]: a number, or ``private`` to hide it.
CALLER_ID_PRIVATE = "private"

#: conference room IDs [5.4]: letters, digits, '.' and '_', up to 32 characters.
ROOM_ID_RE = re.compile(r"[A-Za-z0-9._]{1,32}")
ROOM_PREFIX = "room:"  # transfer ``to: "room:R1"``; ``"room:"`` alone opens a new room [4.8]
#: conference/call dials at most 8 numbers per request, and a room holds at most 8 people [1.3, 5.4].
CONFERENCE_MAX_NUMBERS = 8

#: Gather ``max_digits`` [4.3]; 0 (wait for #) is not offered: a collect always has a maximum.
DIGITS_MAX = 255
#: menu keys and what a caller can press
KEY_RE = re.compile(r"[0-9*#]+")

#: the flow's ``voipnow_invite`` node: VoipNow's conferenceInvite (the VoipNow reference, "Create
#: ConferenceInvite PhoneCalls"), with the same rules as ``POST /api/conferences/voipnow/invites``
#: (``engine.outbound.SCHEMAS["VoipNowInviteRequest"]``; a test keeps them in step): who is invited
#: (E.164, or an extension number such as 211 or 0003*211), the scheduled conference's number and
#: PIN, how long VoipNow rings (> 0 s), and the caller ID ("Name <number>" or a bare number).
VOIPNOW_NUMBER_RE = re.compile(r"\+[1-9][0-9]{7,14}|[0-9]{1,10}(?:\*[0-9]{1,10})?")
VOIPNOW_CONFERENCE_NUMBER_RE = re.compile(r"[0-9]{1,10}")
VOIPNOW_PIN_RE = re.compile(r"[0-9]{1,16}")
VOIPNOW_WAIT_MAX = 3600
VOIPNOW_CALLER_ID_RE = re.compile(r"[^<>\x00-\x1f\x7f]{0,64}<\+?[0-9]{1,20}>|\+?[0-9]{1,20}")

#: the flow's ``http`` node: a caller is waiting in silence, so calls are short.
HTTP_TIMEOUT_MAX = 10
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

#: audio played through ``<url>`` markup [2.4]: http/https, .mp3/.wav/.gsm (8000 Hz mono), <= 10 MB.
AUDIO_SCHEMES = ("http", "https")
AUDIO_EXTENSIONS = (".mp3", ".wav", ".gsm")

#: text-to-speech genders [2.4]
GENDERS = ("female", "male")

#: Text-to-speech languages. Hoiio's own list was never published in the material we have [2.4,
#: "Full language/gender list ... was not available"]; these are the tags seen in its docs and SDKs
#: (en, en-US, zh-HK) plus the usual languages of its markets (Singapore, Hong Kong, Malaysia,
#: Indonesia, Thailand, Vietnam, Philippines, Australia). A well-formed tag missing from this list is
#: a warning, not an error: extend the list when Hoiio confirms a language.
LANGUAGES = (
    "en", "en-US", "en-GB", "en-AU", "en-IN", "en-SG", "en-PH",
    "zh", "zh-CN", "zh-HK", "zh-TW", "yue",
    "ms", "ms-MY", "id", "id-ID", "ta", "ta-IN", "hi", "hi-IN",
    "th", "th-TH", "vi", "vi-VN", "tl", "fil",
    "ja", "ja-JP", "ko", "ko-KR",
    "fr", "fr-FR", "de", "de-DE", "es", "es-ES", "it", "it-IT", "pt", "pt-BR", "ru", "ru-RU", "ar",
)
#: BCP-47-ish: a 2-3 letter language, optionally a region (US) or a script (Hant).
LANGUAGE_RE = re.compile(r"[a-z]{2,3}(-([A-Z]{2}|[0-9]{3}|[A-Z][a-z]{3}))?")

#: the variables the engine provides on every call
BUILTIN_VARIABLES = ("caller", "called", "dest", "session", "digits", "transfer_status", "dial_status")

#: variable and node names
VARIABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
NODE_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
NODE_ID_MAX = 64
#: names Jinja reads as keywords or literals: a variable with one of these names can't be used
RESERVED_NAMES = frozenset({
    "and", "or", "not", "in", "is", "if", "else", "elif", "endif", "for", "endfor", "true", "false",
    "none", "True", "False", "None", "loop", "self", "super", "recursive", "with", "without", "context",
    "import", "from", "as", "set", "block", "macro", "call", "include", "extends", "raw", "filter",
})

#: flow names appear in URLs (/hoiio/notify/<flow>)
FLOW_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_RANGE_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-(?:([01][0-9]|2[0-3]):([0-5][0-9])|(24):(00))")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def is_phone(value: str) -> bool:
    return PHONE_RE.fullmatch(value) is not None


def is_room_id(value: str) -> bool:
    return ROOM_ID_RE.fullmatch(value) is not None


def audio_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be played by Hoiio, or None."""
    if any(c in url for c in "<> \t\n"):
        return "it contains spaces or < >"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "it is not a valid web address"
    if parts.scheme.lower() not in AUDIO_SCHEMES or not parts.netloc:
        return "it must start with http:// or https://"
    if not parts.path.lower().endswith(AUDIO_EXTENSIONS):
        return "it must end with .mp3, .wav or .gsm"
    return None


def language_problem(tag: str) -> tuple[str, str] | None:
    """(severity, reason) when ``tag`` is not a language Hoiio is known to speak."""
    if LANGUAGE_RE.fullmatch(tag) is None:
        return "error", "write a language tag such as en, en-US or zh-HK"
    if tag not in LANGUAGES:
        return "warning", "it is not among the languages Hoiio is known to speak (" + ", ".join(
            LANGUAGES[:6]) + ", ...); it may be refused at call time"
    return None
