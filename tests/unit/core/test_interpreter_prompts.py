"""Prompt parts to Hoiio msg markup, and destination checks."""

from __future__ import annotations

import pytest

from engine.core.flow import Say, Voice
from engine.core.prompts import (
    PromptProblem,
    is_phone_number,
    is_room_id,
    is_transfer_destination,
    render_prompt,
    speech,
)
from tests.unit.core.builders import audio, say, t


def test_plain_text_without_voice():
    assert render_prompt(say("Hello", "world."), {}, Voice()) == "Hello world."


def test_speech_only_names_what_is_set():
    assert speech("Hi", language="en-US") == '<speech language="en-US">Hi</speech>'
    assert speech("Hi", gender="male") == '<speech gender="male">Hi</speech>'
    assert speech("Hi") == "Hi"


def test_part_voice_overrides_flow_voice_field_by_field():
    prompt = (Say(t("A"), gender="male"),)
    assert render_prompt(prompt, {}, Voice("zh-HK", "female")) == '<speech language="zh-HK" gender="male">A</speech>'


def test_literal_text_and_values_cannot_inject_markup():
    assert render_prompt(say("<url>http://x</url> {{ v }}"), {"v": "<speech>"}, Voice()) == "urlhttp://x/url speech"


def test_empty_parts_are_left_out():
    assert render_prompt(say("", "{{ v }}", "End."), {"v": "  "}, Voice()) == "End."


def test_audio_parts_and_rendered_urls():
    prompt = (audio("{{ rec }}"),)
    assert render_prompt(prompt, {"rec": "https://r.example.com/a.mp3?x=1&y=2"}, Voice()) == (
        "<url>https://r.example.com/a.mp3?x=1&y=2</url>"
    )
    with pytest.raises(PromptProblem):
        render_prompt(prompt, {"rec": "javascript:alert(1)"}, Voice())


@pytest.mark.parametrize(
    ("value", "phone", "transfer"),
    [
        ("+6561234567", True, True),
        ("+12345678", True, True),
        ("+1234567", False, False),
        ("+1234567890123456", False, False),
        ("6561234567", False, False),
        ("room:", False, True),
        ("room:R1._x", False, True),
        ("room:" + "a" * 33, False, False),
        ("room:R 1", False, False),
    ],
)
def test_destinations(value, phone, transfer):
    assert is_phone_number(value) is phone
    assert is_transfer_destination(value) is transfer


def test_room_ids():
    assert is_room_id("R1") and is_room_id("") and not is_room_id("R-1")
