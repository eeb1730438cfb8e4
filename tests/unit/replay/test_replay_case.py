"""The replay case format: reading with line numbers, rewriting expectations in place."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.replay.case import CaseError, Step, parse_case, render_case, update_expectations

MINIMAL = """\
# header comment stays
flow: auto_attendant
now: "2026-11-23T02:00:00Z"
steps:
  - notify: {ivr_block: answer, call_state: ringing}
  # between the steps
  - notify: {ivr_block: play, call_state: ongoing}
    provider: {ivr/middle/gather: error_msg_invalid_xml}
    expect: []  # old expectation
# the end
"""


def test_minimal_case_is_read():
    case = parse_case(MINIMAL, "x.yaml")
    assert case.flow == "auto_attendant"
    assert case.now == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert [s.kind for s in case.steps] == ["notify", "notify"]
    assert case.steps[0].expect is None and case.steps[1].expect == []
    assert case.steps[1].provider == {"ivr/middle/gather": ["error_msg_invalid_xml"]}
    assert case.steps[1].line == 7
    assert not case.outbound


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flow: a\nnow: '2026-01-01T00:00:00Z'\nstep: []\n", "x.yaml:3: unknown key 'step' (did you mean 'steps'?)"),
        ("flow: a\nsteps: [{notify: {}}]\n", "x.yaml: now is required"),
        ("flow: a\nnow: yesterday\nsteps: [{notify: {}}]\n", "x.yaml:2: now must be an ISO 8601 time"),
        ("flow: a\nnow: 2026-01-01\nsteps:\n  - notify: {digits: 1}\n", 'x.yaml:4: step 1: digits must be text as '
         'Hoiio sends it (quote it: digits: "1")'),
        ("flow: a\nnow: 2026-01-01\nsteps:\n  - notify: {}\n  - start: outbound\n",
         "x.yaml:5: start: outbound can only be the first step"),
        ("flow: a\nnow: 2026-01-01\nsteps:\n  - start: outbound\n", "needs dest:"),
        ("flow: a\nnow: 2026-01-01\nsteps:\n  - notify: {}\n    provider: {ivr/end/transfr: x}\n",
         "'ivr/end/transfr' is not a Hoiio endpoint (did you mean 'ivr/end/transfer'?)"),
        ("flow: a\nnow: 2026-01-01\nsteps:\n  - notify: {}\n    expect: [{endpoint: x, params: {max_digits: 1}}]\n",
         "quote numbers"),
        ("flow: [\n", "x.yaml:2: not valid YAML"),
    ],
)
def test_mistakes_are_reported_with_file_and_line(text, message):
    with pytest.raises(CaseError) as info:
        parse_case(text, "x.yaml")
    assert message in str(info.value)


def test_update_replaces_only_the_expectations_and_keeps_comments():
    case = parse_case(MINIMAL, "x.yaml")
    blocks = [
        [{"endpoint": "ivr/middle/play", "params": {"msg": "Hello: you", "session": "kept out"}}],
        [{"endpoint": "ivr/middle/gather", "params": {"attempts": "1", "msg": "Press 1.", "max_digits": "1"}}],
    ]
    blocks[0][0]["params"].pop("session")
    text = update_expectations(MINIMAL, blocks, {"status": "ended", "outcome": "caller hung up"})
    assert "# header comment stays" in text and "# between the steps" in text and "# the end" in text
    assert "old expectation" not in text
    again = parse_case(text, "x.yaml")
    assert again.steps[0].expect == blocks[0]
    assert again.steps[1].expect == blocks[1]
    assert again.steps[1].provider == case.steps[1].provider
    assert again.expect_call == {"status": "ended", "outcome": "caller hung up"}
    # parameters are written in Hoiio's documented order, one per line
    gather = text[text.index("ivr/middle/gather"):]
    assert gather.index("msg:") < gather.index("max_digits:") < gather.index("attempts:")
    # a second update with the same blocks changes nothing
    assert update_expectations(text, blocks, again.expect_call) == text


def test_update_of_a_first_key_expect_keeps_the_list_dash():
    text = "flow: a\nnow: 2026-01-01\nsteps:\n  - expect: []\n    notify: {ivr_block: answer}\n"
    new = update_expectations(text, [[{"endpoint": "ivr/end/hangup", "params": {}}]], None)
    assert parse_case(new).steps[0].expect == [{"endpoint": "ivr/end/hangup", "params": {}}]


def test_rendered_case_reads_back():
    case = parse_case(MINIMAL, "x.yaml")
    case.vars = {"code": "0123", "n": 4}
    case.http = {"https://api.example.com/x?a=1": [{"status": 200, "json": {"a": [1, {"b": "c"}]}}, {"status": 503}]}
    case.steps.append(Step(kind="notify", fields={"ivr_block": "gather", "digits": "#", "to": None}, expect=[]))
    again = parse_case(render_case(case, header=["made by a test"]), "y.yaml")
    assert again.vars == case.vars and again.http == case.http
    assert again.steps[2].fields == {"ivr_block": "gather", "digits": "#", "to": None}
    assert [s.provider for s in again.steps] == [s.provider for s in case.steps]
