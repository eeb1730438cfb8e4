"""Session rules of the fake Hoiio (in-process, notifications recorded without sockets)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from fake_hoiio_support import NOTIFY

from engine.fakes import CallerScript, CallLimitReached
from engine.fakes.hoiio_rules import SUCCESS

ANSWER = "http://engine.test/hoiio/answer"


def status(fake, endpoint, **params) -> str:
    return fake.call_api(endpoint, **params)["status"]


def slow(fake) -> None:
    """From now on blocks keep executing (their notifications wait 30 s; stop() cancels them)."""
    fake.notify_delay = 30.0


# --------------------------------------------------------------------------------------------------
# Which session


def test_unknown_session(fake):
    assert status(fake, "ivr/middle/play", session="S999", msg="hi") == "error_invalid_session"


def test_session_of_another_app(make_fake, answered):
    fake = make_fake(extra_apps={"second-app": "second-token"})
    sid = answered(on=fake)
    other = fake.call_api("ivr/middle/play", auth=False, app_id="second-app", access_token="second-token",
                          session=sid, msg="hi")  # fmt: skip
    assert other["status"] == "error_session_access_denied"


def test_ended_session(fake, answered):
    sid = answered()
    assert status(fake, "ivr/end/hangup", session=sid) == SUCCESS
    fake.wait_until_ended(sid)
    assert status(fake, "ivr/middle/play", session=sid, msg="hi") == "error_session_ended"
    assert status(fake, "ivr/end/hangup", session=sid, force="enabled") == "error_session_ended"


# --------------------------------------------------------------------------------------------------
# Readiness


def test_not_ready_until_the_previous_notification_is_posted(fake, answered, recorder):
    sid = answered()
    slow(fake)
    assert status(fake, "ivr/middle/play", session=sid, msg="one", notify_url=NOTIFY) == SUCCESS
    assert fake.sessions[sid].waiting
    assert status(fake, "ivr/middle/play", session=sid, msg="two", notify_url=NOTIFY) == "error_session_not_ready"
    assert status(fake, "ivr/end/hangup", session=sid) == "error_session_not_ready"
    assert fake.sessions[sid].block_names == ("play",)


def test_ready_once_the_notification_is_posted(fake, answered):
    sid = answered()
    assert status(fake, "ivr/middle/play", session=sid, msg="one", notify_url=NOTIFY) == SUCCESS
    fake.wait_ready(sid)
    assert status(fake, "ivr/middle/play", session=sid, msg="two", notify_url=NOTIFY) == SUCCESS


def test_not_ready_before_the_answer_is_posted(make_fake):
    fake = make_fake(notify_delay=30.0)
    sid = fake.incoming_call(ANSWER)
    assert status(fake, "ivr/middle/play", session=sid, msg="hi") == "error_session_not_ready"


def test_next_block_may_be_sent_from_inside_the_webhook(make_fake):
    """The session is ready as soon as the notification is posted, before the receiver answers."""
    answers: list[str] = []
    fakes = []

    def engine(url, body, headers):
        form = dict(parse_qsl(body.decode()))
        if form["ivr_block"] == "answer":
            answers.append(fakes[0].call_api("ivr/middle/play", session=form["session"], msg="hi")["status"])
        return 200

    fake = make_fake(transport=engine)
    fakes.append(fake)
    sid = fake.incoming_call(ANSWER)
    fake.wait_until_ended(sid)  # play without notify_url: the call ends after it
    assert answers == [SUCCESS]


# --------------------------------------------------------------------------------------------------
# Hold and unhold


def test_on_hold_only_unhold_is_accepted(fake, answered):
    sid = answered()
    assert status(fake, "ivr/middle/hold", session=sid, msg="<url>http://e.com/m.mp3</url>") == SUCCESS
    assert fake.sessions[sid].state == "on_hold"
    assert not fake.sessions[sid].waiting
    for endpoint, params in [
        ("ivr/middle/play", {"msg": "hi"}),
        ("ivr/middle/gather", {"notify_url": NOTIFY}),
        ("ivr/middle/hold", {}),
        ("ivr/end/transfer", {"dest": "+6592220000"}),
        ("ivr/end/hangup", {}),
    ]:
        assert status(fake, endpoint, session=sid, **params) == "error_session_not_ready", endpoint
    assert status(fake, "ivr/middle/unhold", session=sid, notify_url=NOTIFY) == SUCCESS
    assert fake.sessions[sid].state == "ongoing"


def test_hold_posts_nothing(fake, answered, recorder):
    sid = answered()
    before = len(recorder.sent)
    assert status(fake, "ivr/middle/hold", session=sid) == SUCCESS
    fake.wait_idle()
    assert len(recorder.sent) == before


def test_forced_hangup_is_accepted_on_hold(fake, answered):
    sid = answered()
    assert status(fake, "ivr/middle/hold", session=sid) == SUCCESS
    assert status(fake, "ivr/end/hangup", session=sid, force="enabled") == SUCCESS
    assert fake.wait_until_ended(sid).end_reason == "hangup"


def test_forced_hangup_is_accepted_mid_block_and_drops_its_notification(fake, answered, recorder):
    sid = answered()
    slow(fake)
    assert status(fake, "ivr/middle/play", session=sid, msg="long", notify_url=NOTIFY + "?b=play") == SUCCESS
    fake.notify_delay = 0.0
    assert status(fake, "ivr/end/hangup", session=sid, force="enabled", notify_url=NOTIFY + "?b=hangup") == SUCCESS
    fake.wait_until_ended(sid)
    urls = [url for url, _, _ in recorder.sent]
    assert urls[-1].endswith("?b=hangup")
    assert not any(url.endswith("?b=play") for url in urls)


def test_unhold_when_not_on_hold(fake, answered):
    sid = answered()
    assert status(fake, "ivr/middle/unhold", session=sid, notify_url=NOTIFY) == "error_session_not_on_hold"


# --------------------------------------------------------------------------------------------------
# End blocks


def test_nothing_after_hangup_even_before_its_notification(fake, answered):
    sid = answered()
    slow(fake)
    assert status(fake, "ivr/end/hangup", session=sid, notify_url=NOTIFY) == SUCCESS
    assert status(fake, "ivr/middle/play", session=sid, msg="hi") == "error_session_ended"
    assert status(fake, "ivr/end/hangup", session=sid, force="enabled") == "error_session_ended"


def test_nothing_after_an_answered_transfer(fake, answered):
    sid = answered(CallerScript(transfers=["answered"]))
    assert status(fake, "ivr/end/transfer", session=sid, dest="+6592220000", notify_url=NOTIFY) == SUCCESS
    fake.wait_until_ended(sid)
    assert status(fake, "ivr/middle/play", session=sid, msg="hi") == "error_session_ended"


@pytest.mark.parametrize("outcome", ["busy", "unanswered", "failed"])
def test_failed_transfer_with_continue_keeps_the_session(fake, answered, outcome):
    sid = answered(CallerScript(transfers=[outcome]))
    assert status(fake, "ivr/end/transfer", session=sid, dest="+6592220000", on_failure="continue",
                  notify_url=NOTIFY) == SUCCESS  # fmt: skip
    snapshot = fake.wait_ready(sid)
    assert snapshot.state == "ongoing"
    assert status(fake, "ivr/middle/play", session=sid, msg="sorry", notify_url=NOTIFY) == SUCCESS


@pytest.mark.parametrize("on_failure", [None, "hangup"])
def test_failed_transfer_with_hangup_ends_the_session(fake, answered, on_failure):
    sid = answered(CallerScript(transfers=["busy"]))
    extra = {"on_failure": on_failure} if on_failure else {}
    assert status(fake, "ivr/end/transfer", session=sid, dest="+6592220000", notify_url=NOTIFY, **extra) == SUCCESS
    assert fake.wait_until_ended(sid).end_reason == "transfer_busy"
    assert status(fake, "ivr/middle/play", session=sid, msg="hi") == "error_session_ended"


def test_blocks_during_a_transfer(fake, answered):
    """While a transfer runs: with on_failure=hangup it can only end; with continue it may come back."""
    ending, coming_back = answered(), answered()
    slow(fake)
    assert status(fake, "ivr/end/transfer", session=ending, dest="+6592220000", notify_url=NOTIFY) == SUCCESS
    assert status(fake, "ivr/end/transfer", session=coming_back, dest="+6592220001", on_failure="continue",
                  notify_url=NOTIFY) == SUCCESS  # fmt: skip
    assert status(fake, "ivr/middle/play", session=ending, msg="hi") == "error_session_ended"
    assert status(fake, "ivr/middle/play", session=coming_back, msg="hi") == "error_session_not_ready"


def test_block_without_notify_url_ends_the_call_after_it(fake, answered, recorder):
    sid = answered()
    before = len(recorder.sent)
    assert status(fake, "ivr/middle/play", session=sid, msg="bye") == SUCCESS
    assert fake.wait_until_ended(sid).end_reason == "no_notify_url"
    assert len(recorder.sent) == before


def test_monitor_twice(fake, answered):
    sid = answered()
    assert status(fake, "ivr/middle/monitor", session=sid, notify_url=NOTIFY) == SUCCESS
    fake.wait_ready(sid)
    assert status(fake, "ivr/middle/monitor", session=sid, notify_url=NOTIFY) == "error_monitor_in_progress"


def test_first_block_answers_the_call_and_hangup_first_rejects_it(fake, answered):
    taken, rejected = answered(), answered()
    assert fake.sessions[taken].state == "ringing"
    assert status(fake, "ivr/middle/play", session=taken, msg="hi", notify_url=NOTIFY) == SUCCESS
    assert fake.sessions[taken].state == "ongoing"
    assert status(fake, "ivr/end/hangup", session=rejected, notify_url=NOTIFY) == SUCCESS
    fake.wait_until_ended(rejected)
    assert fake.notifications[-1].fields["duration"] == "0"


# --------------------------------------------------------------------------------------------------
# Concurrent calls


def fill(fake, count: int) -> list[str]:
    return [fake.incoming_call(ANSWER, caller=f"+659100000{i}") for i in range(count)]


def test_eight_concurrent_calls(fake):
    sessions = fill(fake, 8)
    assert fake.active_calls() == 8
    with pytest.raises(CallLimitReached):
        fake.incoming_call(ANSWER)
    assert status(fake, "ivr/start/dial", dest="+6591110000", notify_url=NOTIFY) == (
        "error_concurrent_call_limit_reached"
    )
    assert status(fake, "voice/call", dest2="+6593330000") == "error_concurrent_call_limit_reached"
    assert status(fake, "conference/call", dest="+6594440000") == "error_concurrent_call_limit_reached"
    fake.wait_ready(sessions[0])
    assert status(fake, "ivr/end/hangup", session=sessions[0], force="enabled") == SUCCESS
    fake.wait_until_ended(sessions[0])
    assert status(fake, "ivr/start/dial", dest="+6591110000", notify_url=NOTIFY) == SUCCESS


def test_conference_needs_a_line_per_number(fake):
    fill(fake, 7)
    assert status(fake, "conference/call", dest="+6594440000,+6594440001") == "error_concurrent_call_limit_reached"
    assert status(fake, "conference/call", dest="+6594440000") == SUCCESS


def test_transfer_to_a_number_needs_a_line_but_a_room_does_not(fake):
    sessions = fill(fake, 8)
    sid = sessions[0]
    fake.wait_ready(sid)
    assert status(fake, "ivr/end/transfer", session=sid, dest="+6592220000") == "error_concurrent_call_limit_reached"
    assert status(fake, "ivr/end/transfer", session=sid, dest="room:lobby") == SUCCESS


def test_the_limit_is_configurable(make_fake):
    fake = make_fake(call_limit=1)
    fill(fake, 1)
    with pytest.raises(CallLimitReached):
        fake.incoming_call(ANSWER)


# --------------------------------------------------------------------------------------------------
# txn_ref based endpoints


def test_unknown_txn_ref(fake):
    for endpoint, extra in [
        ("voice/query_status", {}),
        ("voice/hangup", {}),
        ("conference/moderate", {"action": "kick"}),
    ]:
        assert status(fake, endpoint, txn_ref="AA-C-1", **extra) == "error_invalid_txn_ref"


def test_txn_ref_of_another_app(make_fake):
    fake = make_fake(extra_apps={"second-app": "second-token"})
    txn_ref = fake.call_api("voice/call", dest2="+6593330000")["txn_ref"]
    other = fake.call_api("voice/query_status", auth=False, app_id="second-app", access_token="second-token",
                          txn_ref=txn_ref)  # fmt: skip
    assert other["status"] == "error_txn_ref_access_denied"


def test_moderate_needs_a_conference_participant(fake):
    txn_ref = fake.call_api("voice/call", dest2="+6593330000")["txn_ref"]
    assert status(fake, "conference/moderate", txn_ref=txn_ref, action="mute") == "error_invalid_txn_ref"


def test_moderate_mute_kick(fake, recorder):
    fake.script_outbound(CallerScript(stay_on_line=True))
    txn_ref = fake.call_api("conference/call", dest="+6594440000", notify_url=NOTIFY)["txn_refs"][0]
    fake.wait_idle()
    assert fake.calls[txn_ref].active
    assert status(fake, "conference/moderate", txn_ref=txn_ref, action="mute") == SUCCESS
    assert fake.calls[txn_ref].muted
    assert status(fake, "conference/moderate", txn_ref=txn_ref, action="unmute") == SUCCESS
    assert not fake.calls[txn_ref].muted
    assert status(fake, "conference/moderate", txn_ref=txn_ref, action="kick") == SUCCESS
    fake.wait_idle()
    assert not fake.calls[txn_ref].active
    assert fake.notifications[-1].fields["call_status_dest"] == "answered"
    assert status(fake, "conference/moderate", txn_ref=txn_ref, action="kick") == SUCCESS  # already gone


def test_moderate_a_caller_transferred_into_a_room(fake, answered):
    sid = answered(CallerScript(stay_on_line=True))
    response = fake.call_api("ivr/end/transfer", session=sid, dest="room:", notify_url=NOTIFY)
    room = response["room"]
    fake.wait_ready(sid)
    txn_ref = fake.sessions[sid].txn_ref
    assert fake.rooms[room] == {txn_ref}
    assert status(fake, "conference/moderate", txn_ref=txn_ref, action="kick") == SUCCESS
    snapshot = fake.wait_until_ended(sid)
    assert snapshot.end_reason == "transferred"
    assert fake.notifications[-1].fields["transfer_status"] == "answered"
    assert fake.rooms[room] == frozenset()
