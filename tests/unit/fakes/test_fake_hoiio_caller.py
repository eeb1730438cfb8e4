"""The scripted caller: notifications posted over HTTP to a small receiving server, signed, with the
fields Hoiio documents for each block."""

from __future__ import annotations

import time

import pytest
import requests
from fake_hoiio_support import ManualClock

from engine.fakes import CallerScript, FakeHoiio
from engine.fakes.hoiio_rules import SUCCESS
from engine.providers.hoiio.signature import SIGNATURE_HEADER, verify_body

BILLING = {"date", "duration", "currency", "rate", "debit"}


@pytest.fixture
def served(receiver):
    """A fake served over HTTP, with a helper posting API requests to it the way an engine would."""
    fakes: list[FakeHoiio] = []

    def make(**options) -> tuple[FakeHoiio, callable]:
        fake = FakeHoiio(**options)
        base = fake.start()
        fakes.append(fake)

        def api(endpoint: str, **params: str) -> dict:
            data = {"app_id": fake.app_id, "access_token": fake.access_token, **params}
            return requests.post(f"{base}/{endpoint}", data=data, timeout=5).json()

        return fake, api

    yield make
    for fake in fakes:
        fake.stop()


def call(fake, receiver, script: CallerScript | None = None) -> str:
    sid = fake.incoming_call(receiver.url("/answer"), script=script)
    fake.wait_ready(sid)
    return sid


def last_form(receiver) -> dict[str, str]:
    return receiver.posts[-1].form


# --------------------------------------------------------------------------------------------------
# Posting and signing


def test_answer_notification(served, receiver):
    fake, _ = served()
    sid = fake.incoming_call(receiver.url("/answer?number=main"), caller="+6591234567", to="+6531580000")
    post = receiver.wait(1)[0]
    assert post.path == "/answer"
    assert post.query == {"number": "main"}
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert post.form == {"ivr_block": "answer", "call_state": "ringing", "session": sid,
                         "txn_ref": fake.sessions[sid].txn_ref, "from": "+6591234567", "to": "+6531580000"}  # fmt: skip


def test_notifications_are_signed_with_the_access_token(served, receiver):
    fake, api = served(access_token="s3cret")
    sid = call(fake, receiver)
    assert api("ivr/middle/play", session=sid, msg="hi", notify_url=receiver.url())["status"] == SUCCESS
    fake.wait_ready(sid)
    for post in receiver.posts:
        assert verify_body(post.body, post.headers[SIGNATURE_HEADER], "s3cret")
        assert not verify_body(post.body, post.headers[SIGNATURE_HEADER], "fake-token")
    assert [n.http_status for n in fake.notifications] == [200, 200]


def test_pass_on_parameters_stay_in_the_url(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    api("ivr/middle/play", session=sid, msg="hi", notify_url=receiver.url("/n?step=3&sig=ab%2Bc"))
    fake.wait_ready(sid)
    post = receiver.posts[-1]
    assert post.path == "/n"
    assert post.query == {"step": "3", "sig": "ab+c"}
    assert "step" not in post.form
    assert post.form["ivr_block"] == "play" and post.form["call_state"] == "ongoing"
    assert post.form["tag"] == ""  # tag is always sent, empty when unset


def test_tag_is_echoed(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    api("ivr/middle/play", session=sid, msg="hi", tag="step-7", notify_url=receiver.url())
    fake.wait_ready(sid)
    assert last_form(receiver)["tag"] == "step-7"


def test_notification_waits_for_notify_delay(served, receiver):
    fake, api = served(notify_delay=0.2)
    sid = call(fake, receiver)
    sent = time.monotonic()
    api("ivr/middle/play", session=sid, msg="hi", notify_url=receiver.url())
    receiver.wait(2)
    assert time.monotonic() - sent >= 0.2


def test_failed_posts_are_recorded_and_not_resent(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    receiver.status = 500
    api("ivr/middle/play", session=sid, msg="hi", notify_url=receiver.url())
    fake.wait_ready(sid)
    assert fake.notifications[-1].http_status == 500
    assert len(receiver.posts) == 2
    api("ivr/middle/play", session=sid, msg="hi", notify_url="http://127.0.0.1:9/closed")
    fake.wait_ready(sid)
    assert fake.notifications[-1].http_status is None
    assert "ConnectionError" in fake.notifications[-1].error


# --------------------------------------------------------------------------------------------------
# Blocks


@pytest.mark.parametrize(
    ("keys", "max_digits", "digits"),
    [("12#3", None, "12"), ("12345", "3", "123"), ("#", None, ""), (None, "4", ""), ("*9", "0", "*9")],
)
def test_gather_reports_the_scripted_keys(served, receiver, keys, max_digits, digits):
    fake, api = served()
    sid = call(fake, receiver, CallerScript(keys=[keys]))
    extra = {"max_digits": max_digits} if max_digits else {}
    api("ivr/middle/gather", session=sid, msg="press", notify_url=receiver.url(), **extra)
    fake.wait_ready(sid)
    form = last_form(receiver)
    assert form["ivr_block"] == "gather" and form["call_state"] == "ongoing"
    assert form["digits"] == digits


def test_gathers_take_keys_in_order_then_silence(served, receiver):
    fake, api = served()
    sid = call(fake, receiver, CallerScript(keys=["1", "2"]))
    got = []
    for _ in range(3):
        api("ivr/middle/gather", session=sid, notify_url=receiver.url())
        fake.wait_ready(sid)
        got.append(last_form(receiver)["digits"])
    assert got == ["1", "2", ""]


def test_record_reports_the_scripted_urls_then_a_served_one(served, receiver):
    fake, api = served()
    sid = call(fake, receiver, CallerScript(records=["https://files.example/rec-1.mp3"]))
    urls = []
    for _ in range(2):
        api("ivr/middle/record", session=sid, msg="speak", notify_url=receiver.url())
        fake.wait_ready(sid)
        urls.append(last_form(receiver)["record_url"])
    assert urls[0] == "https://files.example/rec-1.mp3"
    assert urls[1].startswith(fake.root_url) and urls[1].endswith(".wav")
    audio = requests.get(urls[1], timeout=5)
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    assert api("ivr/middle/play", session=sid, msg=f"<url>{urls[1]}</url>")["status"] == SUCCESS


@pytest.mark.parametrize(
    ("outcome", "on_failure", "call_state"),
    [
        ("answered", "hangup", "ended"),
        ("answered", "continue", "ended"),
        ("busy", "continue", "ongoing"),
        ("unanswered", "continue", "ongoing"),
        ("failed", "hangup", "ended"),
        ("busy", "hangup", "ended"),
    ],
)
def test_transfer_outcomes(served, receiver, outcome, on_failure, call_state):
    fake, api = served()
    sid = call(fake, receiver, CallerScript(transfers=[outcome]))
    response = api("ivr/end/transfer", session=sid, dest="+6592220000", on_failure=on_failure,
                   notify_url=receiver.url())  # fmt: skip
    assert response == {"status": SUCCESS}  # "room" only for rooms
    fake.wait_ready(sid)
    form = last_form(receiver)
    assert form["ivr_block"] == "transfer"
    assert form["transfer_status"] == outcome
    assert form["call_state"] == call_state
    assert (set(form) >= BILLING) == (call_state == "ended")
    assert "dest" not in form and form["from"] == "+6591234567"


def test_answered_transfer_bills_both_legs(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    api("ivr/middle/play", session=sid, msg="hi", notify_url=receiver.url())
    fake.wait_ready(sid)
    api("ivr/end/transfer", session=sid, dest="+6592220000", notify_url=receiver.url())
    fake.wait_until_ended(sid)
    assert last_form(receiver)["rate"] == "0.030"  # incoming 0.010 + outgoing 0.020


def test_transfer_to_a_room(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    response = api("ivr/end/transfer", session=sid, dest="room:", notify_url=receiver.url())
    assert response["status"] == SUCCESS and response["room"].startswith("R")
    fake.wait_until_ended(sid)
    assert last_form(receiver)["transfer_status"] == "answered"
    named = call(fake, receiver)
    assert api("ivr/end/transfer", session=named, dest="room:Sales.1")["room"] == "Sales.1"


def test_stay_on_line_transfer_notifies_when_someone_hangs_up(served, receiver):
    fake, api = served()
    sid = call(fake, receiver, CallerScript(stay_on_line=True))
    api("ivr/end/transfer", session=sid, dest="+6592220000", notify_url=receiver.url())
    snapshot = fake.wait_ready(sid)
    assert snapshot.state == "ongoing" and not snapshot.waiting
    assert fake.active_calls() == 2  # the caller and the transferred leg
    assert len(receiver.posts) == 1
    fake.hangup_caller(sid)
    fake.wait_until_ended(sid)
    form = last_form(receiver)
    assert form["transfer_status"] == "answered" and form["call_state"] == "ended"
    assert fake.active_calls() == 0


def test_hangup_notification_has_billing(make_fake, receiver):
    clock = ManualClock()
    fake = make_fake(clock=clock, transport=None)
    fake.start()
    sid = call(fake, receiver)
    fake.call_api("ivr/middle/play", session=sid, msg="hi", notify_url=receiver.url())
    fake.wait_ready(sid)
    clock.advance(61)  # 61 s of talking: two per-minute blocks
    fake.call_api("ivr/end/hangup", session=sid, msg="bye", tag="t", notify_url=receiver.url())
    fake.wait_until_ended(sid)
    form = last_form(receiver)
    assert form["ivr_block"] == "hangup" and form["call_state"] == "ended" and form["tag"] == "t"
    assert form["duration"] == "2" and form["currency"] == "SGD"
    assert form["rate"] == "0.010" and form["debit"] == "0.020"
    assert form["date"] == "2023-11-15 06:13:20"  # the call's start, GMT+8


def test_unhold_notification(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    api("ivr/middle/hold", session=sid, msg="please wait")
    api("ivr/middle/unhold", session=sid, tag="back", notify_url=receiver.url())
    fake.wait_ready(sid)
    form = last_form(receiver)
    assert (form["ivr_block"], form["call_state"], form["tag"]) == ("unhold", "ongoing", "back")


def test_monitor_posts_the_recording_after_the_call(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    api("ivr/middle/monitor", session=sid, msg="this call is recorded", notify_url=receiver.url("/flow"),
        monitor_notify_url=receiver.url("/recording"))  # fmt: skip
    fake.wait_ready(sid)
    assert last_form(receiver)["ivr_block"] == "monitor" and receiver.posts[-1].path == "/flow"
    api("ivr/end/hangup", session=sid, notify_url=receiver.url("/flow"))
    fake.wait_until_ended(sid)
    assert [p.path for p in receiver.posts] == ["/answer", "/flow", "/flow", "/recording"]
    recording = receiver.posts[-1].form
    assert recording["ivr_block"] == "monitor" and recording["session"] == sid
    assert recording["record_url"].endswith(".wav") and recording["call_state"] == "ended"


# --------------------------------------------------------------------------------------------------
# Dial


def test_dial_answered(served, receiver):
    fake, api = served()
    fake.script_outbound(CallerScript(keys=["7"]), dest="+6591110000")
    response = api("ivr/start/dial", dest="+6591110000", msg="hello", notify_url=receiver.url())
    assert set(response) == {"status", "txn_ref", "session"}
    sid = response["session"]
    fake.wait_ready(sid)
    form = last_form(receiver)
    assert form == {"ivr_block": "dial", "session": sid, "txn_ref": response["txn_ref"], "dest": "+6591110000",
                    "call_state": "ongoing", "tag": "", "dial_status": "answered"}  # fmt: skip
    api("ivr/middle/gather", session=sid, notify_url=receiver.url())
    fake.wait_ready(sid)
    assert last_form(receiver)["digits"] == "7"


@pytest.mark.parametrize("outcome", ["busy", "unanswered", "failed"])
def test_dial_not_answered(served, receiver, outcome):
    fake, api = served()
    fake.script_outbound(CallerScript(dial=outcome))
    sid = api("ivr/start/dial", dest="+6591110000", notify_url=receiver.url())["session"]
    snapshot = fake.wait_until_ended(sid)
    form = last_form(receiver)
    assert (form["dial_status"], form["call_state"]) == (outcome, "ended")
    assert (form["duration"], form["debit"], form["rate"]) == ("0", "0.000", "0.020")
    assert snapshot.end_reason == outcome
    assert api("ivr/middle/play", session=sid, msg="hi")["status"] == "error_session_ended"


# --------------------------------------------------------------------------------------------------
# Hanging up


BLOCKS = [
    ("ivr/middle/play", {"msg": "one"}),
    ("ivr/middle/gather", {"msg": "two"}),
    ("ivr/middle/record", {"msg": "three"}),
]


@pytest.mark.parametrize("hangup_after", [0, 1, 2])
def test_hangup_after_n_blocks(served, receiver, hangup_after):
    fake, api = served()
    sid = call(fake, receiver, CallerScript(keys=["5"], hangup_after=hangup_after))
    for endpoint, params in BLOCKS:
        response = api(endpoint, session=sid, notify_url=receiver.url(), **params)
        if response["status"] != SUCCESS:
            break
        fake.wait_ready(sid)
    forms = [p.form for p in receiver.posts[1:]]
    assert [f["call_state"] for f in forms] == ["ongoing"] * hangup_after + ["ended"]
    assert forms[-1]["ivr_block"] == ("play", "gather", "record")[hangup_after]
    assert set(forms[-1]) >= BILLING
    assert "digits" not in forms[-1]
    assert response["status"] == "error_session_ended" or hangup_after == 2
    assert fake.sessions[sid].end_reason == "caller_hangup"


def test_hanging_up_during_a_record_still_reports_the_recording(served, receiver):
    fake, api = served()
    sid = call(fake, receiver, CallerScript(records=["https://files.example/partial.mp3"], hangup_after=0))
    api("ivr/middle/record", session=sid, notify_url=receiver.url())
    fake.wait_until_ended(sid)
    form = last_form(receiver)
    assert form["call_state"] == "ended" and form["record_url"] == "https://files.example/partial.mp3"


def test_hangup_after_during_hold_ends_silently(served, receiver):
    fake, api = served()
    sid = call(fake, receiver, CallerScript(hangup_after=0))
    assert api("ivr/middle/hold", session=sid)["status"] == SUCCESS
    fake.wait_until_ended(sid)
    assert api("ivr/middle/unhold", session=sid, notify_url=receiver.url())["status"] == "error_session_ended"
    assert len(receiver.posts) == 1


def test_hangup_caller_between_blocks(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    fake.hangup_caller(sid)
    assert fake.wait_until_ended(sid).end_reason == "caller_hangup"
    assert api("ivr/middle/play", session=sid, msg="hi")["status"] == "error_session_ended"
    assert len(receiver.posts) == 1


def test_hangup_caller_mid_block(served, receiver):
    fake, api = served(notify_delay=30.0)
    sid = fake.incoming_call(receiver.url("/answer"))
    fake.hangup_caller(sid)  # while ringing: the answer is never posted
    fake.wait_until_ended(sid)
    fake.notify_delay = 0.0
    sid = call(fake, receiver)
    fake.notify_delay = 30.0
    api("ivr/middle/gather", session=sid, notify_url=receiver.url())
    fake.hangup_caller(sid)
    fake.wait_until_ended(sid)
    form = last_form(receiver)
    assert (form["ivr_block"], form["call_state"]) == ("gather", "ended")
    assert [p.path for p in receiver.posts] == ["/answer", "/notify"]


def test_voice_hangup_of_an_ivr_session(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    assert api("voice/hangup", txn_ref=fake.sessions[sid].txn_ref)["status"] == SUCCESS
    assert fake.wait_until_ended(sid).end_reason == "caller_hangup"


# --------------------------------------------------------------------------------------------------
# voice/call and conference/call


def test_voice_call_notification(served, receiver):
    fake, api = served()
    fake.script_outbound(CallerScript(dial="busy"), dest="+6593330000")
    response = api("voice/call", dest1="+6591110000", dest2="+6593330000", notify_url=receiver.url())
    assert set(response) == {"status", "txn_ref"}
    form = receiver.wait(1)[0].form
    assert form["txn_ref"] == response["txn_ref"]
    assert (form["dest1"], form["dest2"]) == ("+6591110000", "+6593330000")
    assert (form["call_status_dest1"], form["call_status_dest2"]) == ("answered", "busy")
    assert "tag" not in form  # absent when not given
    assert set(form) >= BILLING and form["duration"] == "0"


def test_voice_call_stays_up_until_voice_hangup(served, receiver):
    fake, api = served()
    fake.script_outbound(CallerScript(stay_on_line=True))
    txn_ref = api("voice/call", dest2="+6593330000", tag="c2c", notify_url=receiver.url())["txn_ref"]
    fake.wait_idle()
    status = api("voice/query_status", txn_ref=txn_ref)
    assert status["call_status_dest1"] == "ongoing" and "duration" not in status and status["tag"] == "c2c"
    assert status["dest1"] == fake.registered_number
    assert api("voice/hangup", txn_ref=txn_ref)["status"] == SUCCESS
    form = receiver.wait(1)[0].form
    assert form["tag"] == "c2c" and form["call_status_dest2"] == "answered" and form["duration"] == "1"
    status = api("voice/query_status", txn_ref=txn_ref)
    assert status["call_status_dest2"] == "answered" and status["debit"] == "0.040"


def test_conference_call_posts_one_notification_per_participant(served, receiver):
    fake, api = served()
    fake.script_outbound(CallerScript(dial="unanswered"), dest="+6594440001")
    response = api("conference/call", dest="+6594440000,+6594440001,+6594440002", room="team.a",
                   notify_url=receiver.url())  # fmt: skip
    assert response["room"] == "team.a" and len(response["txn_refs"]) == 3
    posts = receiver.wait(3)
    forms = {p.form["txn_ref"]: p.form for p in posts}
    assert [forms[ref]["dest"] for ref in response["txn_refs"]] == ["+6594440000", "+6594440001", "+6594440002"]
    assert [forms[ref]["call_status_dest"] for ref in response["txn_refs"]] == ["answered", "unanswered", "answered"]
    generated = api("conference/call", dest="+6594440003")
    assert generated["room"].startswith("R")


def test_query_status_of_an_ivr_call(served, receiver):
    fake, api = served()
    sid = call(fake, receiver)
    txn_ref = fake.sessions[sid].txn_ref
    status = api("voice/query_status", txn_ref=txn_ref)
    assert status["call_status_dest1"] == "ongoing" and status["dest1"] == "+6591234567"
    api("ivr/middle/play", session=sid, msg="hi", tag="x")
    fake.wait_until_ended(sid)
    status = api("voice/query_status", txn_ref=txn_ref)
    assert status["call_status_dest1"] == "answered" and status["duration"] == "1" and status["tag"] == "x"


def test_ask_supplies_keys_interactively(served, receiver):
    fake, api = served()
    asked = []

    def ask(session, block):
        asked.append((session, block.name, block.params["msg"]))
        return "4x2#9"

    sid = call(fake, receiver, CallerScript(keys=["1"], ask=ask))
    for msg in ("first", "second"):
        api("ivr/middle/gather", session=sid, msg=msg, notify_url=receiver.url())
        fake.wait_ready(sid)
    assert [p.form["digits"] for p in receiver.posts[1:]] == ["1", "42"]
    assert asked == [(sid, "gather", "second")]
