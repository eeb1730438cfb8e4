"""Session state survives storage: every state the interpreter makes round-trips through JSON."""

from __future__ import annotations

import json

from engine.core.interpreter import BUILTINS, context_for
from engine.core.state import CallState
from tests.unit.core.builders import (
    begin,
    collect,
    ended,
    feed,
    http,
    http_result,
    make_flow,
    menu,
    notify,
    play,
    retry,
)


def roundtrip(state: CallState) -> CallState:
    return CallState.from_dict(json.loads(json.dumps(state.to_dict())))


def test_states_along_a_call_round_trip_through_json():
    flow = make_flow(
        menu("m", {"1": "pin"}, invalid=retry("bye", tries=3)),
        collect("pin", var="pin", next="api", sensitive=True),
        http("api", save={"info": "data"}, next="say", failed="bye"),
        play("say", "{{ info.name }}"),
    )
    s = begin(flow)
    states = [s.state]
    for event in (
        lambda st: notify(st, digits="7"),
        lambda st: notify(st, digits="1"),
        lambda st: notify(st, digits="1234"),
        lambda st: http_result(st, 200, {"data": {"name": "Tan", "tags": [1, 2], "ok": True, "n": None}}),
        lambda st: notify(st),
        lambda st: ended(st),
    ):
        s = feed(flow, roundtrip(s.state), event(s.state))
        states.append(s.state)
    assert s.state.status == "ended"
    for state in states:
        assert roundtrip(state) == state
    assert states[-1].sensitive == frozenset({"pin"})
    assert states[-1].to_dict()["path"] == [["m", "retry invalid"], ["m", "key 1"], ["pin", "next"],
                                            ["api", "next"], ["say", "next"]]


def test_context_has_every_builtin_with_empty_defaults():
    s = begin(make_flow(play("p")), call={})
    context = context_for(s.state)
    assert {name: context[name] for name in BUILTINS} == {
        "caller": "",
        "called": "",
        "dest": "",
        "session": "S100",
        "digits": "",
        "transfer_status": "",
        "dial_status": "",
    }


def test_builtins_win_over_variables_of_the_same_name():
    s = begin(make_flow(play("p", "{{ caller }}")), vars={"caller": "someone else"})
    assert s.actions[0].param("msg") == "+6591234567"
