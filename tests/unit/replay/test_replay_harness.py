"""The harness: provider answers, http stubs, routing and reporting, on small flows of its own."""

from __future__ import annotations

import textwrap

import pytest

from engine.replay import Replayer, parse_case
from engine.replay import coverage as coverage_report
from engine.replay.harness import _missing

MONITOR_FLOW = """\
numbers: ["+6560000009"]
start: rec
nodes:
  rec:
    type: monitor
    say: "This call is recorded."
    into: call_recording
    next: ask
  ask:
    type: menu
    say: "Press 1."
    options: {"1": transfer}
    no_input: {tries: 1, then: bye}
    invalid: {tries: 1, then: bye}
  transfer:
    type: transfer
    to: "+6561111111"
    on_failure: continue
    failed: lookup
  lookup:
    type: http
    method: GET
    url: "https://crm.example.com/lookup"
    save: {agent: data.agent}
    next: bye
    failed: bye
  bye:
    type: hangup
    say: "Goodbye {{ agent | default('nobody') }}."
"""


@pytest.fixture(scope="module")
def replayer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flows")
    (folder / "rec.yaml").write_text(MONITOR_FLOW)
    with Replayer(folder) as r:
        yield r


def case(text: str):
    return parse_case(textwrap.dedent(text), "case.yaml")


def test_monitor_recording_goes_to_the_monitor_url_and_is_saved(replayer):
    result = replayer.run(case("""\
        flow: rec
        now: "2026-11-23T02:00:00Z"
        steps:
          - notify: {ivr_block: answer, call_state: ringing}
          - monitor: {record_url: "https://rec.example.com/full.mp3"}
          - notify: {ivr_block: monitor, call_state: ended}
        expect_call: {status: ended, vars: {call_recording: "https://rec.example.com/full.mp3"}}
        """))
    assert result.error is None
    first, monitor, _ = result.steps
    assert first.actual == [{"endpoint": "ivr/middle/monitor", "params": {"msg": "This call is recorded."}}]
    assert first.problems == []  # session, notify_url and monitor_notify_url were all there
    assert monitor.http_status == 200 and monitor.actual == []
    assert result.call_problems == []


def test_a_lost_answer_is_not_an_error_and_http_answers_come_from_the_case(replayer):
    result = replayer.run(case("""\
        flow: rec
        now: "2026-11-23T02:00:00Z"
        http:
          https://crm.example.com/lookup: [{status: 200, json: {data: {agent: Ann}}}]
        steps:
          - notify: {ivr_block: answer, call_state: ringing}
          - notify: {ivr_block: monitor, call_state: ongoing}
          - notify: {ivr_block: gather, call_state: ongoing, digits: "1"}
            provider: {ivr/end/transfer: timeout}
          - notify: {ivr_block: transfer, call_state: ongoing, transfer_status: unanswered}
        """))
    transfer, back = result.steps[2:]
    # the transfer's answer was lost: the engine waits for Hoiio instead of calling it a failure
    assert [b["endpoint"] for b in transfer.actual] == ["ivr/end/transfer"]
    assert back.http_calls == [{"node": "lookup", "method": "GET", "url": "https://crm.example.com/lookup",
                                "json": None, "params": {}}]
    assert back.actual == [{"endpoint": "ivr/end/hangup", "params": {"msg": "Goodbye Ann."}}]
    assert not result.passed  # no expectations were written
    assert "no expect: for this step" in result.report()


def test_http_without_an_answer_in_the_case_fails_like_an_unreachable_host(replayer):
    result = replayer.run(case("""\
        flow: rec
        now: "2026-11-23T02:00:00Z"
        steps:
          - notify: {ivr_block: answer, call_state: ringing}
          - notify: {ivr_block: monitor, call_state: ongoing}
          - notify: {ivr_block: gather, call_state: ongoing, digits: "1"}
            provider: {ivr/end/transfer: error_dest_invalid, ivr/middle/play: error_msg_invalid_xml}
        """))
    step = result.steps[2]
    assert [b["endpoint"] for b in step.actual] == ["ivr/end/transfer", "ivr/end/hangup"]
    assert step.actual[1]["params"] == {"msg": "Goodbye nobody."}
    assert any("provider answers not used" in note and "ivr/middle/play" in note for note in step.notes)
    assert result.call["path"][-2:] == [["transfer", "failed"], ["lookup", "failed"]]


def test_an_answer_for_a_number_no_flow_lists_is_posted_to_the_flows_own_url(replayer):
    result = replayer.run(case("""\
        flow: rec
        now: "2026-11-23T02:00:00Z"
        steps:
          - notify: {ivr_block: answer, call_state: ringing, to: "+6599999999"}
            expect: []
        """))
    (first,) = result.steps
    assert first.http_status == 200 and first.response["flow"] == "rec"
    assert [b["endpoint"] for b in first.actual] == ["ivr/middle/monitor"]
    assert result.status == "FAIL"
    assert "+  - endpoint: ivr/middle/monitor" in result.report()


def test_a_refused_notification_is_noted(replayer):
    result = replayer.run(case("""\
        flow: rec
        now: "2026-11-23T02:00:00Z"
        steps:
          - notify: {ivr_block: answer, call_state: ringing}
          - notify: {ivr_block: monitor, call_state: sideways}
        """))
    assert result.steps[1].http_status == 400
    assert "the engine answered HTTP 400: call_state" in result.report()


@pytest.mark.parametrize(("text", "error"), [
    ("flow: nope\nnow: 2026-01-01\nsteps: [{notify: {}}]\n", "there is no flow named 'nope'"),
    ("flow: rec\nnow: 2026-01-01\ndest: '+6591234567'\nsteps: [{start: outbound}]\n", "is for incoming calls"),
])
def test_case_and_flow_that_do_not_fit_are_errors(replayer, text, error):
    result = replayer.run(parse_case(text, "bad.yaml"))
    assert result.status == "ERROR" and error in result.error


def test_presence_rules():
    assert _missing("ivr/start/dial", {"app_id": "a", "access_token": "t", "notify_url": "u"}) == []
    assert _missing("ivr/middle/hold", {"app_id": "a", "access_token": "t", "session": "s"}) == []
    assert _missing("ivr/middle/monitor", {"app_id": "a", "access_token": "t", "session": "s", "notify_url": "u"}) \
        == ["monitor_notify_url"]
    assert _missing("ivr/middle/play", {}) == ["app_id", "access_token", "session", "notify_url"]


def test_coverage_counts_hang_up_only_where_a_caller_can_hang_up(replayer):
    flow = replayer.registry.get("rec")
    report = coverage_report.compute([(flow, [["rec", "hang-up"]], ["rec"])], {"rec": flow})["rec"]
    assert ("rec", "hang-up") not in report.missing_exits
    assert ("ask", "hang-up") in report.missing_exits
    assert not any(node in ("transfer", "bye") and exit_name == "hang-up" for node, exit_name in report.all_exits())
    assert report.missing_nodes == ["ask", "transfer", "lookup", "bye"]
