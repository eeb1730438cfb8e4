"""A flow's ``voipnow_invite`` node through the real app over real HTTP: the engine served on
127.0.0.1, the fake Hoiio placing the call, the fake VoipNow receiving the invite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.fakes import CallerScript
from tests.integration.api.conftest import VOIPNOW_TOKEN, World

FLOWS = Path(__file__).parent / "voipnow_flows"
ONCALL = "+6531580090"
ONCALL_NO_FAILED = "+6531580091"
TEAM = "+6531580092"


@pytest.fixture
def world(database_url) -> Iterator[World]:
    w = World(database_url, FLOWS)
    yield w
    w.close()


@pytest.fixture
def unconfigured(tmp_path) -> Iterator[World]:
    """VoipNow is not configured (no VOIPNOW_URL); the fake runs, but nothing points at it."""
    w = World(f"sqlite:///{tmp_path / 'ivr.sqlite3'}", FLOWS, voipnow=False)
    yield w
    w.close()


def call(world: World, to: str, keys: tuple[str | None, ...] = ("9",)) -> str:
    session = world.hoiio.incoming_call(f"{world.url}/hoiio/answer", to=to, script=CallerScript(keys=keys))
    world.hoiio.wait_until_ended(session)
    world.settle()
    return session


def path_of(world: World, session: str) -> list[tuple[str, str]]:
    row = world.db.get_call(session)
    assert row is not None
    return [tuple(step) for step in row.state["path"]]


def test_key_9_invites_the_engineer_and_the_flow_goes_on(world):
    session = call(world, ONCALL)
    # the fake received exactly the documented request
    [request] = world.voipnow.log
    assert (request.method, request.path, request.http_status) == ("POST", "/uapi/phoneCalls/@me/conferenceInvite",
                                                                    202)  # fmt: skip
    assert request.query == {"number": "3", "pin": "2233", "waitForPickup": "30"}
    assert request.body == {"extension": "211", "phoneCallView": [
        {"source": ["211"], "destination": ["+6561000009"], "callerId": "Acme Support <+6531580000>"}]}
    [invite] = world.voipnow.invites.values()
    assert (invite.destination, invite.conference_number, invite.pin, invite.wait_for_pickup) == (
        ("+6561000009",), "3", "2233", 30)  # fmt: skip
    # the flow went on at next: the caller is transferred to the conference
    snapshot = world.hoiio.sessions[session]
    assert snapshot.block_names == ("gather", "transfer")
    assert snapshot.blocks[1].params["dest"] == "+6531580099"
    assert ("invite_engineer", "next") in path_of(world, session)
    row = world.db.get_call(session)
    assert (row.node, row.outcome) == ("join", "transferred")
    # stored as a side call of this call, like the API's own invites
    [side] = world.db.side_calls(session=session)
    assert (side.kind, side.status, side.txn_ref) == ("voipnow/invite", "sent", invite.id)
    assert side.request == {"number": "+6561000009", "conference_number": "3", "pin": "2233", "wait_for_pickup": 30,
                            "caller_id": "Acme Support <+6531580000>", "origin": "flow", "node": "invite_engineer",
                            "extension": "211"}  # fmt: skip
    assert side.response["status"] == "success" and side.response["data"]["ids"] == [invite.id]
    assert "side_call" in [entry.kind for entry in world.db.timeline(session)]
    # ... so the API can follow it and hang it up
    status = world.get(f"/api/conferences/voipnow/invites/{invite.id}").json()
    assert (status["state"], status["number"]) == ("on_call", "+6561000009")
    assert world.api("DELETE", f"/api/conferences/voipnow/invites/{invite.id}").json()["hung_up"] is True


def test_a_voipnow_refusal_takes_the_failed_exit(world):
    world.voipnow.inject(400, "pc_destination_invalid")
    session = call(world, ONCALL)
    assert world.voipnow.invites == {}
    assert world.hoiio.sessions[session].block_names == ("gather", "hangup")
    assert world.hoiio.sessions[session].blocks[1].params["msg"] == "Sorry, the engineer could not be reached."
    assert ("invite_engineer", "failed") in path_of(world, session)
    [side] = world.db.side_calls(session=session)
    assert (side.kind, side.status, side.response["status"]) == ("voipnow/invite", "failed", "pc_destination_invalid")


def test_without_voipnow_configured_the_flow_takes_its_failed_exit(unconfigured):
    w = unconfigured
    assert w.app.extensions["ivr"].voipnow is None
    session = call(w, ONCALL)
    assert w.voipnow.log == []  # nothing was sent anywhere
    assert w.hoiio.sessions[session].block_names == ("gather", "hangup")
    assert w.hoiio.sessions[session].blocks[1].params["msg"] == "Sorry, the engineer could not be reached."
    assert ("invite_engineer", "failed") in path_of(w, session)
    [side] = w.db.side_calls(session=session)
    assert (side.kind, side.status, side.response["status"]) == ("voipnow/invite", "failed",
                                                                  "error_voipnow_not_configured")  # fmt: skip
    # the API says the same thing about its own invites
    assert w.post("/api/conferences/voipnow/invites", {"number": "+6591234567"}).json()["code"] == (
        "voipnow_not_configured")  # fmt: skip


def test_without_voipnow_and_without_a_failed_exit_the_error_handler_takes_over(unconfigured):
    w = unconfigured
    session = call(w, ONCALL_NO_FAILED)
    assert w.hoiio.sessions[session].block_names == ("gather", "hangup")
    assert w.hoiio.sessions[session].blocks[1].params["msg"] == "Sorry, something went wrong."
    assert path_of(w, session) == [("main", "key 9"), ("invite_engineer", "error")]
    row = w.db.get_call(session)
    assert row.state["errors"] == 1 and row.outcome == "hung up by flow"


def test_an_extension_is_invited_without_the_optional_values(world):
    session = call(world, ONCALL_NO_FAILED)
    [request] = world.voipnow.log
    assert request.query == {}
    assert request.body == {"extension": "211", "phoneCallView": [{"source": ["211"], "destination": ["212"]}]}
    assert request.http_status == 202
    assert world.hoiio.sessions[session].block_names == ("gather", "transfer")


def test_the_voipnow_client_is_shared_and_authenticated(world):
    service = world.app.extensions["ivr"]
    assert service.voipnow is world.outbound.voipnow
    assert service.voipnow.extension == "211" and VOIPNOW_TOKEN not in repr(service.voipnow)


def test_a_flows_conference_call_is_linked_to_the_call(world):
    world.script("+6561000001", dial="answered")
    session = call(world, TEAM, keys=())
    [side] = [s for s in world.db.side_calls() if s.kind == "conference/call"]
    assert side.request["session"] == session and side.request["origin"] == "flow"
    assert side.session == f"room:team.{session}"  # the room's rows stay together
