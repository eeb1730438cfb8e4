"""POST /api/calls (outbound flows through Hoiio ivr/start/dial) and GET /api/calls/<ref>."""

from __future__ import annotations

import pytest

from engine.providers.hoiio.statuses import classify
from tests.integration.api.conftest import assert_error, nothing_sent

CALL = {"flow": "reminder", "to": "+6591234567", "vars": {"name": "Ann"}}


def _dial_params(world):
    [record] = [r for r in world.hoiio.log if r.endpoint == "ivr/start/dial"]
    return record.params


def test_an_outbound_flow_is_dialled_and_runs_like_an_incoming_call(world):
    world.script("+6591234567", dial="answered")
    r = world.post("/api/calls", {**CALL, "tag": "appt-42"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "ok" and body["flow"] == "reminder" and body["to"] == "+6591234567"
    assert body["session"].startswith("out-")
    assert r.headers["Location"] == body["links"]["self"] == f"/api/calls/{body['session']}"
    # the dial node supplies msg and max_duration; the request supplies the tag
    params = _dial_params(world)
    assert params["dest"] == "+6591234567" and params["max_duration"] == "120" and params["tag"] == "appt-42"
    assert "Hello Ann." in params["msg"]
    assert params["caller_id"] == "+6531580000"
    # Hoiio's session and txn_ref from the dial's answer are stored
    assert body["hoiio_session"] and body["txn_ref"]
    snapshot = world.hoiio.wait_until_ended(body["hoiio_session"])
    assert snapshot.block_names == ("play", "hangup")
    world.settle()
    info = world.get(body["links"]["self"]).json()
    assert info["kind"] == "flow" and info["state"] == "ended"
    assert info["txn_ref"] == body["txn_ref"]
    assert info["flow"]["node"] == "bye"
    shown = [(n["ivr_block"], n.get("dial_status")) for n in info["flow"]["notifications"]]
    assert shown == [("dial", "answered"), ("play", None), ("hangup", None)]
    # the same call is found by its txn_ref
    assert world.get(f"/api/calls/{body['txn_ref']}").json()["session"] == body["session"]


@pytest.mark.parametrize("outcome", ["unanswered", "busy", "failed"])
def test_each_dial_outcome_follows_its_own_exit(world, outcome):
    world.script("+6591234567", dial=outcome)
    r = world.post("/api/calls", CALL)
    assert r.status_code == 201, r.text
    body = r.json()
    world.hoiio.wait_until_ended(body["hoiio_session"])
    world.settle()
    row = world.db.get_call(body["session"])
    assert row.status == "ended"
    assert row.call_state().vars["result"] == outcome
    info = world.get(f"/api/calls/{body['session']}").json()
    assert info["flow"]["notifications"][0]["dial_status"] == outcome
    # the dial result came back as an IVR notification of this call, not as a side-call event
    assert world.db.side_calls(txn_ref=body["txn_ref"]) == []


def test_the_request_caller_id_wins_over_the_flows(sqlite_world):
    r = sqlite_world.post("/api/calls", {**CALL, "caller_id": "private"})
    assert r.status_code == 201, r.text
    assert _dial_params(sqlite_world)["caller_id"] == "private"


INVALID = [
    ({"to": "+6591234567"}, "flow"),
    ({"flow": "", "to": "+6591234567"}, "flow"),
    ({"flow": "../etc", "to": "+6591234567"}, "flow"),
    ({"flow": 7, "to": "+6591234567"}, "flow"),
    ({"flow": "reminder"}, "to"),
    ({"flow": "reminder", "to": "91234567"}, "to"),
    ({"flow": "reminder", "to": "+65 9123 4567"}, "to"),
    ({"flow": "reminder", "to": "+0591234567"}, "to"),
    ({"flow": "reminder", "to": "+1234567"}, "to"),
    ({"flow": "reminder", "to": "+1234567890123456"}, "to"),
    ({"flow": "reminder", "to": 6591234567}, "to"),
    ({**CALL, "vars": ["Ann"]}, "vars"),
    ({**CALL, "vars": {"bad-name": "x", "name": "Ann"}}, "vars"),
    ({**CALL, "vars": {"name": {"first": "Ann"}}}, "vars.name"),
    ({**CALL, "vars": {"name": None}}, "vars.name"),
    ({**CALL, "vars": {"name": "x" * 1001}}, "vars.name"),
    ({**CALL, "vars": {f"v{i}": i for i in range(51)}}, "vars"),
    ({**CALL, "vars": {}}, "vars.name"),  # a declared input of the flow is missing
    ({**CALL, "caller_id": "12345"}, "caller_id"),
    ({**CALL, "caller_id": "anonymous"}, "caller_id"),
    ({**CALL, "tag": "x" * 257}, "tag"),
    ({**CALL, "tag": "line\nbreak"}, "tag"),
    ({**CALL, "tag": 5}, "tag"),
    ({**CALL, "dest": "+6591234567"}, "dest"),
]


@pytest.mark.parametrize(("payload", "field"), INVALID)
def test_every_invalid_request_is_refused_before_anything_is_dialled(shared_world, payload, field):
    with nothing_sent(shared_world):
        assert_error(shared_world.post("/api/calls", payload), 422, field=field, code="invalid_field")


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"{\"flow\": NaN}", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_400(shared_world, raw):
    with nothing_sent(shared_world):
        r = shared_world.api("POST", "/api/calls", data=raw, headers={"Content-Type": "application/json"})
        assert_error(r, 400, code="invalid_json")


@pytest.mark.parametrize("flow", ["nope", "hello", "team_call"])
def test_an_unknown_or_inbound_flow_is_a_404_naming_the_field(shared_world, flow):
    with nothing_sent(shared_world):
        body = assert_error(shared_world.post("/api/calls", {"flow": flow, "to": "+6591234567"}), 404,
                            field="flow", code="unknown_flow")  # fmt: skip
    assert "outbound" in body["error"]


# Statuses Hoiio documents for ivr/start/dial requests (common ones, msg, tag, notify_url, destination,
# caller id and account limits), each answered as a 502 naming it and its meaning.
DIAL_STATUSES = [
    "error_invalid_http_method", "error_malformed_params", "error_invalid_access_token", "error_invalid_app_id",
    "error_rate_limit_exceeded", "error_internal_server_error", "error_msg_invalid_length",
    "error_msg_cannot_convert_text", "error_msg_download_failed", "error_msg_invalid_xml",
    "error_tag_invalid_length", "error_invalid_notify_url", "error_unable_to_resolve_notify_url",
    "error_unable_to_complete_ssl_handshake_notify_url", "error_dest_invalid", "error_dest_not_supported",
    "error_number_not_supported", "error_caller_id_invalid", "error_insufficient_credit",
    "error_concurrent_call_limit_reached", "error_not_allowed_for_trial", "error_call_service_not_available",
    "error_invalid_max_duration",
]  # fmt: skip
FIELDS = {"error_dest_invalid": "to", "error_dest_not_supported": "to", "error_number_not_supported": "to",
          "error_not_allowed_for_trial": "to", "error_caller_id_invalid": "caller_id",
          "error_tag_invalid_length": "tag"}  # fmt: skip


def test_every_dial_refusal_is_a_502_with_the_hoiio_status_and_its_meaning(sqlite_world):
    w = sqlite_world
    for status in DIAL_STATUSES:
        w.hoiio.inject("ivr/start/dial", status=status, times=None)
        r = w.post("/api/calls", CALL)
        w.hoiio.clear_faults()
        body = assert_error(r, 502, code="provider_error")
        assert body["provider"] == "hoiio" and body["provider_status"] == status, status
        assert body["meaning"] == classify(status).meaning
        assert status in body["error"] and body["meaning"] in body["error"]
        assert body.get("field") == FIELDS.get(status)
        assert body["retryable"] is (status in ("error_rate_limit_exceeded", "error_internal_server_error"))
        row = w.db.get_call(body["session"])
        assert row.status == "ended" and "dial rejected" in row.outcome


def test_a_dial_whose_answer_was_lost_says_it_may_have_been_placed(sqlite_world):
    sqlite_world.hoiio.inject("ivr/start/dial", drop=True, processed=True)
    body = assert_error(sqlite_world.post("/api/calls", CALL), 502, code="provider_error")
    assert body["provider_status"] == "error_connection" and body["maybe_delivered"] is True
    assert "may or may not" in body["error"]


def test_a_dial_to_a_hoiio_that_is_down_is_a_502_not_a_500(sqlite_world):
    sqlite_world.hoiio.stop()
    body = assert_error(sqlite_world.post("/api/calls", CALL), 502, code="provider_error")
    assert body["provider_status"] == "error_connection"


# ---------------------------------------------------------------------------------------- GET


def test_get_call_refresh_asks_hoiio_and_stores_the_answer(world):
    body = world.post("/api/calls", CALL).json()
    world.hoiio.wait_until_ended(body["hoiio_session"])
    world.settle()
    info = world.get(f"/api/calls/{body['session']}", params={"refresh": "1"}).json()
    assert "hoiio" in info, info
    assert info["hoiio"]["txn_ref"] == body["txn_ref"]
    assert info["hoiio"]["call_status_dest1"] == "answered"
    assert [e.kind for e in world.db.call_events(body["txn_ref"])] == ["voice/query_status"]
    assert [r.endpoint for r in world.hoiio.log][-1] == "voice/query_status"


def test_the_txn_ref_is_kept_when_the_dials_notification_overtakes_its_answer(world, monkeypatch):
    # Under load, Hoiio's first notification for a dial can be handled before the engine has read
    # the dial's own answer; that notification brings Hoiio's session but not the txn_ref.
    client = world.outbound.service.client
    real_send = client.send_block
    overtaken = []

    def send_then_wait_for_the_notification(block, *, session, **kwargs):
        result = real_send(block, session=session, **kwargs)
        if block.kind == "dial" and result.ok:
            key = session  # the engine's session: the dial is sent before Hoiio has given one
            world.wait_for(lambda: any(n.outcome for n in world.db.recent_notifications(10, session=key)))
            overtaken.append(key)
        return result

    monkeypatch.setattr(client, "send_block", send_then_wait_for_the_notification)
    body = world.post("/api/calls", CALL).json()
    assert overtaken == [body["session"]]
    assert body["txn_ref"] and body["hoiio_session"]
    world.hoiio.wait_until_ended(body["hoiio_session"])
    world.settle()
    assert world.db.get_call(body["session"]).txn_ref == body["txn_ref"]
    info = world.get(f"/api/calls/{body['session']}", params={"refresh": "1"}).json()
    assert info["hoiio"]["txn_ref"] == body["txn_ref"]
    assert world.get(f"/api/calls/{body['txn_ref']}").json()["session"] == body["session"]


def test_get_call_errors(sqlite_world):
    w = sqlite_world
    assert_error(w.get("/api/calls/AA-C-999"), 404, code="unknown_call")
    assert_error(w.get("/api/calls/bad ref"), 422, field="txn_ref")
    assert_error(w.get("/api/calls/" + "x" * 65), 422, field="txn_ref")
    body = w.post("/api/calls", CALL).json()
    assert_error(w.get(f"/api/calls/{body['session']}", params={"refresh": "maybe"}), 422, field="refresh")


QUERY_STATUSES = ["error_invalid_txn_ref", "error_txn_ref_access_denied", "error_invalid_access_token",
                  "error_rate_limit_exceeded", "error_internal_server_error", "error_malformed_params"]  # fmt: skip


def test_every_query_status_refusal_is_a_502(sqlite_world):
    w = sqlite_world
    body = w.post("/api/calls", CALL).json()
    for status in QUERY_STATUSES:
        w.hoiio.inject("voice/query_status", status=status, times=None)
        r = w.get(f"/api/calls/{body['session']}?refresh=1")
        w.hoiio.clear_faults()
        err = assert_error(r, 502, code="provider_error")
        assert err["provider_status"] == status and err["meaning"] == classify(status).meaning


def test_refresh_before_hoiio_gave_a_txn_ref_is_a_409(sqlite_world):
    w = sqlite_world
    w.hoiio.inject("ivr/start/dial", status="error_dest_invalid")
    session = w.post("/api/calls", CALL).json()["session"]
    assert_error(w.get(f"/api/calls/{session}?refresh=1"), 409, code="no_txn_ref")
