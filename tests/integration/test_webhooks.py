"""The webhook service end to end through Flask, on SQLite and PostgreSQL.

Hoiio is replaced by a recording transport under the real client, so every assertion is about the
exact requests that would reach Hoiio.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlsplit

import sqlalchemy as sa

from engine.providers.hoiio.signature import sign_body
from engine.storage.tables import notifications
from tests.integration.conftest import TOKEN


def test_answer_routes_by_number_and_sends_first_block(harness):
    response = harness.answer("S1")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert [b["endpoint"] for b in body["blocks"]] == ["ivr/middle/play"]
    endpoint, params = harness.hoiio.last()
    assert endpoint == "ivr/middle/play"
    assert params["msg"] == "Welcome to Acme."
    assert params["session"] == "S1"
    assert params["app_id"] == "test-app" and params["access_token"] == TOKEN
    assert params["notify_url"].startswith("https://ivr.example.com/hoiio/notify?")
    # the answer body names the block but never the token
    assert "access_token" not in body["blocks"][0]["params"]
    call = harness.db.get_call("S1")
    assert call.flow == "everything" and call.status == "active"


def test_answer_by_flow_name_ignores_the_number(harness):
    response = harness.answer("S2", to="+6599999999", path="/hoiio/answer/direct")
    assert response.status_code == 200
    assert harness.hoiio.last()[1]["msg"] == "Hello +6591234567."


def test_unknown_number_and_unknown_flow_are_clear_404s(harness):
    r = harness.answer("S3", to="+6599999999")
    assert r.status_code == 404 and "+6599999999" in r.get_json()["error"]
    r = harness.answer("S4", path="/hoiio/answer/nope")
    assert r.status_code == 404 and "nope" in r.get_json()["error"]
    assert harness.hoiio.requests == []


def test_menu_walk_collect_pin_and_hangup_with_billing(harness):
    harness.answer("S5")
    harness.reply("S5", "play")
    assert harness.hoiio.last()[0] == "ivr/middle/gather"
    gather = harness.hoiio.last()[1]
    assert gather["max_digits"] == "1" and gather["timeout"] == "5" and gather["attempts"] == "1"
    harness.reply("S5", "gather", digits="1")
    assert harness.hoiio.last()[1]["msg"] == "Enter your four digit PIN."
    harness.reply("S5", "gather", digits="12")  # too short: invalid, asked again
    assert harness.hoiio.last()[1]["msg"].startswith("A PIN has four digits.")
    harness.reply("S5", "gather", digits="1234")
    assert harness.hoiio.last()[1]["msg"] == "Thank you."
    harness.reply("S5", "play")
    assert harness.hoiio.last()[0] == "ivr/end/hangup"
    r = harness.reply("S5", "hangup", call_state="ended", date="2026-11-23 10:00:05", duration="1",
                      currency="SGD", rate="0.020", debit="0.020")
    assert r.status_code == 200 and r.get_json()["blocks"] == []
    call = harness.db.get_call("S5")
    assert call.status == "ended"
    assert call.billing["debit"] == "0.020" and call.billing["currency"] == "SGD"
    # the PIN was collected but is marked sensitive
    assert "pin" in call.state["sensitive"]


def test_duplicate_notification_yields_one_block(harness):
    harness.answer("S6")
    url = harness.notify_url("S6")
    first = harness.reply("S6", "play", url=url)
    second = harness.reply("S6", "play", url=url)
    assert first.get_json()["blocks"] and second.get_json()["blocks"] == []
    assert second.get_json()["status"] == "ignored"
    assert harness.hoiio.endpoints().count("ivr/middle/gather") == 1


def test_duplicate_answer_is_ignored(harness):
    harness.answer("S7")
    again = harness.answer("S7")
    assert again.status_code == 200 and again.get_json()["status"] == "ignored"
    assert harness.hoiio.endpoints() == ["ivr/middle/play"]


def test_late_notification_for_an_old_step_is_recorded_and_ignored(harness):
    harness.answer("S8")
    old = harness.notify_url("S8")
    harness.reply("S8", "play", url=old)
    # a different (late) notification for the step the call already left
    late = harness.reply("S8", "play", url=old, tag="late")
    assert late.status_code == 200 and late.get_json()["status"] == "ignored"
    assert harness.hoiio.endpoints().count("ivr/middle/gather") == 1


def test_forged_step_is_refused(harness):
    harness.answer("S9")
    url = harness.notify_url("S9")
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["step"] = str(int(query["step"]) + 1)
    forged = "&".join(f"{k}={v}" for k, v in query.items())
    r = harness.post("/hoiio/notify", {"session": "S9", "ivr_block": "play", "call_state": "ongoing"}, query=forged)
    assert r.status_code == 403
    assert harness.hoiio.endpoints() == ["ivr/middle/play"]


def test_signature_required_and_checked(harness):
    r = harness.post("/hoiio/answer", {"ivr_block": "answer", "session": "S10", "call_state": "ringing",
                                       "to": "+6560000001", "from": "+6591234567"}, sign=False)
    assert r.status_code == 403
    body = b"ivr_block=answer&session=S10&call_state=ringing&to=%2B6560000001"
    r = harness.post("/hoiio/answer", {}, raw=body, sign=False, headers={"X-Hoiio-Signature": "00" * 32})
    assert r.status_code == 403
    assert harness.hoiio.requests == []
    assert harness.db.get_call("S10") is None


def test_query_string_cannot_override_signed_body(harness):
    body = b"ivr_block=answer&session=S11&call_state=ringing&to=%2B6560000001&from=%2B6591234567"
    r = harness.post("/hoiio/answer", {}, raw=body, query="session=EVIL&to=%2B6599999999")
    assert r.status_code == 200
    assert harness.db.get_call("S11") is not None
    assert harness.db.get_call("EVIL") is None


def test_signatures_can_be_switched_off_for_local_work(database_url):
    from tests.integration.conftest import make_app

    h = make_app(database_url, verify_signatures=False)
    try:
        r = h.post("/hoiio/answer", {"ivr_block": "answer", "session": "S12", "call_state": "ringing",
                                     "to": "+6560000001", "from": "+6591234567"}, sign=False)
        assert r.status_code == 200
    finally:
        h.db.dispose()


def test_bad_input_gets_clear_4xx_and_is_recorded(harness):
    cases = [
        (b"\xff\xfe\x00garbage", 400, "UTF-8"),
        (b"session=" + b"S" * 10_000 + b"&call_state=ringing&ivr_block=answer", 400, "session"),
        (b"session=S13&call_state=ongoing&ivr_block=gather&digits=12ab", 400, "digits"),
        (b"session=S13&session=S14&call_state=ringing&ivr_block=answer", 400, "session"),
        (b"call_state=ringing&ivr_block=answer&to=%2B6560000001", 400, "session"),
    ]
    for body, status, word in cases:
        r = harness.post("/hoiio/answer", {}, raw=body)
        assert r.status_code == status, body[:40]
        assert word in r.get_json()["error"], (body[:40], r.get_json())
    big = b"session=S15&x=" + b"a" * 70_000
    r = harness.post("/hoiio/answer", {}, raw=big)
    assert r.status_code == 413 and r.is_json
    r = harness.client.get("/hoiio/answer")
    assert r.status_code == 405 and r.is_json
    r = harness.reply("NOPE", "play", url="https://ivr.example.com/hoiio/notify")
    assert r.status_code == 400  # no step in the URL
    recorded = harness.db.recent_notifications(limit=50)
    assert len(recorded) >= len(cases) + 3
    assert "invalid" in {n["outcome"] for n in recorded}
    assert harness.hoiio.requests == []


def test_unknown_session_with_valid_signature_is_404(harness):
    from engine.providers.hoiio.signature import sign_step

    secret = harness.service.settings.step_secret
    r = harness.reply("GHOST", "play", url=f"https://x/hoiio/notify?step=1&sig={sign_step(secret, 'GHOST', 1)}")
    assert r.status_code == 404 and "unknown session" in r.get_json()["error"]


def test_transfer_failure_continues_to_voicemail_then_success_ends(harness):
    harness.answer("S16")
    harness.reply("S16", "play")
    harness.reply("S16", "gather", digits="2")
    endpoint, params = harness.hoiio.last()
    assert endpoint == "ivr/end/transfer"
    assert params["dest"] == "+6561111111" and params["on_failure"] == "continue" and params["ring_time"] == "20"
    harness.reply("S16", "transfer", transfer_status="busy")
    endpoint, params = harness.hoiio.last()
    assert endpoint == "ivr/middle/record" and params["max_duration"] == "60"
    harness.reply("S16", "record", record_url="https://rec.example.com/r1.mp3")
    assert harness.hoiio.last()[0] == "ivr/end/hangup"
    assert harness.db.get_call("S16").state["vars"]["message"] == "https://rec.example.com/r1.mp3"


def test_transfer_answered_then_call_ends(harness):
    harness.answer("S17")
    harness.reply("S17", "play")
    harness.reply("S17", "gather", digits="2")
    harness.reply("S17", "transfer", call_state="ended", transfer_status="answered", duration="3",
                  currency="SGD", rate="0.03", debit="0.09", date="2026-11-23 10:03:00")
    call = harness.db.get_call("S17")
    assert call.status == "ended" and call.outcome == "transferred"
    assert harness.hoiio.last()[0] == "ivr/end/transfer"


def test_hold_and_unhold_are_sent_in_one_turn(harness):
    harness.answer("S18")
    harness.reply("S18", "play")
    r = harness.reply("S18", "gather", digits="4")
    assert [b["endpoint"] for b in r.get_json()["blocks"]] == ["ivr/middle/hold", "ivr/middle/unhold"]
    hold = harness.hoiio.requests[-2][1]
    assert "notify_url" not in hold
    harness.reply("S18", "unhold")
    assert harness.hoiio.last()[0] == "ivr/end/hangup"


def test_caller_hangs_up_mid_menu(harness):
    harness.answer("S19")
    harness.reply("S19", "play")
    before = len(harness.hoiio.requests)
    r = harness.reply("S19", "gather", call_state="ended", duration="1", currency="SGD", rate="0.02",
                      debit="0.02", date="2026-11-23 10:00:30")
    assert r.status_code == 200 and r.get_json()["blocks"] == []
    assert len(harness.hoiio.requests) == before
    call = harness.db.get_call("S19")
    assert call.status == "ended" and call.outcome == "caller hung up"


def test_no_input_and_invalid_have_separate_counters(harness):
    harness.answer("S20")
    harness.reply("S20", "play")
    harness.reply("S20", "gather", digits="")
    assert harness.hoiio.last()[1]["msg"].startswith("I did not hear anything.")
    harness.reply("S20", "gather", digits="8")
    assert harness.hoiio.last()[1]["msg"].startswith("That is not an option.")
    harness.reply("S20", "gather", digits="9")
    # second invalid: out of tries -> bye
    assert harness.hoiio.last()[0] == "ivr/end/hangup"
    assert harness.hoiio.last()[1]["msg"] == "Goodbye."


def test_provider_refusal_goes_to_error_handler(harness):
    harness.answer("S21")
    harness.hoiio.answer("ivr/middle/gather", "error_msg_invalid_length")
    harness.reply("S21", "play")
    endpoint, params = harness.hoiio.last()
    assert endpoint == "ivr/end/hangup" and params["msg"] == "Sorry, something went wrong."


def test_runtime_error_in_flow_goes_to_error_handler(harness):
    harness.answer("S22")
    harness.reply("S22", "play")
    harness.reply("S22", "gather", digits="5")  # transfer to an invalid number from a variable
    endpoint, params = harness.hoiio.last()
    assert endpoint == "ivr/end/hangup" and params["msg"] == "Sorry, something went wrong."


def test_everything_is_recorded_for_a_call(harness):
    harness.answer("S23")
    harness.reply("S23", "play")
    timeline = harness.db.timeline("S23")
    kinds = [entry["kind"] for entry in timeline]
    assert kinds.count("notification") == 2 and kinds.count("block") == 2
    block = next(e for e in timeline if e["kind"] == "block")
    assert "access_token" not in str(block)
    assert TOKEN not in str(timeline)


def test_healthz(harness):
    assert harness.client.get("/healthz").status_code == 200
    r = harness.client.get("/readyz")
    assert r.status_code == 200 and "everything" in r.get_json()["checks"]["flows"]


def test_signature_helper_matches_documented_algorithm():
    import hashlib
    import hmac

    body = b"session=S1&call_state=ongoing"
    assert sign_body(body, "tok") == hmac.new(b"tok", body, hashlib.sha256).hexdigest()


def test_billing_arriving_after_the_call_ended_is_kept(harness):
    harness.answer("S24")
    url = harness.notify_url("S24")
    harness.reply("S24", "play", call_state="ended", url=url)
    assert harness.db.get_call("S24").status == "ended"
    r = harness.reply("S24", "play", call_state="ended", url=url, duration="1", currency="SGD", rate="0.02",
                      debit="0.02", date="2026-11-23 10:00:10")
    assert r.get_json()["blocks"] == []
    assert harness.db.get_call("S24").billing["debit"] == "0.02"


def test_non_ascii_signature_is_refused_not_a_crash(harness):
    body = b"ivr_block=answer&session=S25&call_state=ringing&to=%2B6560000001"
    r = harness.post("/hoiio/answer", {}, raw=body, sign=False, headers={"X-Hoiio-Signature": "é" * 64})
    assert r.status_code == 403


def test_a_step_or_ref_written_in_non_ascii_digits_is_a_clear_400_not_a_crash(harness):
    harness.answer("S90")
    fields = {"ivr_block": "play", "session": "S90", "txn_ref": "AA-S90", "call_state": "ongoing"}
    for step in ("²", "٣", "１"):  # str.isdigit() says yes to each; int() refuses the first
        response = harness.post("/hoiio/notify", fields, query=f"step={step}&sig=x")
        assert response.status_code == 400 and "step must be one whole number" in response.get_json()["error"]
    for ref in ("²", "٣"):
        response = harness.post("/hoiio/events", {"txn_ref": "T1"}, query=f"kind=voice&ref={ref}&sig=x")
        assert response.status_code == 403  # not a URL this server signed; before, '²' was a 500


def test_retries_of_notifications_stored_with_old_form_dedupe_keys_are_still_ignored(harness):
    """Keys stored before they were led by the session were a bare sha256: a retry after the
    upgrade gets a key of the new form, misses the old one, and is stopped by the call's own checks."""
    harness.answer("S60")
    url = harness.notify_url("S60")
    harness.reply("S60", "play", url=url)
    with harness.db.transaction() as tx:  # the stored keys as an earlier version wrote them
        rows = tx.conn.execute(sa.select(notifications.c.id, notifications.c.dedupe_key)
                               .where(notifications.c.session == "S60")).all()  # fmt: skip
        assert len(rows) == 2 and all(key.startswith("S60:") for _id, key in rows)
        for row_id, key in rows:
            old = hashlib.sha256(key.encode()).hexdigest()  # 64 hex characters, no session in front
            tx.conn.execute(sa.update(notifications).where(notifications.c.id == row_id).values(dedupe_key=old))
    sent = harness.hoiio.endpoints()

    again = harness.answer("S60")
    retry = harness.reply("S60", "play", url=url)
    assert again.get_json()["status"] == "ignored" and retry.get_json()["status"] == "ignored"
    assert harness.hoiio.endpoints() == sent == ["ivr/middle/play", "ivr/middle/gather"]
