"""The ``voipnow_invite`` node in the interpreter: one SideCall to VoipNow's conferenceInvite, then
``next`` on success, ``failed`` (or the error handler) on failure, exactly like ``conference``."""

from __future__ import annotations

from typing import Any

import pytest

from engine.core import flow as f
from engine.core.actions import Block, SideCall
from engine.core.events import SideCallResult
from engine.core.interpreter import NODE_RESULT, WAITS_FOR
from tests.unit.core.builders import begin, feed, make_flow, menu, notify, play, side_result, t, transfer


def invite(id: str = "inv", number: str = "+6561000009", next: str = "join", **kw: Any) -> f.VoipNowInvite:
    for name in ("conference_number", "pin"):
        kw[name] = t(kw[name]) if kw.get(name) is not None else None
    kw.setdefault("wait_for_pickup", None)
    kw.setdefault("caller_id", None)
    kw.setdefault("failed", None)
    return f.VoipNowInvite(id=id, number=t(number), next=next, **kw)


def test_the_node_is_an_engine_node_waiting_for_a_side_call():
    assert f.NODE_KINDS["voipnow_invite"] is f.VoipNowInvite and not f.VoipNowInvite.is_block
    assert WAITS_FOR["voipnow_invite"] == "side" and "voipnow_invite" in NODE_RESULT


def test_the_side_call_carries_every_option_rendered():
    node = invite(number="{{ engineer }}", conference_number="{{ room }}", pin="{{ pin }}", wait_for_pickup=30,
                  caller_id="Acme Support <+6531580000>", tag="ignored")  # fmt: skip
    flow = make_flow(node, play("join"), vars={"engineer": " +6561000009 ", "room": "3", "pin": "2233"})
    s = begin(flow)
    assert s.actions == (
        SideCall(
            step=1,
            node="inv",
            api="voipnow/conferenceInvite",
            params=(
                ("destination", "+6561000009"),
                ("conference_number", "3"),
                ("pin", "2233"),
                ("wait_for_pickup", "30"),
                ("caller_id", "Acme Support <+6531580000>"),
            ),
        ),
    )
    assert (s.state.waiting, s.state.node, s.state.step) == ("side", "inv", 1)
    assert s.log[-1] == "inv: voipnow/conferenceInvite '+6561000009' into conference '3' (step 1)"
    assert not any("2233" in line for line in s.log)  # the PIN is never logged


def test_optional_values_left_out_or_empty_are_not_sent():
    flow = make_flow(invite(number="0003*211", conference_number="{{ room | default('') }}"), play("join"))
    s = begin(flow)
    assert s.actions == (SideCall(step=1, node="inv", api="voipnow/conferenceInvite",
                                  params=(("destination", "0003*211"),)),)  # fmt: skip


def test_success_continues_at_next():
    flow = make_flow(invite(failed="sorry"), transfer("join", to="+6561234567"), play("sorry"))
    s = begin(flow)
    done = feed(flow, s.state, SideCallResult(step=s.state.step, ok=True, status="success",
                                              data={"ids": ["99735c54ff45a3a988f2"]}))  # fmt: skip
    assert done.trace == (("inv", "next"),)
    assert [(a.kind, a.node) for a in done.actions if isinstance(a, Block)] == [("transfer", "join")]
    assert "inv: VoipNow is calling (99735c54ff45a3a988f2)" in done.log
    assert done.state.waiting == "transfer" and done.state.step == 2


@pytest.mark.parametrize("status", ["pc_destination_invalid", "error_voipnow_not_configured", "error_timeout"])
def test_failure_takes_the_failed_exit(status):
    flow = make_flow(invite(failed="sorry"), play("join"), play("sorry", "Nobody could be reached."))
    s = begin(flow)
    done = feed(flow, s.state, side_result(s.state, ok=False, status=status))
    assert done.trace == (("inv", "failed"),)
    assert [(a.kind, a.node) for a in done.actions] == [("play", "sorry")]
    assert f"inv: voipnow/conferenceInvite failed ({status})" in done.log
    assert done.outcome == "advanced" and done.state.errors == 0


def test_failure_without_a_failed_exit_goes_to_the_error_handler():
    flow = make_flow(invite(), play("join"), play("oops", "Sorry."), on_error="oops")
    s = begin(flow)
    done = feed(flow, s.state, side_result(s.state, ok=False, status="error_voipnow_not_configured"))
    assert done.trace == (("inv", "error"),)
    assert [(a.kind, a.node) for a in done.actions] == [("play", "oops")]
    assert done.outcome == "error handled" and done.state.errors == 1
    assert any("voipnow/conferenceInvite failed (error_voipnow_not_configured) and the node has no failed exit"
               in line for line in done.log)  # fmt: skip


def test_failure_without_failed_exit_or_on_error_hangs_up_with_an_apology():
    flow = make_flow(invite(), play("join"))
    s = begin(flow)
    done = feed(flow, s.state, side_result(s.state, ok=False, status="access_denied"))
    assert [(a.kind, a.node) for a in done.actions] == [("hangup", "inv")]


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"number": "{{ who }}"}, "cannot invite '65610000091' into a VoipNow conference"),
        ({"number": "+6561"}, "cannot invite '+6561' into a VoipNow conference"),
        ({"conference_number": "room3"}, "'room3' is not a VoipNow conference number (1 to 10 digits)"),
        ({"pin": "{{ code }}"}, "the conference PIN must be 1 to 16 digits"),
        ({"number": "{{ nobody }}"}, "nobody"),
    ],
)
def test_values_voipnow_would_refuse_are_runtime_errors(options, why):
    flow = make_flow(invite(failed="sorry", **options), play("join"), play("sorry"), play("oops"), on_error="oops",
                     vars={"who": "65610000091", "code": "12ab"})  # fmt: skip
    s = begin(flow)
    assert s.trace == (("inv", "error"),)
    assert [(a.kind, a.node) for a in s.actions] == [("play", "oops")]  # not the failed exit: the flow is wrong
    assert any(why in line for line in s.log), s.log
    assert "12ab" not in " ".join(s.log)


def test_a_menu_key_leads_to_the_invite_and_a_stale_or_unexpected_answer_changes_nothing():
    flow = make_flow(menu("main", {"9": "inv"}), invite(), play("join"))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="9"))
    assert s.trace == (("main", "key 9"),)
    assert isinstance(s.actions[0], SideCall) and s.actions[0].step == 2
    stale = feed(flow, s.state, SideCallResult(step=1, ok=True, status="success"))
    assert stale.outcome == "ignored: stale" and stale.state == s.state
    unexpected = feed(flow, s.state, notify(s.state, block="play"))
    assert unexpected.outcome == "ignored: unexpected event" and unexpected.state == s.state
