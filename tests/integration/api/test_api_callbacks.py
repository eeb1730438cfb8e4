"""POST /api/callbacks: click-to-call through Hoiio voice/call, and its end notification."""

from __future__ import annotations

import pytest

from engine.providers.hoiio.statuses import classify
from tests.integration.api.conftest import assert_error, nothing_sent

CALLBACK = {"first": "+6531580000", "second": "+6591234567"}


def test_a_callback_joins_two_numbers_and_its_notification_is_stored(world):
    r = world.post("/api/callbacks", {**CALLBACK, "caller_id": "+6531580000", "max_duration": 600, "tag": "web"})
    assert r.status_code == 201, r.text
    body = r.json()
    txn_ref = body["txn_ref"]
    assert body["state"] == "in_progress" and r.headers["Location"] == f"/api/calls/{txn_ref}"
    [request] = [rec for rec in world.hoiio.log if rec.endpoint == "voice/call"]
    assert (request.params["dest1"], request.params["dest2"]) == ("+6531580000", "+6591234567")
    assert request.params["caller_id"] == "+6531580000" and request.params["max_duration"] == "600"
    assert request.params["tag"] == "web"
    assert request.params["notify_url"].startswith(f"{world.url}/hoiio/events?kind=voice&ref=")
    world.settle()
    [side] = world.db.side_calls(txn_ref=txn_ref)
    assert (side.kind, side.status) == ("voice/call", "ended")
    assert side.request["origin"] == "api" and "notify_url" not in side.request["params"]
    [event] = world.db.call_events(txn_ref)
    assert event.kind == "voice/call"
    assert event.payload["legs"] == [{"number": "+6531580000", "status": "answered"},
                                     {"number": "+6591234567", "status": "answered"}]  # fmt: skip
    info = world.get(f"/api/calls/{txn_ref}").json()
    assert info["kind"] == "voice/call" and info["state"] == "ended"
    assert info["legs"][1]["status"] == "answered" and info["billing"]["currency"] == "SGD"
    assert info["request"] == {"dest1": "+6531580000", "dest2": "+6591234567", "caller_id": "+6531580000",
                               "max_duration": "600", "tag": "web"}  # fmt: skip
    # the notification went to its own route and never touched an IVR call
    assert world.db.list_calls() == []
    [note] = [n for n in world.hoiio.notifications if "/hoiio/events" in n.url]
    assert note.http_status == 200


def test_a_callback_where_the_second_person_is_busy(world):
    world.script("+6591234567", dial="busy")
    txn_ref = world.post("/api/callbacks", CALLBACK).json()["txn_ref"]
    world.settle()
    info = world.get(f"/api/calls/{txn_ref}?refresh=true").json()
    assert [leg["status"] for leg in info["legs"]] == ["answered", "busy"]
    assert info["hoiio"]["call_status_dest2"] == "busy"


INVALID = [
    ({"second": "+6591234567"}, "first"),
    ({"first": "+6531580000"}, "second"),
    ({"first": "6531580000", "second": "+6591234567"}, "first"),
    ({"first": "+6531580000", "second": "+65-9123-4567"}, "second"),
    ({"first": "+6591234567", "second": "+6591234567"}, "second"),
    ({**CALLBACK, "max_duration": 0}, "max_duration"),
    ({**CALLBACK, "max_duration": -5}, "max_duration"),
    ({**CALLBACK, "max_duration": 1.5}, "max_duration"),
    ({**CALLBACK, "max_duration": "60"}, "max_duration"),
    ({**CALLBACK, "max_duration": 86401}, "max_duration"),
    ({**CALLBACK, "caller_id": "Acme"}, "caller_id"),
    ({**CALLBACK, "tag": "t" * 257}, "tag"),
    ({**CALLBACK, "notify_url": "http://evil.example"}, "notify_url"),
]


@pytest.mark.parametrize(("payload", "field"), INVALID)
def test_every_invalid_callback_is_refused_before_dialling(shared_world, payload, field):
    with nothing_sent(shared_world):
        assert_error(shared_world.post("/api/callbacks", payload), 422, field=field, code="invalid_field")


def test_a_callback_body_that_is_not_json_is_a_400(shared_world):
    with nothing_sent(shared_world):
        assert_error(shared_world.api("POST", "/api/callbacks", data="first=+6531580000"), 400, code="invalid_json")


VOICE_CALL_STATUSES = [
    "error_invalid_http_method", "error_malformed_params", "error_invalid_access_token", "error_invalid_app_id",
    "error_rate_limit_exceeded", "error_internal_server_error", "error_tag_invalid_length", "error_dest1_invalid",
    "error_dest2_invalid", "error_dest1_not_supported", "error_dest2_not_supported", "error_not_allowed_for_trial",
    "error_same_dest1_dest2", "error_invalid_notify_url", "error_unable_to_resolve_notify_url",
    "error_unable_to_complete_ssl_handshake_notify_url", "error_insufficient_credit",
    "error_concurrent_call_limit_reached", "error_call_service_not_available", "error_caller_id_invalid",
    "error_invalid_max_duration",
]  # fmt: skip
FIELDS = {"error_dest1_invalid": "first", "error_dest1_not_supported": "first", "error_dest2_invalid": "second",
          "error_dest2_not_supported": "second", "error_same_dest1_dest2": "second",
          "error_not_allowed_for_trial": "second", "error_caller_id_invalid": "caller_id",
          "error_invalid_max_duration": "max_duration", "error_tag_invalid_length": "tag"}  # fmt: skip


def test_every_voice_call_refusal_is_a_502_with_the_status_and_its_meaning(sqlite_world):
    w = sqlite_world
    for status in VOICE_CALL_STATUSES:
        w.hoiio.inject("voice/call", status=status, times=None)
        r = w.post("/api/callbacks", CALLBACK)
        w.hoiio.clear_faults()
        body = assert_error(r, 502, code="provider_error")
        assert (body["provider"], body["provider_status"]) == ("hoiio", status)
        assert body["meaning"] == classify(status).meaning
        assert body.get("field") == FIELDS.get(status), status
    statuses = [s.status for s in w.db.side_calls() if s.kind == "voice/call"]
    assert statuses == ["failed"] * len(VOICE_CALL_STATUSES)


def test_the_account_call_limit_is_a_502(sqlite_world):
    w = sqlite_world
    for _ in range(8):  # each callback holds a line until someone hangs up; the account has 8
        w.script(stay_on_line=True)
        assert w.post("/api/callbacks", CALLBACK).status_code == 201
    body = assert_error(w.post("/api/callbacks", CALLBACK), 502, code="provider_error")
    assert body["provider_status"] == "error_concurrent_call_limit_reached"
    assert "8" in body["meaning"]


def test_a_callback_whose_answer_was_lost_is_not_sent_twice(sqlite_world):
    w = sqlite_world
    w.hoiio.inject("voice/call", drop=True, processed=True)
    body = assert_error(w.post("/api/callbacks", CALLBACK), 502)
    assert body["maybe_delivered"] is True
    assert [r.endpoint for r in w.hoiio.log].count("voice/call") == 1
    [side] = w.db.side_calls()
    assert side.status == "unknown"
