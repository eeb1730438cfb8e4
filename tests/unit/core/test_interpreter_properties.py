"""Random event sequences: the interpreter never raises, and never acts for a call that has ended."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.actions import Block
from engine.core.events import HttpResult, MonitorReady, Notification, ProviderRejected, SideCallResult
from engine.core.state import ACTIVE, ENDED, CallState
from tests.unit.core.builders import (
    BILLING,
    begin,
    branch,
    collect,
    conference,
    dial,
    feed,
    goto,
    hangup,
    hold,
    hours,
    http,
    make_flow,
    menu,
    monitor,
    play,
    record,
    retry,
    say,
    set_,
    transfer,
    unhold,
)

EXTRA_EXITS = {"retry no input", "retry invalid", "hang-up", "error"}


def _nodes():
    return (
        hours("h", {d: [("08:00", "20:00")] for d in range(6)}, holidays=("2026-12-25",), open="mon",
              closed="closed", holiday="closed"),
        monitor("mon", next="m"),
        play("closed", "We are closed.", next="bye"),
        menu("m", {"1": "acct", "2": "vm", "3": "hold1", "9": "broken", "0": "agent", "*": "m"},
             no_input=retry("bye", tries=2, text="Hello?"), invalid=retry("agent", tries=2)),
        collect("acct", var="pin", next="lookup", min_length=4, max_length=4, sensitive=True,
                no_input=retry("m", tries=2), invalid=retry("m", tries=2)),
        http("lookup", url="https://api.example.com/{{ pin }}", save={"vip": "customer.vip"}, next="check",
             failed="sorry"),
        branch("check", [("vip", "vipx")], otherwise="hold1"),
        transfer("vipx", to="+6561234567", failed="m"),
        record("vm", var="voicemail", next="thanks"),
        play("thanks", "Thanks.", next="bye"),
        hold("hold1", next="conf", music=say("Please wait.")),
        conference("conf", ["+6561111111"], room="R1", next="off", failed="off"),
        unhold("off", next="again"),
        set_("again", next="loop", visits="{{ visits | default(0) }}1"),
        goto("loop", "m"),
        play("broken", "{{ nothing_here }}", next="bye"),
        transfer("agent", to="room:"),
        play("sorry", "Sorry.", next="bye"),
        hangup("bye"),
    )


INBOUND = make_flow(*_nodes(), on_error="sorry")
OUTBOUND = make_flow(
    dial("call", answered="m", busy="report", unanswered="report"),
    http("report", url="https://crm.example.com/missed", next="bye", failed="bye"),
    *_nodes(),
    start="call",
    on_error="sorry",
)

DIGITS = st.sampled_from([None, "", "1", "2", "3", "9", "0", "*", "1234", "12345", "#"])
STATUSES = st.sampled_from(
    ["error_session_ended", "error_invalid_session", "error_msg_invalid_xml", "error_timeout",
     "error_session_not_on_hold", "error_dest_invalid", "error_session_not_ready"]
)
JSON = st.sampled_from([None, {}, {"customer": {"vip": True}}, {"customer": {"vip": False}}, [1, 2], "text"])


@st.composite
def event_for(draw, state: CallState):
    def step_number(allow_none: bool):
        choices = [state.step] * 6 + [state.step - 1, state.step + 1, 0]
        return draw(st.sampled_from([*choices, None] if allow_none else choices))

    # Mostly what the call is waiting for (so calls get deep into the flow), sometimes anything at all.
    expected = {"http": "http", "side": "side"}.get(state.waiting or "", "notification")
    kind = draw(st.sampled_from([expected] * 6 + ["notification", "http", "side", "rejected", "monitor"]))
    if kind == "notification":
        call_state = draw(st.sampled_from(["ongoing"] * 6 + ["ended", "ringing"]))
        return Notification(
            session=state.session,
            block=draw(st.sampled_from(["", "play", "gather", "dial", "transfer"])),
            call_state=call_state,
            step=step_number(allow_none=True),
            digits=draw(DIGITS),
            record_url=draw(st.sampled_from([None, "https://rec.example.com/r.mp3"])),
            transfer_status=draw(st.sampled_from([None, "answered", "busy", "unanswered"])),
            dial_status=draw(st.sampled_from([None, "answered", "busy", "unanswered", "failed", "odd"])),
            billing=BILLING if call_state == "ended" else None,
        )
    if kind == "http":
        return HttpResult(step=step_number(False), status=draw(st.sampled_from([200, 204, 404, 500, None])),
                          json=draw(JSON))
    if kind == "side":
        return SideCallResult(step=step_number(False), ok=draw(st.booleans()), status="x")
    if kind == "rejected":
        return ProviderRejected(step=step_number(False), status=draw(STATUSES))
    return MonitorReady(session=state.session, record_url="https://rec.example.com/m.mp3")


def check_step(flow, before: CallState, result, event) -> None:
    after = result.state
    if before.status == ENDED:
        assert result.actions == ()
        if not isinstance(event, MonitorReady):
            assert after is before
    if after.status == ENDED:
        assert result.actions == ()
        assert after.waiting is None
    else:
        assert after.status == ACTIVE and after.waiting is not None
    steps = [a.step for a in result.actions]
    assert steps == list(range(before.step + 1, before.step + 1 + len(steps)))
    assert after.step == (steps[-1] if steps else before.step)
    for action in result.actions[:-1]:
        assert isinstance(action, Block) and action.kind == "hold"  # only hold lets a run go on
    for node_id, exit_name in result.trace:
        assert exit_name in flow.nodes[node_id].exits() or exit_name in EXTRA_EXITS
    assert after.path[len(after.path) - len(result.trace):] == result.trace
    assert CallState.from_dict(json.loads(json.dumps(after.to_dict()))) == after
    if "pin" in after.sensitive:
        whole_pin = re.compile(rf"(?<![0-9A-Za-z]){re.escape(after.vars['pin'])}(?![0-9A-Za-z])")
        assert not any(whole_pin.search(line) for line in result.log)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), outbound=st.booleans(), hour=st.integers(0, 23))
def test_random_event_sequences(data, outbound, hour):
    flow = OUTBOUND if outbound else INBOUND
    now = datetime(2026, 3, 4, hour, 0, tzinfo=UTC)
    result = begin(flow, call={"from": "+6591234567", "to": "+6531234567", "dest": "+6598765432"}, now=now)
    state = result.state
    for _ in range(data.draw(st.integers(1, 25))):
        event = data.draw(event_for(state))
        result = feed(flow, state, event, now=now)
        check_step(flow, state, result, event)
        state = result.state
