"""Prompt parts to Hoiio msg markup, destination checks, and the numbers a conference dials."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.flow import Say, Voice
from engine.core.prompts import (
    CONFERENCE_MAX_NUMBERS,
    PromptProblem,
    conference_numbers_problem,
    is_phone_number,
    is_room_id,
    is_transfer_destination,
    render_prompt,
    speech,
    split_numbers,
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


# ---- the numbers a conference dials -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("", []),
        (" , ,\n", []),
        ("+6561000001", ["+6561000001"]),
        ("+6561000001,+6561000002", ["+6561000001", "+6561000002"]),
        ("+6561000001, +6561000002", ["+6561000001", "+6561000002"]),
        ("\t+6561000001\n+6561000002 ,, +6561000003,", ["+6561000001", "+6561000002", "+6561000003"]),
        ("+6561000001;+6561000002", ["+6561000001;+6561000002"]),  # only commas and whitespace separate
    ],
)
def test_split_numbers_at_commas_and_whitespace(text, items):
    assert split_numbers(text) == items


_separator = st.text(alphabet=", \t\n", min_size=1, max_size=3)


@given(st.lists(st.from_regex(r"\+[0-9]{8,15}", fullmatch=True), max_size=10), _separator, st.data())
def test_split_numbers_gives_back_the_numbers_whatever_separates_them(numbers, first, data):
    text = first
    for number in numbers:
        text += number + data.draw(_separator)
    assert split_numbers(text) == numbers


def test_conference_numbers_problem():
    eight = [f"+656100000{i}" for i in range(1, 9)]
    assert CONFERENCE_MAX_NUMBERS == 8
    assert conference_numbers_problem(["+6561000001"]) is None
    assert conference_numbers_problem(eight) is None
    assert conference_numbers_problem([]) == "no numbers to dial (1 to 8 are needed)"
    assert conference_numbers_problem([*eight, "+6561000009"]) == "9 numbers, but Hoiio dials at most 8 into a room"
    malformed = "is not a phone number: expected + and 8-15 digits"
    assert conference_numbers_problem(["+6561000001", "6561"]) == f"'6561' {malformed}"
    assert conference_numbers_problem(["+6561000001", ""]) == f"'' {malformed}"
    assert conference_numbers_problem(["+6561000001", "+6561000002", "+6561000001"]) == "'+6561000001' is listed twice"
    # a malformed number is named before the count, and the count before a repeated number
    assert conference_numbers_problem(["x", *eight, eight[0]]) == f"'x' {malformed}"
    assert conference_numbers_problem([*eight, eight[0]]) == "9 numbers, but Hoiio dials at most 8 into a room"
