"""The ``voipnow_invite`` node: written in YAML, compiled, checked with the rules the API uses."""

from __future__ import annotations

import re

import pytest

from engine.core import flow as f
from engine.core import interpreter
from engine.flowfile import compile_source, limits, schema
from engine.outbound import SCHEMAS

HEAD = "start: first\non_error: end\nvars: {engineer: '+6561000009', room: '3'}\nnodes:\n"
END = "  end: {type: hangup}\n"


def compiled(node: str) -> tuple[f.Flow | None, list[str]]:
    """The flow and its findings (without the file name) for one node called ``first`` plus ``end``."""
    flow, findings = compile_source(HEAD + node + END, "f.yaml")
    return flow, [str(x).removeprefix("f.yaml:") for x in findings]


def invite(**options: str) -> str:
    lines = "".join(f"    {key}: {value}\n" for key, value in options.items())
    return "  first:\n    type: voipnow_invite\n" + lines


# ---- good nodes ---------------------------------------------------------------------------------


def test_a_full_node_compiles_to_the_model() -> None:
    flow, problems = compiled(invite(number='"+6591234567"', conference_number='"3"', pin='"2233"',
                                     wait_for_pickup="30", caller_id='"Acme Support <+6531580000>"',
                                     next="end", failed="end"))  # fmt: skip
    assert problems == []
    assert flow is not None
    node = flow.nodes["first"]
    assert isinstance(node, f.VoipNowInvite) and node.kind == "voipnow_invite" and not node.is_block
    assert node.number.source == "+6591234567"
    assert node.conference_number is not None and node.conference_number.source == "3"
    assert node.pin is not None and node.pin.source == "2233"
    assert (node.wait_for_pickup, node.caller_id) == (30, "Acme Support <+6531580000>")
    assert node.exits() == {"next": "end", "failed": "end"}
    assert node.pos is not None and (node.pos.line, node.pos.col) == (5, 3)


def test_a_minimal_node_with_an_extension_and_variables() -> None:
    flow, problems = compiled(invite(number='"0003*211"', next="end"))
    assert problems == []
    assert flow is not None
    node = flow.nodes["first"]
    assert isinstance(node, f.VoipNowInvite)
    assert (node.conference_number, node.pin, node.wait_for_pickup, node.caller_id, node.failed) == (
        None, None, None, None, None)  # fmt: skip
    assert node.exits() == {"next": "end"}
    flow, problems = compiled(invite(number='"{{ engineer }}"', conference_number='"{{ room }}"',
                                     pin='"{{ digits }}"', caller_id='"+6531580000"', next="end"))  # fmt: skip
    assert problems == []
    assert flow is not None
    node = flow.nodes["first"]
    assert isinstance(node, f.VoipNowInvite) and node.number.variables() == {"engineer"}


# ---- bad nodes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"next": "end"}, "5:3: error: voipnow_invite 'first' needs 'number' (who is invited, in quotes: a phone "
                          "number in international format (\"+6561234567\") or a VoipNow extension number (\"211\", "
                          "\"0003*211\"); may use variables)"),
        ({"number": '"+6591234567"'}, "5:3: error: voipnow_invite 'first' needs 'next' (the node the call goes to "
                                      "next (VoipNow is calling the number))"),
        ({"number": "211", "next": "end"},
         "7:13: error: 'number' in voipnow_invite 'first' must be in quotes: a phone number (\"+6561234567\") or a "
         "VoipNow extension number (\"211\"), not the number 211"),
        ({"number": '"+65612"', "next": "end"},
         "7:13: error: 'number' in voipnow_invite 'first' must be a phone number in international format "
         "(\"+6561234567\") or a VoipNow extension number (\"211\", \"0003*211\"), not \"+65612\""),
        ({"number": '"+0591234567"', "next": "end"},
         "7:13: error: 'number' in voipnow_invite 'first' must be a phone number in international format "
         "(\"+6561234567\") or a VoipNow extension number (\"211\", \"0003*211\"), not \"+0591234567\""),
        ({"number": '"211"', "conference_number": '"3a"', "next": "end"},
         "8:24: error: 'conference_number' in voipnow_invite 'first' must be 1 to 10 digits, not \"3a\""),
        ({"number": '"211"', "conference_number": "3", "next": "end"},
         "8:24: error: 'conference_number' in voipnow_invite 'first' must be in quotes: the scheduled conference's "
         "number, 1 to 10 digits (\"3\"), not the number 3"),
        ({"number": '"211"', "pin": '"12345678901234567"', "next": "end"},
         "8:10: error: 'pin' in voipnow_invite 'first' must be 1 to 16 digits, not \"12345678901234567\""),
        ({"number": '"211"', "pin": '""', "next": "end"},
         "8:10: error: 'pin' in voipnow_invite 'first' can't be empty"),
        ({"number": '"211"', "wait_for_pickup": "0", "next": "end"},
         "8:22: error: 'wait_for_pickup' in voipnow_invite 'first' must be between 1 and 3600, not 0"),
        ({"number": '"211"', "wait_for_pickup": "3601", "next": "end"},
         "8:22: error: 'wait_for_pickup' in voipnow_invite 'first' must be between 1 and 3600, not 3601"),
        ({"number": '"211"', "wait_for_pickup": '"30"', "next": "end"},
         "8:22: error: 'wait_for_pickup' in voipnow_invite 'first' must be a whole number, not the text \"30\""),
        ({"number": '"211"', "caller_id": '"Acme <support>"', "next": "end"},
         "8:16: error: 'caller_id' in voipnow_invite 'first' must look like: Acme Support <+6531580000> (or be a "
         "phone number), not the text \"Acme <support>\""),
        ({"number": '"211"', "caller_id": "private", "next": "end"},
         "8:16: error: 'caller_id' in voipnow_invite 'first' must look like: Acme Support <+6531580000> (or be a "
         "phone number), not the text \"private\""),
        ({"number": '"211"', "next": "end", "room": "R1"},
         "9:5: error: unknown option 'room' in voipnow_invite 'first' ('room' is an option of conference)"),
        ({"number": '"211"', "next": "end", "failed": "nowhere"},
         "9:13: error: voipnow_invite 'first' sends failures to 'nowhere', which does not exist"),
        ({"number": '"{{ enginer }}"', "next": "end"},
         "7:13: error: variable 'enginer' in 'number' in voipnow_invite 'first' is never set — did you mean "
         "'engineer'?"),
    ],
)
def test_bad_nodes_are_reported_exactly(options: dict[str, str], message: str) -> None:
    _, problems = compiled(invite(**options))
    assert problems == [message]


def test_an_unknown_type_suggests_voipnow_invite() -> None:
    _, problems = compiled("  first: {type: voipnow_invit, number: '211', next: end}\n")
    assert problems == ["5:17: error: unknown node type 'voipnow_invit' for node 'first' — did you mean "
                        "'voipnow_invite'?"]  # fmt: skip


def test_an_invite_alone_in_a_loop_never_waits_for_the_caller() -> None:
    _, problems = compiled(invite(number='"211"', next="first", failed="end"))
    assert problems == ["5:3: error: endless loop: voipnow_invite 'first' → voipnow_invite 'first' never waits for "
                        "the caller; put a step that talks to the caller (play, menu, ...) in the loop, or give it "
                        "a way out"]  # fmt: skip


# ---- the same rules everywhere -----------------------------------------------------------------

SAMPLES = ["+6591234567", "+659123456789012", "+6591234", "+0591234567", "6591234567", "211", "0003*211",
           "0003*", "*211", "12345678901", "1234567890*1234567890", "", "+", "abc", "3", "2233",
           "12345678901234567", "1234567890123456", "Acme Support <+6531580000>", "Acme <6531580000>",
           "<+6531580000>", "Acme <support>", "private", "A\tB <+65>", "x" * 65 + " <+65>"]  # fmt: skip


def _api(name: str) -> re.Pattern[str]:
    return re.compile(SCHEMAS["VoipNowInviteRequest"]["properties"][name]["pattern"])


@pytest.mark.parametrize(
    ("name", "ours", "core"),
    [
        ("number", limits.VOIPNOW_NUMBER_RE, interpreter.VOIPNOW_NUMBER),
        ("conference_number", limits.VOIPNOW_CONFERENCE_NUMBER_RE, interpreter.VOIPNOW_CONFERENCE_NUMBER),
        ("pin", limits.VOIPNOW_PIN_RE, interpreter.VOIPNOW_PIN),
        ("caller_id", limits.VOIPNOW_CALLER_ID_RE, limits.VOIPNOW_CALLER_ID_RE),
    ],
)
def test_flow_checks_the_interpreter_and_the_api_apply_the_same_rules(name: str, ours: re.Pattern[str],
                                                                     core: re.Pattern[str]) -> None:
    api = _api(name)
    for sample in SAMPLES:
        expected = api.search(sample) is not None
        assert (ours.fullmatch(sample) is not None) is expected, (name, sample)
        assert (core.fullmatch(sample) is not None) is expected, (name, sample)


def test_the_schema_says_what_the_limits_say() -> None:
    definition = schema.schema()["$defs"]["voipnow_invite"]["properties"]
    assert definition["caller_id"]["pattern"] == "^(" + limits.VOIPNOW_CALLER_ID_RE.pattern + ")$"
    wait = SCHEMAS["VoipNowInviteRequest"]["properties"]["wait_for_pickup"]
    assert (definition["wait_for_pickup"]["minimum"], definition["wait_for_pickup"]["maximum"]) == (
        wait["minimum"], wait["maximum"]) == (1, limits.VOIPNOW_WAIT_MAX)  # fmt: skip
