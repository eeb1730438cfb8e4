"""Every file in tests/flows_bad/ holds one kind of mistake; ``ivr check`` must report it with the
exact ``file:line:col: severity: message`` line (and nothing else)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.flowfile import load_flow
from engine.flowfile.loader import load_document

ROOT = Path(__file__).resolve().parents[3]
BAD = ROOT / "tests" / "flows_bad"

EXPECTED: dict[str, list[str]] = {
    "yaml_syntax.yaml": [
        "{file}:7:14: error: a ':' can't be used here; put text that contains ': ' in quotes",
    ],
    "tab_indent.yaml": [
        "{file}:6:1: error: tabs can't be used for indenting in YAML; use spaces",
    ],
    "duplicate_key.yaml": [
        "{file}:9:5: error: 'next' is written twice here (first on line 8); YAML would silently use only the "
        "last one, so keep just one",
    ],
    "unknown_key.yaml": [
        "{file}:8:5: error: unknown option 'timout' in menu 'main' — did you mean 'timeout'?",
    ],
    "wrong_type.yaml": [
        "{file}:8:14: error: 'timeout' in menu 'main' must be a whole number, not the text \"5 seconds\"",
    ],
    "missing_target.yaml": [
        "{file}:10:12: error: menu 'main' sends key 2 to 'suport', which does not exist — did you mean 'support'?",
    ],
    "unreachable_node.yaml": [
        "{file}:9:3: warning: play 'old_promotion' can never be reached: nothing leads to it from the start or "
        "from on_error; remove it or send a call to it",
    ],
    "endless_loop.yaml": [
        "{file}:7:3: error: endless loop: set 'count' → goto 'again' → set 'count' never waits for the caller; "
        "put a step that talks to the caller (play, menu, ...) in the loop, or give it a way out",
    ],
    "long_msg.yaml": [
        "{file}:7:10: error: 'say' in play 'welcome' is 1052 characters long as Hoiio markup; Hoiio accepts at "
        "most 1000: split it over two nodes",
    ],
    "bad_room_id.yaml": [
        "{file}:7:9: error: room ID 'team meeting-1' in transfer 'join' may use only letters, digits, '.' and "
        "'_', up to 32 characters",
    ],
    "unquoted_number.yaml": [
        '{file}:8:9: error: +6561234567 must be in quotes: write "+6561234567" (YAML reads it as a number and '
        "the + is lost)",
    ],
    "malformed_number.yaml": [
        "{file}:3:11: error: 'numbers[1]' must be a phone number in international format, in quotes: "
        '"+6561234567" (a + then 8 to 15 digits), not the text "+65 3158 0000"',
        "{file}:8:9: error: 'to' in transfer 'operator' must be a phone number in international format, in "
        'quotes ("+6561234567"), or a conference room ("room:R1"), not "61234567"',
    ],
    "template_syntax.yaml": [
        "{file}:9:10: error: template error in 'say' in hangup 'welcome': unexpected '}'; check the {{ }} and "
        "{% %} pairs",
    ],
    "unsafe_template.yaml": [
        "{file}:7:10: error: unsafe template in 'say' in hangup 'welcome': '.__class__' reaches into Python "
        "internals",
    ],
    "yaml_bomb.yaml": [
        "{file}:4:4: error: anchors (&a) are not allowed in flow files; write the value out in full",
    ],
    "plain_int_key.yaml": [
        '{file}:9:7: error: key 1 must be in quotes: write "1": (YAML reads it as a number, not as text)',
    ],
    "yes_no_boolean.yaml": [
        '{file}:7:12: error: yes must be in quotes: write "yes" for text, or true/false for a yes/no option '
        "(older YAML reads it as true)",
    ],
    "undefined_variable.yaml": [
        "{file}:9:10: error: variable 'customer_nme' in 'say' in hangup 'welcome' is never set — did you mean "
        "'customer_name'?",
    ],
    "hold_without_unhold.yaml": [
        "{file}:5:3: error: after hold 'hold' the call reaches play 'announce' before an unhold; while a caller "
        "is on hold only unhold can come next",
    ],
    "dial_not_start.yaml": [
        "{file}:9:3: error: dial 'call_back' must be the start node: a dial places the outbound call, so it can "
        "only come first",
        "{file}:9:3: warning: dial 'call_back' can never be reached: nothing leads to it from the start or from "
        "on_error; remove it or send a call to it",
    ],
    "menu_no_way_out.yaml": [
        "{file}:5:3: error: menu 'main' has no way out: whatever the caller does, the call never reaches a "
        "hangup or a transfer; send no_input or invalid to a goodbye or an operator",
    ],
    "bad_hours.yaml": [
        "{file}:7:15: error: unknown time zone 'Asia/Singapur' in hours 'hours' — did you mean 'Asia/Singapore'?",
        "{file}:9:16: error: '22:00-06:00' in hours 'hours' ends before it starts; for hours past midnight write "
        "'22:00-24:00' on one day and '00:00-06:00' on the next",
        "{file}:10:16: error: '2026-02-30' in hours 'hours' is not a real date (YYYY-MM-DD)",
    ],
    "unknown_type.yaml": [
        "{file}:6:11: error: unknown node type 'hangpu' for node 'welcome' — did you mean 'hangup'?",
    ],
    "missing_required.yaml": [
        "{file}:5:3: error: menu 'main' needs 'no_input' (when the caller presses nothing)",
    ],
    "bad_audio.yaml": [
        "{file}:8:17: error: audio 'https://example.com/welcome.ogg' in 'say' in hangup 'welcome' can't be "
        "played: it must end with .mp3, .wav or .gsm",
    ],
    "bad_pattern.yaml": [
        "{file}:10:14: error: 'pattern' in collect 'pin' is not a valid regular expression: unterminated "
        "character set at position 0",
    ],
    "too_many_numbers.yaml": [
        "{file}:8:14: error: 'numbers' in conference 'conference' can have at most 8 items; it has 9",
    ],
    "conference_numbers_text.yaml": [
        "{file}:8:14: error: 'numbers' in conference 'conference' lists '61000002', which is not a phone number in "
        "international format; write each number like +6561234567 (a + then 8 to 15 digits, no spaces), separated "
        "by commas",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_flow_reports_exactly_its_mistake(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    file = f"tests/flows_bad/{name}"
    flow, findings = load_flow(file)
    assert [str(f) for f in findings] == [line.replace("{file}", file) for line in EXPECTED[name]]
    has_error = any(" error: " in line for line in EXPECTED[name])
    assert (flow is None) == has_error


def test_every_bad_flow_has_an_expectation_and_says_what_is_wrong() -> None:
    files = {p.name for p in BAD.glob("*.yaml")}
    assert files == set(EXPECTED)
    for path in BAD.glob("*.yaml"):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "# yaml-language-server: $schema=../../engine/flowfile/flow.schema.json"
        assert lines[1].startswith("# mistake: ")


def test_a_nine_level_yaml_bomb_is_refused_at_once() -> None:
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        levels.append(f"a{level}: &a{level} [{refs}]")
    source = "\n".join(levels) + "\n"
    started = time.perf_counter()
    doc = load_document(source, "bomb.yaml")
    elapsed = time.perf_counter() - started
    assert doc.fatal and doc.data is None
    assert [str(f) for f in doc.findings] == [
        "bomb.yaml:1:5: error: anchors (&a0) are not allowed in flow files; write the value out in full"
    ]
    assert elapsed < 0.05


def test_aliases_without_anchors_are_named() -> None:
    doc = load_document("a: *nowhere\n", "alias.yaml")
    assert [str(f) for f in doc.findings] == [
        "alias.yaml:1:4: error: aliases (*nowhere) are not allowed in flow files; write the value out in full"
    ]
