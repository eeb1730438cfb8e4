"""The error handler: on_error, the default apology, escalation, endless loops, render failures."""

from __future__ import annotations

from engine.core.flow import Play, Voice
from engine.core.interpreter import DEFAULT_APOLOGY, MAX_ENGINE_TRANSITIONS
from tests.unit.core.builders import (
    audio,
    begin,
    ended,
    feed,
    golden,
    goto,
    hold,
    http,
    http_result,
    make_flow,
    notify,
    play,
    rejected,
    say,
    set_,
    unhold,
)

APOLOGY = [("hangup", (("msg", DEFAULT_APOLOGY),))]


def broken_play(id="broken", next="bye"):
    return play(id, "Balance: {{ balance }}", next=next)  # ``balance`` is never set


def test_render_error_goes_to_on_error():
    flow = make_flow(broken_play(), play("sorry", "Sorry."), on_error="sorry")
    s = begin(flow)
    assert s.outcome == "error handled"
    assert s.trace == (("broken", "error"),)
    assert s.actions[0].node == "sorry" and s.state.errors == 1
    assert any("balance" in line for line in s.log)


def test_without_on_error_the_default_apology_hangs_up():
    flow = make_flow(broken_play())
    s = begin(flow)
    assert golden(s) == APOLOGY
    assert s.actions[0].node == "broken" and s.state.waiting == "hangup"
    out = feed(flow, s.state, ended(s.state))
    assert out.state.status == "ended" and out.state.outcome == "hung up after error"


def test_default_apology_uses_the_flow_voice():
    flow = make_flow(broken_play(), voice=Voice("en-GB", "male"))
    msg = begin(flow).actions[0].param("msg")
    assert msg == f'<speech language="en-GB" gender="male">{DEFAULT_APOLOGY}</speech>'


def test_a_failure_while_handling_an_error_gets_the_apology():
    flow = make_flow(broken_play(), broken_play("sorry"), on_error="sorry")
    s = begin(flow)
    assert s.trace == (("broken", "error"), ("sorry", "error"))
    assert golden(s) == APOLOGY and s.state.errors == 2


def test_on_error_runs_once_per_call():
    flow = make_flow(
        play("a", next="b"),
        http("b", url="https://x.example.com/{{ missing }}"),
        play("sorry", next="b"),
        on_error="sorry",
    )
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state))
    assert s.actions[0].node == "sorry"
    s = feed(flow, s.state, notify(s.state))
    assert s.trace == (("sorry", "next"), ("b", "error"))
    assert golden(s) == APOLOGY


def test_escalation_forced_hangup_then_give_up():
    flow = make_flow(broken_play())
    s = begin(flow)
    assert golden(s) == APOLOGY and s.state.errors == 1
    s = feed(flow, s.state, rejected(s.state, "error_msg_cannot_convert_text"))
    assert golden(s) == APOLOGY and s.state.errors == 2
    s = feed(flow, s.state, rejected(s.state, "error_msg_cannot_convert_text"))
    assert golden(s) == [("hangup", (("force", "enabled"),))]
    s = feed(flow, s.state, rejected(s.state, "error_timeout"))
    assert s.actions == () and s.state.status == "ended"
    assert s.state.outcome == "gave up after repeated errors"


def test_endless_engine_loop_goes_to_the_error_handler():
    flow = make_flow(set_("count", next="again", n="x"), goto("again", "count"), play("sorry"), on_error="sorry")
    s = begin(flow)
    assert s.outcome == "error handled"
    # The 101st engine transition is one too many: it is taken, then the error is recorded.
    assert len(s.trace) == MAX_ENGINE_TRANSITIONS + 2
    assert s.trace[-2] == ("count", "next") and s.trace[-1] == ("count", "error")
    assert any("endless loop" in line for line in s.log)
    assert s.actions[0].node == "sorry"


def test_endless_loop_in_the_error_handler_ends_with_the_apology():
    flow = make_flow(broken_play(), goto("sorry", "loop"), goto("loop", "sorry"), on_error="sorry")
    s = begin(flow)
    assert golden(s) == APOLOGY and s.state.errors == 2


def test_a_block_breaks_a_loop():
    flow = make_flow(play("m", next="g"), goto("g", "m"))
    s = begin(flow)
    for _ in range(150):
        s = feed(flow, s.state, notify(s.state))
    assert s.outcome == "advanced" and s.actions[0].node == "m" and s.state.step == 151


def test_bad_audio_url_and_overlong_message_are_errors():
    bad_audio = Play(id="p", prompt=(audio("ftp://example.com/a.mp3"),), next="bye")
    assert begin(make_flow(bad_audio)).trace == (("p", "error"),)
    long = make_flow(play("p", "{{ text }}"), vars={"text": "x" * 1001})
    assert begin(long).trace == (("p", "error"),)
    fits = make_flow(play("p", "{{ text }}"), vars={"text": "x" * 1000})
    assert begin(fits).trace == ()


def test_flow_vars_failing_to_render_at_start():
    flow = make_flow(play("hi"), play("sorry"), vars={"x": "{{ nope }}"}, on_error="sorry")
    s = begin(flow)
    assert s.trace == (("hi", "error"),) and s.actions[0].node == "sorry"


def test_error_while_on_hold_unholds_before_the_error_handler():
    flow = make_flow(
        hold("wait", next="api", music=say("Hold on.")),
        http("api", url="https://api.example.com/{{ missing }}"),
        unhold("off"),
        play("sorry"),
        on_error="sorry",
    )
    s = begin(flow)
    assert golden(s) == [("hold", (("msg", "Hold on."),)), ("unhold", ())]
    assert s.trace == (("wait", "next"), ("api", "error"))
    s = feed(flow, s.state, notify(s.state))
    assert s.actions[0].node == "sorry" and golden(s)[0][0] == "play"


def test_error_while_on_hold_without_on_error_unholds_then_apologises():
    flow = make_flow(hold("wait", next="api"), http("api", next="oops", failed="oops"), play("oops"))
    s = begin(flow)
    s = feed(flow, s.state, http_result(s.state, 500))
    assert s.trace == (("api", "failed"), ("oops", "error"))
    assert golden(s) == [("unhold", ())]
    s = feed(flow, s.state, notify(s.state))
    assert golden(s) == APOLOGY


def test_error_handler_trace_is_recorded_in_path():
    flow = make_flow(broken_play(), play("sorry"), on_error="sorry")
    s = begin(flow)
    assert s.state.path == (("broken", "error"),)


def test_rejected_flow_hangup_gets_the_apology_and_is_reported_as_after_error():
    flow = make_flow(play("a", next="bye"))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state))
    s = feed(flow, s.state, rejected(s.state, "error_msg_invalid_xml"))
    assert s.trace == (("bye", "error"),) and golden(s) == APOLOGY
    s = feed(flow, s.state, ended(s.state))
    assert s.state.outcome == "hung up after error"


def test_on_error_path_that_hangs_up_is_hung_up_by_flow():
    flow = make_flow(broken_play(), play("sorry", next="bye"), on_error="sorry")
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state))
    s = feed(flow, s.state, ended(s.state))
    assert s.state.outcome == "hung up by flow" and s.state.errors == 1
