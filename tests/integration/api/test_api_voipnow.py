"""POST/GET/DELETE /api/conferences/voipnow/invites: VoipNow conference invites, against the fake."""

from __future__ import annotations

import pytest

from engine.providers.voipnow.wire import classify
from tests.integration.api.conftest import World, assert_error, nothing_sent

INVITE = {"number": "+6591234567", "conference_number": "3", "pin": "2233", "wait_for_pickup": 30,
          "caller_id": "Acme Support <+6531580000>"}  # fmt: skip
BASE = "/api/conferences/voipnow/invites"


@pytest.fixture
def clocked(tmp_path):
    now = [1_800_000_000.0]
    w = World(f"sqlite:///{tmp_path / 'vn.sqlite3'}", voipnow_clock=lambda: now[0])
    w.now = now
    yield w
    w.close()


def test_an_invite_is_placed_queried_and_hung_up(world):
    r = world.post(BASE, INVITE)
    assert r.status_code == 201, r.text
    body = r.json()
    invite_id = body["id"]
    assert body["extension"] == "211" and body["number"] == "+6591234567"
    assert r.headers["Location"] == body["links"]["self"] == f"{BASE}/{invite_id}"
    # exactly the documented request
    [request] = world.voipnow.log
    assert (request.method, request.path) == ("POST", "/uapi/phoneCalls/@me/conferenceInvite")
    assert request.query == {"number": "3", "pin": "2233", "waitForPickup": "30"}
    assert request.body == {"extension": "211", "phoneCallView": [
        {"source": ["211"], "destination": ["+6591234567"], "callerId": "Acme Support <+6531580000>"}]}
    assert request.http_status == 202
    # the id is stored as a side call
    [side] = world.db.side_calls(txn_ref=invite_id)
    assert (side.kind, side.status) == ("voipnow/invite", "sent")
    status = world.get(f"{BASE}/{invite_id}").json()
    assert status["state"] == "on_call" and status["answered_at"] and status["phone_call"]["id"] == invite_id
    hung = world.api("DELETE", f"{BASE}/{invite_id}")
    assert hung.status_code == 200 and hung.json() == {"status": "ok", "id": invite_id, "hung_up": True,
                                                       "state": "ended"}  # fmt: skip
    assert world.voipnow.invites[invite_id].end_reason == "hangup"
    again = world.get(f"{BASE}/{invite_id}").json()
    assert again["state"] == "ended" and again["phone_call"] is None
    # hanging up an ended invite is not an error: nothing was live
    assert world.api("DELETE", f"{BASE}/{invite_id}").json()["hung_up"] is False
    assert [e.payload["state"] for e in world.db.call_events(invite_id)] == ["on_call", "ended"]
    assert world.db.side_calls(txn_ref=invite_id)[0].status == "ended"


def test_a_minimal_invite_and_a_bare_caller_id(sqlite_world):
    r = sqlite_world.post(BASE, {"number": "212", "caller_id": "+6531580000"})
    assert r.status_code == 201, r.text
    [request] = sqlite_world.voipnow.log
    assert request.query == {}
    assert request.body["phoneCallView"][0] == {"source": ["211"], "destination": ["212"],
                                                "callerId": "+6531580000 <+6531580000>"}  # fmt: skip


def test_an_invite_nobody_picks_up_rings_then_ends(clocked):
    clocked.voipnow.script("+6591234567", pickup=False)
    invite_id = clocked.post(BASE, {"number": "+6591234567", "wait_for_pickup": 20}).json()["id"]
    assert clocked.get(f"{BASE}/{invite_id}").json()["state"] == "other_side_ringing"
    clocked.now[0] += 21
    shown = clocked.get(f"{BASE}/{invite_id}").json()
    assert shown["state"] == "ended" and shown["answered_at"] is None


INVALID = [
    ({}, "number"),
    ({"number": "call me"}, "number"),
    ({"number": "+65 9123 4567"}, "number"),
    ({"number": 6591234567}, "number"),
    ({**INVITE, "conference_number": "three"}, "conference_number"),
    ({**INVITE, "conference_number": 3}, "conference_number"),
    ({**INVITE, "pin": "22-33"}, "pin"),
    ({**INVITE, "pin": "1" * 17}, "pin"),
    ({**INVITE, "wait_for_pickup": 0}, "wait_for_pickup"),
    ({**INVITE, "wait_for_pickup": -1}, "wait_for_pickup"),
    ({**INVITE, "wait_for_pickup": "25"}, "wait_for_pickup"),
    ({**INVITE, "wait_for_pickup": 3601}, "wait_for_pickup"),
    ({**INVITE, "caller_id": "John <Doe>"}, "caller_id"),
    ({**INVITE, "caller_id": "<<+1>>"}, "caller_id"),
    ({**INVITE, "extension": "212"}, "extension"),
]


@pytest.mark.parametrize(("payload", "field"), INVALID)
def test_every_invalid_invite_is_refused_before_calling_voipnow(shared_world, payload, field):
    with nothing_sent(shared_world):
        assert_error(shared_world.post(BASE, payload), 422, field=field, code="invalid_field")


def test_an_invite_body_that_is_not_json_is_a_400(shared_world):
    with nothing_sent(shared_world):
        assert_error(shared_world.api("POST", BASE, data=b"number=1"), 400, code="invalid_json")


# (HTTP status, documented code, the request field it is about)
DOCUMENTED = [
    (400, "extension_invalid", None),
    (400, "pc_duration_invalid", "max_duration"),
    (400, "pc_source_invalid", None),
    (400, "pc_destination_invalid", "number"),
    (400, "pc_timeout_invalid", "wait_for_pickup"),
    (400, "pc_callerid_invalid", "caller_id"),
    (400, "pc_pin_invalid", "pin"),
    (400, "pc_number_invalid", "conference_number"),
    (400, "user_invalid", None),
    (401, "access_denied", None),
    (500, "internal_server_error", None),
    (501, "request_not_implemented", None),
]


def test_every_documented_voipnow_error_is_a_502_with_its_code_and_meaning(sqlite_world):
    w = sqlite_world
    for http_status, code, field in DOCUMENTED:
        w.voipnow.inject(http_status, code)
        body = assert_error(w.post(BASE, INVITE), 502, code="provider_error")
        assert (body["provider"], body["provider_status"]) == ("voipnow", code)
        assert body["meaning"] == classify(code).meaning and code in body["error"]
        assert body.get("field") == field, code
    assert [s.status for s in w.db.side_calls()] == ["failed"] * len(DOCUMENTED)


@pytest.mark.parametrize(("settings", "code"), [
    ({"voipnow_token": "expired"}, "access_denied"),
    ({"voipnow_extension": "210"}, "extension_invalid"),  # a phone extension, not a conference one
    ({"voipnow_extension": "311"}, "extension_invalid"),  # another user's
    ({"voipnow_extension": "999"}, "extension_invalid"),
])  # fmt: skip
def test_a_misconfigured_voipnow_is_reported_not_crashed(tmp_path, settings, code):
    w = World(f"sqlite:///{tmp_path / 'bad.sqlite3'}", **settings)
    try:
        body = assert_error(w.post(BASE, INVITE), 502, code="provider_error")
        assert body["provider_status"] == code
        assert "VOIPNOW_" in body["meaning"]
    finally:
        w.close()


def test_odd_voipnow_answers(sqlite_world):
    w = sqlite_world
    w.voipnow.inject(204)  # accepted, but no id to follow
    r = w.post(BASE, INVITE)
    assert r.status_code == 201 and r.json()["id"] is None and r.json()["links"]["self"] is None
    w.voipnow.inject(200, None)  # an empty 200 is the same
    assert w.post(BASE, INVITE).json()["id"] is None
    w.voipnow.inject(418, "teapot")  # an undocumented error is still a clear 502
    body = assert_error(w.post(BASE, INVITE), 502)
    assert body["provider_status"] == "teapot"


def test_voipnow_down_is_a_502(sqlite_world):
    sqlite_world.voipnow.stop()
    body = assert_error(sqlite_world.post(BASE, INVITE), 502, code="provider_error")
    assert body["provider_status"] == "error_connection"


def test_status_and_hangup_errors(sqlite_world):
    w = sqlite_world
    assert_error(w.get(f"{BASE}/0123456789abcdef0123"), 404, code="unknown_invite")
    assert_error(w.api("DELETE", f"{BASE}/0123456789abcdef0123"), 404, code="unknown_invite")
    assert_error(w.get(f"{BASE}/bad*id"), 422, field="id")
    assert_error(w.api("DELETE", f"{BASE}/{'x' * 65}"), 422, field="id")
    invite_id = w.post(BASE, INVITE).json()["id"]
    for http_status, code in ((401, "access_denied"), (500, "internal_server_error"), (400, "extension_invalid")):
        w.voipnow.inject(http_status, code, times=2)  # one for the query, one for the hang-up
        body = assert_error(w.get(f"{BASE}/{invite_id}"), 502, code="provider_error")
        assert body["provider_status"] == code
        body = assert_error(w.api("DELETE", f"{BASE}/{invite_id}"), 502, code="provider_error")
        assert body["provider_status"] == code


@pytest.fixture
def no_voipnow(tmp_path):
    w = World(f"sqlite:///{tmp_path / 'none.sqlite3'}", voipnow=False)
    yield w
    w.close()


def test_without_voipnow_settings_the_invite_routes_say_so(no_voipnow):
    for method, path, body in (("POST", BASE, INVITE), ("GET", f"{BASE}/abc", None), ("DELETE", f"{BASE}/abc", None)):
        if method != "POST":  # an id must be known first
            no_voipnow.db.add_side_call("voipnow/invite", {"number": "+6591234567"}, txn_ref="abc", status="sent")
        r = no_voipnow.api(method, path, json=body)
        err = assert_error(r, 503, code="voipnow_not_configured")
        assert "VOIPNOW_URL" in err["error"]
