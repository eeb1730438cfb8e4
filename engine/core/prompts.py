"""Prompts to Hoiio ``msg`` markup, and the address checks that go with blocks (phone numbers,
rooms, the numbers a conference dials).

A prompt is a tuple of parts: ``Say`` becomes plain text, wrapped in ``<speech language=".."
gender="..">`` only when a language or gender is set (on the part, else on the flow's voice), and
``Audio`` becomes ``<url>...</url>``; parts are joined with one space. Text never carries ``<`` or
``>`` (values are stripped by the templates, literal text here), so a ``msg`` holds no markup but
ours. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from engine.core.flow import Audio, Prompt, Say, Voice

#: Hoiio rejects longer messages with ``error_msg_invalid_length``.
MSG_LIMIT = 1000

E164 = re.compile(r"\+[0-9]{8,15}")
ROOM_DEST = re.compile(r"room:[A-Za-z0-9._]{0,32}")
ROOM_ID = re.compile(r"[A-Za-z0-9._]{0,32}")
AUDIO_URL = re.compile(r"https?://\S+", re.IGNORECASE)
#: conference/call dials at most 8 numbers per request, and a room holds at most 8 people.
CONFERENCE_MAX_NUMBERS = 8
#: what separates the numbers in a text that lists several (``"+6561000001, +6561000002"``)
NUMBER_SEPARATORS = re.compile(r"[\s,]+")


class PromptProblem(Exception):
    """A prompt rendered to something Hoiio cannot play (bad audio URL, message too long)."""


def _no_markup(text: str) -> str:
    return text.replace("<", "").replace(">", "")


def _attribute(value: str) -> str:
    return _no_markup(value).replace('"', "")


def speech(text: str, language: str | None = None, gender: str | None = None) -> str:
    """Text as Hoiio speaks it: plain, or in ``<speech>`` when a language or gender is chosen."""
    text = _no_markup(text)
    attributes = [
        f'{name}="{_attribute(value)}"' for name, value in (("language", language), ("gender", gender)) if value
    ]
    if not attributes:
        return text
    return f"<speech {' '.join(attributes)}>{text}</speech>"


def audio(url: str) -> str:
    url = url.strip()
    if not AUDIO_URL.fullmatch(url) or "<" in url or ">" in url:
        raise PromptProblem(f"{url!r} is not an http(s) address of an audio file")
    return f"<url>{url}</url>"


def render_part(part: Say | Audio, context: Mapping[str, Any], voice: Voice) -> str:
    """Render one part; template failures propagate as ``RenderError``."""
    if isinstance(part, Audio):
        return audio(part.url.render(context))
    text = part.text.render(context).strip()
    if not text:
        return ""
    return speech(text, part.language or voice.language, part.gender or voice.gender)


def render_prompt(prompt: Prompt, context: Mapping[str, Any], voice: Voice) -> str:
    """The ``msg`` for a prompt: rendered parts joined by a space, empty parts left out."""
    parts = [render_part(part, context, voice) for part in prompt]
    msg = " ".join(p for p in parts if p)
    if len(msg) > MSG_LIMIT:
        raise PromptProblem(f"the message is {len(msg)} characters long; Hoiio plays at most {MSG_LIMIT}")
    return msg


def is_phone_number(value: str) -> bool:
    """E.164 as Hoiio accepts it: ``+`` and 8 to 15 digits."""
    return E164.fullmatch(value) is not None


def is_transfer_destination(value: str) -> bool:
    """A phone number, or a conference room ``room:<id>`` (an empty id asks Hoiio for a new room)."""
    return is_phone_number(value) or ROOM_DEST.fullmatch(value) is not None


def is_room_id(value: str) -> bool:
    return ROOM_ID.fullmatch(value) is not None


def split_numbers(text: str) -> list[str]:
    """The items of a text listing phone numbers separated by commas and/or whitespace, in order;
    empty items (``"a,,b"``, a trailing comma) are left out. Nothing is checked here."""
    return [item for item in NUMBER_SEPARATORS.split(text) if item]


def conference_numbers_problem(numbers: Sequence[str]) -> str | None:
    """Why Hoiio's conference/call would refuse to dial ``numbers``, or None: it takes 1 to 8
    different phone numbers in E.164 (``+`` and 8 to 15 digits)."""
    if not numbers:
        return "no numbers to dial (1 to 8 are needed)"
    for number in numbers:
        if not is_phone_number(number):
            return f"{number!r} is not a phone number: expected + and 8-15 digits"
    if len(numbers) > CONFERENCE_MAX_NUMBERS:
        return f"{len(numbers)} numbers, but Hoiio dials at most {CONFERENCE_MAX_NUMBERS} into a room"
    seen: set[str] = set()
    for number in numbers:
        if number in seen:
            return f"{number!r} is listed twice"
        seen.add(number)
    return None
