"""A flow's conference node: its conference/call is stored as a side call, its participants' end
notifications are received, and the room shows in the API like one started through it."""

from __future__ import annotations

from engine.fakes import CallerScript


def test_a_flows_conference_call_is_stored_and_its_legs_reported(world):
    world.script("+6561000002", dial="busy")
    session = world.hoiio.incoming_call(f"{world.url}/hoiio/answer", to="+6531580020",
                                        script=CallerScript())  # fmt: skip
    world.hoiio.wait_until_ended(session)
    world.settle()
    room = f"team.{session}"
    [request] = [r for r in world.hoiio.log if r.endpoint == "conference/call"]
    assert request.params["dest"] == "+6561000001,+6561000002" and request.params["room"] == room
    assert request.params["notify_url"].startswith(f"{world.url}/hoiio/events?kind=conference&")
    [side] = [s for s in world.db.side_calls() if s.kind == "conference/call"]
    assert side.status == "sent" and side.request["origin"] == "flow" and side.session == f"room:{room}"
    assert side.response["status"] == "success_ok" and side.response["data"]["room"] == room
    shown = world.get(f"/api/conferences/{room}").json()
    assert [(p["number"], p["state"], p["result"], p["origin"]) for p in shown["participants"]] == [
        ("+6561000001", "ended", "answered", "flow"),
        ("+6561000002", "ended", "busy", "flow"),
    ]
    # the call's timeline shows the request and the people it dialled in, though they are stored under the room
    assert [(e.row.kind, e.row.request.get("number")) for e in world.db.timeline(session) if e.kind == "side_call"] == [
        ("conference/call", None),
        ("conference/participant", "+6561000001"),
        ("conference/participant", "+6561000002"),
    ]
    # the caller went on into the room: the side call did not disturb the flow
    assert world.hoiio.sessions[session].block_names == ("transfer",)
    assert world.db.get_call(session).node == "join"


def test_a_refused_flow_conference_call_is_stored_as_failed(sqlite_world):
    w = sqlite_world
    w.hoiio.inject("conference/call", status="error_insufficient_credit")
    session = w.hoiio.incoming_call(f"{w.url}/hoiio/answer", to="+6531580020")
    w.hoiio.wait_until_ended(session)
    [side] = w.db.side_calls()
    assert (side.kind, side.status, side.response["status"]) == ("conference/call", "failed",
                                                                  "error_insufficient_credit")  # fmt: skip
    assert w.hoiio.sessions[session].block_names == ("hangup",)  # the node's failed exit
