"""POST /api/conferences (Hoiio conference/call), GET /api/conferences/<room>, and moderation."""

from __future__ import annotations

import pytest

from engine.providers.hoiio.statuses import classify
from tests.integration.api.conftest import assert_error, nothing_sent

NUMBERS = ["+6591000001", "+6591000002", "+6591000003"]


def test_numbers_are_dialled_into_a_room_and_each_leg_is_reported(world):
    r = world.post("/api/conferences", {"numbers": NUMBERS, "room": "standup", "caller_id": "+6531580000",
                                        "tag": "daily"})  # fmt: skip
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["room"] == "standup" and r.headers["Location"] == "/api/conferences/standup"
    assert [p["number"] for p in body["participants"]] == NUMBERS
    [request] = [rec for rec in world.hoiio.log if rec.endpoint == "conference/call"]
    assert request.params["dest"] == ",".join(NUMBERS) and request.params["room"] == "standup"
    assert request.params["notify_url"].startswith(f"{world.url}/hoiio/events?kind=conference&")
    world.settle()
    room = world.get("/api/conferences/standup").json()
    assert room["active"] == 0
    assert [(p["number"], p["state"], p["result"]) for p in room["participants"]] == [
        (n, "ended", "answered") for n in NUMBERS
    ]
    for p in body["participants"]:
        [event] = world.db.call_events(p["txn_ref"])
        assert event.kind == "conference/call" and event.payload["tag"] == "daily"
        info = world.get(f"/api/calls/{p['txn_ref']}").json()
        assert info["kind"] == "conference/call" and info["room"] == "standup" and info["state"] == "ended"


def test_without_a_room_hoiio_picks_one(world):
    world.script("+6591000001", dial="unanswered")
    body = world.post("/api/conferences", {"numbers": NUMBERS[:2]}).json()
    room = body["room"]
    assert room and body["links"]["self"] == f"/api/conferences/{room}"
    world.settle()
    shown = world.get(f"/api/conferences/{room}").json()
    assert [p["result"] for p in shown["participants"]] == ["unanswered", "answered"]


def test_participants_can_be_muted_unmuted_and_kicked(world):
    for number in NUMBERS[:2]:
        world.script(number, stay_on_line=True)
    body = world.post("/api/conferences", {"numbers": NUMBERS[:2], "room": "board"}).json()
    world.settle()
    first, second = (p["txn_ref"] for p in body["participants"])
    base = "/api/conferences/board/participants"
    r = world.post(f"{base}/{first}/mute")
    assert r.status_code == 200 and r.json() == {"status": "ok", "room": "board", "txn_ref": first, "action": "mute"}
    assert world.hoiio.calls[first].muted is True
    shown = {p["txn_ref"]: p for p in world.get("/api/conferences/board").json()["participants"]}
    assert shown[first]["muted"] is True and shown[first]["state"] == "in_progress"
    assert world.post(f"{base}/{first}/unmute").status_code == 200
    assert world.hoiio.calls[first].muted is False
    assert world.post(f"{base}/{second}/kick").status_code == 200
    world.settle()
    room = world.get("/api/conferences/board").json()
    shown = {p["txn_ref"]: p for p in room["participants"]}
    assert shown[first]["muted"] is False and shown[first]["state"] == "in_progress"
    assert shown[second]["kicked"] is True and shown[second]["state"] == "ended"
    assert room["active"] == 1
    moderation = [(r.params["txn_ref"], r.params["action"]) for r in world.hoiio.log
                  if r.endpoint == "conference/moderate"]  # fmt: skip
    assert moderation == [(first, "mute"), (first, "unmute"), (second, "kick")]


INVALID = [
    ({}, "numbers"),
    ({"numbers": []}, "numbers"),
    ({"numbers": "+6591000001"}, "numbers"),
    ({"numbers": [f"+659100000{i}" for i in range(9)]}, "numbers"),
    ({"numbers": ["+6591000001", "+6591000001"]}, "numbers"),
    ({"numbers": ["+6591000001", "6591000002"]}, "numbers[1]"),
    ({"numbers": ["+6591000001", 6591000002]}, "numbers[1]"),
    ({"numbers": NUMBERS, "room": ""}, "room"),
    ({"numbers": NUMBERS, "room": "room:standup"}, "room"),
    ({"numbers": NUMBERS, "room": "stand up"}, "room"),
    ({"numbers": NUMBERS, "room": "r" * 33}, "room"),
    ({"numbers": NUMBERS, "caller_id": "+65"}, "caller_id"),
    ({"numbers": NUMBERS, "tag": "t" * 257}, "tag"),
    ({"numbers": NUMBERS, "dest": "+6591000001"}, "dest"),
]


@pytest.mark.parametrize(("payload", "field"), INVALID)
def test_every_invalid_conference_request_is_refused_before_dialling(shared_world, payload, field):
    with nothing_sent(shared_world):
        assert_error(shared_world.post("/api/conferences", payload), 422, field=field, code="invalid_field")


CONFERENCE_STATUSES = [
    "error_invalid_http_method", "error_malformed_params", "error_invalid_access_token", "error_invalid_app_id",
    "error_rate_limit_exceeded", "error_internal_server_error", "error_tag_invalid_length", "error_dest_invalid",
    "error_not_allowed_for_trial", "error_invalid_room", "error_invalid_notify_url",
    "error_unable_to_resolve_notify_url", "error_unable_to_complete_ssl_handshake_notify_url",
    "error_insufficient_credit", "error_concurrent_call_limit_reached", "error_caller_id_invalid",
]  # fmt: skip
FIELDS = {"error_dest_invalid": "numbers", "error_not_allowed_for_trial": "numbers", "error_invalid_room": "room",
          "error_caller_id_invalid": "caller_id", "error_tag_invalid_length": "tag"}  # fmt: skip


def test_every_conference_call_refusal_is_a_502(sqlite_world):
    w = sqlite_world
    for status in CONFERENCE_STATUSES:
        w.hoiio.inject("conference/call", status=status, times=None)
        r = w.post("/api/conferences", {"numbers": NUMBERS, "room": "standup"})
        w.hoiio.clear_faults()
        body = assert_error(r, 502, code="provider_error")
        assert (body["provider_status"], body["meaning"]) == (status, classify(status).meaning)
        assert body.get("field") == FIELDS.get(status), status
    # nothing was dialled, so the room has no participants
    assert_error(w.get("/api/conferences/standup"), 404, code="unknown_room")


def test_more_people_than_free_lines_is_a_502(sqlite_world):
    w = sqlite_world
    for i in range(6):
        w.script(f"+659100001{i}", stay_on_line=True)
    assert w.post("/api/conferences", {"numbers": [f"+659100001{i}" for i in range(6)]}).status_code == 201
    body = assert_error(w.post("/api/conferences", {"numbers": NUMBERS}), 502)
    assert body["provider_status"] == "error_concurrent_call_limit_reached"


def test_get_conference_errors(sqlite_world):
    assert_error(sqlite_world.get("/api/conferences/nobody"), 404, code="unknown_room")
    assert_error(sqlite_world.get("/api/conferences/bad room"), 422, field="room")
    assert_error(sqlite_world.get("/api/conferences/" + "r" * 33), 422, field="room")


def test_moderation_errors(sqlite_world):
    w = sqlite_world
    w.script(NUMBERS[0], stay_on_line=True)
    [p] = w.post("/api/conferences", {"numbers": NUMBERS[:1], "room": "board"}).json()["participants"]
    assert_error(w.post("/api/conferences/board/participants/AA-C-999/mute"), 404, code="unknown_participant")
    assert_error(w.post(f"/api/conferences/other/participants/{p['txn_ref']}/mute"), 404, code="unknown_participant")
    assert_error(w.post("/api/conferences/bad room/participants/AA-1/mute"), 422, field="room")
    assert_error(w.post("/api/conferences/board/participants/bad ref/mute"), 422, field="txn_ref")
    assert_error(w.post(f"/api/conferences/board/participants/{p['txn_ref']}/shout"), 404)
    assert [r.endpoint for r in w.hoiio.log if r.endpoint == "conference/moderate"] == []


MODERATE_STATUSES = ["error_invalid_txn_ref", "error_txn_ref_access_denied", "error_rate_limit_exceeded",
                     "error_invalid_access_token", "error_invalid_app_id", "error_internal_server_error",
                     "error_malformed_params"]  # fmt: skip


def test_every_moderation_refusal_is_a_502(sqlite_world):
    w = sqlite_world
    w.script(NUMBERS[0], stay_on_line=True)
    [p] = w.post("/api/conferences", {"numbers": NUMBERS[:1], "room": "board"}).json()["participants"]
    for status in MODERATE_STATUSES:
        w.hoiio.inject("conference/moderate", status=status, times=None)
        r = w.post(f"/api/conferences/board/participants/{p['txn_ref']}/kick")
        w.hoiio.clear_faults()
        body = assert_error(r, 502, code="provider_error")
        assert (body["provider_status"], body["meaning"]) == (status, classify(status).meaning)
    shown = w.get("/api/conferences/board").json()["participants"][0]
    assert shown["kicked"] is False and shown["state"] == "in_progress"


def test_the_moderation_rate_limit_is_a_retryable_502(tmp_path):
    from tests.integration.api.conftest import World

    w = World(f"sqlite:///{tmp_path / 'rate.sqlite3'}")
    try:
        w.hoiio.rate_limit = 2
        w.script(NUMBERS[0], stay_on_line=True)
        [p] = w.post("/api/conferences", {"numbers": NUMBERS[:1], "room": "board"}).json()["participants"]
        url = f"/api/conferences/board/participants/{p['txn_ref']}"
        assert w.post(f"{url}/mute").status_code == 200
        assert w.post(f"{url}/unmute").status_code == 200
        body = assert_error(w.post(f"{url}/mute"), 502)
        assert body["provider_status"] == "error_rate_limit_exceeded" and body["retryable"] is True
    finally:
        w.close()
