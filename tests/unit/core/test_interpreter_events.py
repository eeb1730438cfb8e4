"""Which events count: stale and duplicate ones, hang-ups at every kind of wait, provider rejections."""

from __future__ import annotations

import pytest

from engine.core.events import Notification
from tests.unit.core.builders import (
    begin,
    collect,
    conference,
    ended,
    feed,
    hold,
    http,
    http_result,
    make_flow,
    menu,
    monitor,
    notify,
    play,
    record,
    rejected,
    side_result,
    transfer,
    unhold,
)


def two_plays():
    return make_flow(play("a", next="b"), play("b", next="bye"))


def test_duplicate_notification_is_stale_and_changes_nothing():
    flow = two_plays()
    s = begin(flow)
    first = notify(s.state)
    s2 = feed(flow, s.state, first)
    again = feed(flow, s2.state, first)
    assert again.outcome == "ignored: stale"
    assert again.state is s2.state and again.actions == () and again.trace == ()


@pytest.mark.parametrize("step", [None, 0, 5])
def test_notifications_for_other_steps_are_stale(step):
    flow = two_plays()
    s = begin(flow)
    out = feed(flow, s.state, notify(s.state, step=step, call_state="ongoing"))
    assert out.outcome == "ignored: stale" and out.state is s.state


def test_duplicate_answer_is_stale():
    flow = two_plays()
    s = begin(flow)
    answer = Notification(session=s.state.session, block="answer", call_state="ringing", step=None)
    assert feed(flow, s.state, answer).outcome == "ignored: stale"


@pytest.mark.parametrize(
    "event_for",
    [
        lambda st: http_result(st, 200),
        lambda st: side_result(st),
        lambda st: rejected(st, "error_msg_invalid_xml", step=st.step + 1),
    ],
)
def test_results_that_do_not_match_the_wait_are_ignored(event_for):
    flow = two_plays()
    s = begin(flow)
    out = feed(flow, s.state, event_for(s.state))
    assert out.outcome.startswith("ignored") and out.state is s.state and out.actions == ()


def test_http_result_for_a_previous_step_is_stale():
    flow = make_flow(http("api", next="b", failed="b"), http("b", next="bye", failed="bye"))
    s = begin(flow)
    s2 = feed(flow, s.state, http_result(s.state, 200))
    assert feed(flow, s2.state, http_result(s.state, 200)).outcome == "ignored: stale"


def test_events_after_the_end_are_ignored():
    flow = two_plays()
    s = begin(flow)
    s = feed(flow, s.state, ended(s.state))
    assert s.state.status == "ended"
    for event in (notify(s.state), ended(s.state), http_result(s.state), rejected(s.state, "error_session_ended")):
        out = feed(flow, s.state, event)
        assert out.outcome == "ignored: call already ended" and out.state is s.state and out.actions == ()


WAITS = {
    "play": (make_flow(play("n")), "play"),
    "menu": (make_flow(menu("n", {"1": "bye"})), "gather"),
    "collect": (make_flow(collect("n")), "gather"),
    "record": (make_flow(record("n")), "record"),
    "monitor": (make_flow(monitor("n")), "monitor"),
    "unhold": (make_flow(hold("h", next="n"), unhold("n")), "unhold"),
    "http": (make_flow(http("n")), "http"),
    "conference": (make_flow(conference("n", ["+6561111111"])), "side"),
}


@pytest.mark.parametrize("kind", sorted(WAITS))
def test_caller_hang_up_at_each_kind_of_wait(kind):
    flow, waiting = WAITS[kind]
    s = begin(flow)
    assert s.state.waiting == waiting and s.state.node == "n"
    # For engine-side waits Hoiio can only report against the last block's step (or none).
    step = s.state.step if waiting not in ("http", "side") else s.state.step - 1
    out = feed(flow, s.state, ended(s.state, step=step if step > 0 else None))
    assert out.outcome == "ended"
    assert out.state.status == "ended" and out.state.outcome == "caller hung up"
    assert out.trace == (("n", "hang-up"),) and out.state.path[-1] == ("n", "hang-up")
    assert out.state.billing == {"date": "2026-03-04 10:01:00", "duration": "1", "currency": "SGD",
                                 "rate": "0.02", "debit": "0.02"}
    assert out.actions == ()
    late = feed(flow, out.state, http_result(s.state, 200))
    assert late.outcome == "ignored: call already ended"


def test_hang_up_during_record_keeps_the_partial_recording():
    flow = make_flow(record("vm", var="voicemail"))
    s = begin(flow)
    out = feed(flow, s.state, ended(s.state, record_url="https://rec.example.com/partial.mp3"))
    assert out.state.vars["voicemail"] == "https://rec.example.com/partial.mp3"
    assert out.state.outcome == "caller hung up"


def test_ended_notification_from_the_future_is_stale():
    flow = two_plays()
    s = begin(flow)
    assert feed(flow, s.state, ended(s.state, step=9)).outcome == "ignored: stale"


def test_hangup_block_notification_ends_the_call():
    flow = make_flow(play("a", next="bye"))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state))
    assert s.state.waiting == "hangup"
    out = feed(flow, s.state, ended(s.state))
    assert out.state.outcome == "hung up by flow" and out.trace == ()


def test_notification_updates_call_facts():
    flow = two_plays()
    s = begin(flow, call={"from": "+6591234567"})
    out = feed(flow, s.state, notify(s.state, called="+6531234567", txn_ref="AA-C-7"))
    assert out.state.call == {"from": "+6591234567", "to": "+6531234567", "txn_ref": "AA-C-7"}


@pytest.mark.parametrize("status", ["error_session_ended", "error_invalid_session", "error_session_access_denied"])
def test_provider_says_session_is_over(status):
    flow = two_plays()
    s = begin(flow)
    out = feed(flow, s.state, rejected(s.state, status))
    assert out.state.status == "ended" and out.state.outcome == "provider ended session"
    assert out.actions == ()


def test_session_over_for_an_earlier_step_still_ends_the_call():
    flow = make_flow(hold("h", next="api"), http("api", next="off", failed="off"), unhold("off"))
    s = begin(flow)
    out = feed(flow, s.state, rejected(s.state, "error_session_ended", step=1))  # the hold block
    assert out.state.outcome == "provider ended session"


@pytest.mark.parametrize("status", ["error_msg_invalid_xml", "error_timeout", "error_session_not_ready"])
def test_other_rejections_go_to_the_error_handler(status):
    flow = make_flow(play("a", next="bye"), play("sorry"), on_error="sorry")
    s = begin(flow)
    out = feed(flow, s.state, rejected(s.state, status))
    assert out.outcome == "error handled"
    assert out.trace == (("a", "error"),)
    assert out.actions[0].node == "sorry" and out.state.errors == 1


def test_rejected_transfer_without_failed_exit_goes_to_the_error_handler():
    flow = make_flow(transfer("t"), play("sorry"), on_error="sorry")
    s = begin(flow)
    out = feed(flow, s.state, rejected(s.state, "error_dest_invalid"))
    assert out.trace == (("t", "error"),)


def test_state_pointing_at_a_node_that_no_longer_exists():
    flow = two_plays()
    s = begin(flow)
    other = make_flow(play("x"), on_error="x")
    out = feed(other, s.state, notify(s.state))
    assert out.trace == (("a", "error"),) and out.actions[0].node == "x"


def test_rejected_hold_is_noted_and_the_flow_carries_on():
    flow = make_flow(hold("h", next="api"), http("api", next="off", failed="off"), unhold("off"))
    s = begin(flow)
    noted = feed(flow, s.state, rejected(s.state, "error_msg_download_failed", step=1))
    assert noted.outcome == "noted: hold rejected"
    assert noted.state is s.state and noted.actions == ()
    s = feed(flow, s.state, http_result(s.state, 200))
    s = feed(flow, s.state, rejected(s.state, "error_session_not_on_hold"))
    assert s.trace == (("off", "next"),) and s.actions[0].node == "bye"
