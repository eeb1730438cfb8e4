"""Transfers, outbound dials, hold/unhold, record and monitor results."""

from __future__ import annotations

import pytest

from engine.core.events import MonitorReady
from tests.unit.core.builders import (
    begin,
    dial,
    ended,
    feed,
    golden,
    hangup,
    hold,
    http,
    http_result,
    make_flow,
    monitor,
    notify,
    play,
    record,
    rejected,
    say,
    set_,
    transfer,
    unhold,
)

# --- transfer ----------------------------------------------------------------------------------------


def test_transfer_answered_ends_as_transferred_with_billing():
    flow = make_flow(transfer("agent"))
    s = begin(flow)
    s = feed(flow, s.state, ended(s.state, transfer_status="answered"))
    assert s.outcome == "ended"
    assert s.state.status == "ended" and s.state.outcome == "transferred"
    assert s.state.billing["debit"] == "0.02" and s.state.billing["currency"] == "SGD"
    assert s.actions == ()
    assert s.state.call["transfer_status"] == "answered"


def test_transfer_failed_with_hangup_ends_as_transfer_failed():
    flow = make_flow(transfer("agent"))
    s = begin(flow)
    s = feed(flow, s.state, ended(s.state, transfer_status="unanswered"))
    assert s.state.outcome == "transfer failed"


def test_transfer_failed_with_continue_takes_failed_exit_and_sets_transfer_status():
    flow = make_flow(transfer("agent", failed="sorry"), play("sorry", "Agent was {{ transfer_status }}."))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, transfer_status="busy"))
    assert s.trace == (("agent", "failed"),)
    assert s.state.call["transfer_status"] == "busy"
    assert s.actions[0].param("msg") == "Agent was busy."


def test_transfer_back_to_us_without_failed_exit_is_an_error():
    flow = make_flow(transfer("agent"), play("sorry"), on_error="sorry")
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, transfer_status="unanswered"))
    assert s.trace == (("agent", "error"),)
    assert s.actions[0].node == "sorry"


@pytest.mark.parametrize("dest", ["6561234567", "+65123", "+1234567890123456", "room:bad room", "sip:x@y", ""])
def test_transfer_to_an_invalid_destination_goes_to_error_handler(dest):
    flow = make_flow(transfer("agent", to="{{ target }}"), play("sorry"), on_error="sorry")
    s = begin(flow, vars={"target": dest})
    assert s.trace == (("agent", "error"),)
    assert golden(s)[0][0] == "play" and s.actions[0].node == "sorry"
    assert s.state.errors == 1


def test_rejected_transfer_with_failed_exit_takes_it():
    flow = make_flow(transfer("agent", failed="sorry"), play("sorry"))
    s = begin(flow)
    s = feed(flow, s.state, rejected(s.state, "error_dest_not_supported"))
    assert s.trace == (("agent", "failed"),)
    assert s.state.call["transfer_status"] == "error_dest_not_supported"


# --- dial ----------------------------------------------------------------------------------------------


def outbound(**kw):
    return make_flow(
        dial("call", answered="greet", **kw),
        play("greet", "Hello {{ name }}, this is a reminder."),
        http("report", url="https://crm.example.com/missed?status={{ dial_status }}", next="done", failed="done"),
        hangup("done"),
        start="call",
    )


def dialled(flow, **kw):
    kw.setdefault("call", {"dest": "+6598765432"})
    kw.setdefault("vars", {"name": "Tan"})
    return begin(flow, **kw)


def test_dial_answered_continues_the_flow():
    flow = outbound()
    s = dialled(flow)
    s = feed(flow, s.state, notify(s.state, dest="+6598765432", txn_ref="AA-C-9"))
    assert s.trace == (("call", "answered"),)
    assert s.actions[0].param("msg") == "Hello Tan, this is a reminder."
    assert s.state.call["dial_status"] == "answered" and s.state.call["txn_ref"] == "AA-C-9"


@pytest.mark.parametrize("status", ["unanswered", "busy", "failed"])
def test_dial_not_answered_runs_engine_nodes_only(status):
    flow = outbound(**{status: "report"})
    s = dialled(flow)
    s = feed(flow, s.state, ended(s.state, dial_status=status))
    assert s.trace == ((("call", status)),)
    call = s.actions[0]
    assert call.url == f"https://crm.example.com/missed?status={status}"
    assert s.state.status == "active" and s.state.outcome == f"dial {status}"
    done = feed(flow, s.state, http_result(s.state, 200))
    assert done.trace == (("report", "next"),)
    assert done.actions == ()  # the hangup node is a block: the call is already over
    assert done.state.status == "ended" and done.state.outcome == f"dial {status}"
    assert done.outcome == "ended"


def test_dial_not_answered_without_exit_just_ends():
    flow = outbound(busy="report")
    s = dialled(flow)
    s = feed(flow, s.state, ended(s.state, dial_status="unanswered"))
    assert s.actions == () and s.trace == ()
    assert s.state.status == "ended" and s.state.outcome == "dial unanswered"


def test_dial_exit_reaching_a_block_node_stops_at_once():
    flow = outbound(failed="greet")
    s = dialled(flow)
    s = feed(flow, s.state, ended(s.state, dial_status="failed"))
    assert s.actions == () and s.state.status == "ended"
    assert s.trace == (("call", "failed"),)


def test_notifications_after_unanswered_dial_are_ignored_while_reporting():
    flow = outbound(unanswered="report")
    s = dialled(flow)
    s = feed(flow, s.state, ended(s.state, dial_status="unanswered"))
    again = feed(flow, s.state, ended(s.state, dial_status="unanswered"))
    assert again.outcome == "ignored: call already ended" and again.state is s.state


def test_dial_answered_then_gone_is_a_hang_up():
    flow = outbound()
    s = dialled(flow)
    s = feed(flow, s.state, ended(s.state, dial_status="answered"))
    assert s.trace == (("call", "hang-up"),) and s.state.outcome == "caller hung up"


def test_dial_with_invalid_destination_is_not_sent():
    flow = outbound()
    s = dialled(flow, call={"dest": "98765432"})
    assert s.actions == () and s.state.status == "ended"
    assert s.state.outcome.startswith("not dialled")


def test_dial_prompt_failure_is_not_sent():
    flow = outbound()
    flow = make_flow(dial("call", prompt=say("Hi {{ missing }}")), play("greet"))
    s = dialled(flow)
    assert s.actions == () and s.state.status == "ended" and s.trace == (("call", "error"),)


def test_dial_rejected_ends_without_blocks():
    flow = outbound()
    s = dialled(flow)
    s = feed(flow, s.state, rejected(s.state, "error_insufficient_credit"))
    assert s.actions == () and s.state.outcome == "dial rejected: error_insufficient_credit"


def test_dial_node_in_the_middle_of_a_flow_is_an_error():
    flow = make_flow(play("hi", next="call"), dial("call", answered="bye"))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state))
    assert s.trace == (("hi", "next"), ("call", "error"))


# --- hold -----------------------------------------------------------------------------------------------


def test_hold_runs_engine_nodes_then_unhold():
    flow = make_flow(
        hold("wait", next="lookup", music=say("Please hold.")),
        http("lookup", next="off", failed="off"),
        unhold("off", next="bye"),
    )
    s = begin(flow)
    assert [a.step for a in s.actions] == [1, 2]
    assert golden(s) == [("hold", (("msg", "Please hold."),))]
    assert s.state.on_hold and s.state.waiting == "http"
    s = feed(flow, s.state, http_result(s.state, 200))
    assert golden(s) == [("unhold", ())]
    assert not s.state.on_hold
    s = feed(flow, s.state, notify(s.state))
    assert golden(s) == [("hangup", (("msg", "Goodbye."),))]


def test_block_other_than_unhold_while_on_hold_is_an_error_and_unholds_first():
    flow = make_flow(hold("wait", next="talk"), play("talk"), play("sorry"), on_error="sorry")
    s = begin(flow)
    assert golden(s) == [("hold", ()), ("unhold", ())]
    assert s.trace == (("wait", "next"), ("talk", "error"))
    assert not s.state.on_hold and s.state.errors == 1
    s = feed(flow, s.state, notify(s.state))
    assert s.actions[0].node == "sorry"


def test_forced_hangup_is_allowed_while_on_hold():
    flow = make_flow(hold("wait", next="bye"), hangup("bye", force=True))
    s = begin(flow)
    assert golden(s) == [("hold", ()), ("hangup", (("force", "enabled"),))]


def test_unhold_rejected_as_not_on_hold_counts_as_done():
    flow = make_flow(hold("wait", next="off"), unhold("off", next="bye"))
    s = begin(flow)
    s = feed(flow, s.state, rejected(s.state, "error_session_not_on_hold"))
    assert s.trace == (("off", "next"),) and golden(s)[0][0] == "hangup"


# --- record and monitor ---------------------------------------------------------------------------------


def test_record_saves_url_into_var():
    flow = make_flow(record("vm", var="voicemail", next="thanks"), play("thanks", "Saved {{ voicemail }}"))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, record_url="https://rec.example.com/1.mp3"))
    assert s.state.vars["voicemail"] == "https://rec.example.com/1.mp3"
    assert s.trace == (("vm", "next"),)


def test_monitor_continues_and_recording_arrives_later_even_after_the_end():
    flow = make_flow(monitor("rec", var="call_recording", next="talk"), play("talk"))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state))
    assert s.trace == (("rec", "next"),) and s.actions[0].node == "talk"
    s = feed(flow, s.state, ended(s.state))
    assert s.state.status == "ended"
    ready = feed(flow, s.state, MonitorReady(session=s.state.session, record_url="https://rec.example.com/m.mp3"))
    assert ready.outcome == "monitor recording saved" and ready.actions == ()
    assert ready.state.vars["call_recording"] == "https://rec.example.com/m.mp3"
    assert ready.state.step == s.state.step and ready.state.status == "ended"


def test_monitor_ready_while_monitor_block_is_in_progress():
    flow = make_flow(monitor("rec", var="m", next="bye"))
    s = begin(flow)
    ready = feed(flow, s.state, MonitorReady(session=s.state.session, record_url="u"))
    assert ready.state.vars["m"] == "u" and ready.state.waiting == "monitor"


def test_set_after_hold_then_unhold_keeps_values():
    flow = make_flow(hold("wait", next="s"), set_("s", next="off", x="1"), unhold("off"))
    s = begin(flow)
    assert s.state.vars["x"] == "1" and golden(s) == [("hold", ()), ("unhold", ())]
