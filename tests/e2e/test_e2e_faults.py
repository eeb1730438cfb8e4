"""Hoiio failures injected into real calls: the caller is never left in silence.

The engine runs under gunicorn (SQLite); the strict fake Hoiio runs in this process and answers one
request with an injected fault (``FakeHoiio.inject``: a documented error status, a dropped
connection, an answer slower than the client's read timeout). After each fault one of these holds:

* the flow goes on as if nothing happened (retryable statuses succeed on the client's retry);
* the flow reaches its error handler (``on_error``) or the transfer's ``failed`` exit, and the call
  ends with a block the caller hears;
* Hoiio said the session is over, and the call is recorded as over (nothing more is sent).

Each test also checks that the worker stays healthy (/healthz and /readyz answer 200).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from e2e_support import Server, wait_recorded, wait_until

from engine.fakes import STATUSES, CallerScript, FakeHoiio
from engine.storage import Database

pytestmark = pytest.mark.slow

ACME_MAIN = "+6531580000"
CONFERENCE = "+6531580010"
FLORIST_OPEN = "+6531580021"  # the always-open copy of small_business (conftest)
CALL_TIMEOUT = 15.0

#: Statuses the client retries at once (with backoff): injected once, the retry succeeds.
RETRYABLE = frozenset({"error_rate_limit_exceeded", "error_internal_server_error", "error_session_not_ready"})
#: Statuses saying the session no longer exists: the call is over, nothing more may be sent.
SESSION_OVER = frozenset({"error_session_ended", "error_invalid_session", "error_session_access_denied"})
#: Statuses about the destination of a transfer.
DESTINATION = (
    "error_dest_invalid", "error_dest_not_supported", "error_number_not_supported", "error_caller_id_invalid",
    "error_insufficient_credit", "error_concurrent_call_limit_reached", "error_not_allowed_for_trial",
    "error_call_service_not_available",
)  # fmt: skip
ERROR_STATUSES = sorted(status for status in STATUSES if status != "success_ok")

#: auto_attendant, caller presses 1 and sales answers
SALES = (("welcome", "play"), ("main_menu", "gather"), ("sales", "transfer"))
#: auto_attendant's error handler
TECHNICAL_PROBLEM = ("technical_problem", "hangup")


@dataclass
class Call:
    session: str
    ended: Any  # the fake's snapshot once the session ended, None if it did not
    row: Any
    blocks: list
    requests: list


@pytest.fixture(autouse=True)
def no_faults_left(fake_hoiio: FakeHoiio) -> Iterator[None]:
    fake_hoiio.clear_faults()
    yield
    fake_hoiio.clear_faults()


@pytest.fixture(autouse=True)
def worker_stays_healthy(sqlite_server: Server) -> Iterator[None]:
    yield
    assert sqlite_server.get("/healthz").status_code == 200
    assert sqlite_server.get("/readyz").status_code == 200


def call(
    fake: FakeHoiio, server: Server, db: Database, *, number: str = ACME_MAIN, keys=("1",), transfers=(),
    must_end: bool = True, settle: float = 0.0,
) -> Call:
    """Place a call and let it run. With ``must_end`` the fake's session has to end within the
    timeout; otherwise the call is given ``settle`` seconds, then the caller hangs up (cleanup)."""
    sid = fake.incoming_call(f"{server.url}/hoiio/answer", to=number,
                             script=CallerScript(keys=keys, transfers=transfers))
    ended = None
    try:
        ended = fake.wait_until_ended(sid, timeout=CALL_TIMEOUT if must_end else settle)
    except TimeoutError:
        if must_end:
            fake.hangup_caller(sid)
            raise
    if ended is None:
        fake.wait_idle(timeout=CALL_TIMEOUT)
        fake.hangup_caller(sid)
    wait_recorded(db, sid)
    requests_ = [r for r in fake.log if r.params.get("session") == sid]
    return Call(sid, ended, db.get_call(sid), db.blocks_for(sid), requests_)


def kinds(c: Call) -> list[tuple[str, str]]:
    return [(b.node, b.kind) for b in c.blocks]


def wait_for_call_row(db: Database, sid: str, status: str) -> Any:
    return wait_until(lambda: (row := db.get_call(sid)) is not None and row.status == status and row,
                      CALL_TIMEOUT, f"call {sid} to be {status}")


# ------------------------------------------------------------------------------------------ every status


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_status_on_the_first_block(
    status: str, fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """Every documented error status, answered once to the call's first block (a play)."""
    fake_hoiio.inject("ivr/middle/play", status=status, times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db, must_end=status not in SESSION_OVER, settle=0.5)
    first = c.requests[0]
    assert (first.endpoint, first.status, first.fault) == ("ivr/middle/play", status, "status")

    if status in RETRYABLE:
        # retried at once and accepted: the caller notices nothing
        assert kinds(c) == list(SALES)
        assert c.blocks[0].attempts == 2 and c.blocks[0].status == "sent"
        assert [r.status for r in c.requests] == [status, "success_ok", "success_ok", "success_ok"]
        assert c.row.outcome == "transferred"
    elif status in SESSION_OVER:
        # Hoiio says the session is gone: recorded as over, nothing more sent
        row = wait_for_call_row(sqlite_db, c.session, "ended")
        assert row.outcome == "provider ended session"
        assert kinds(c) == [("welcome", "play")]
        assert (c.blocks[0].status, c.blocks[0].provider_status) == ("failed", status)
        assert len(c.requests) == 1
    else:
        # the flow's error handler speaks to the caller and hangs up
        assert kinds(c) == [("welcome", "play"), TECHNICAL_PROBLEM]
        assert (c.blocks[0].status, c.blocks[0].provider_status) == ("failed", status)
        assert [r.status for r in c.requests] == [status, "success_ok"]
        assert "technical problems" in c.requests[1].params["msg"]
        assert c.ended is not None and c.ended.end_reason == "hangup"
        # the on_error node's own hangup: "hung up by flow", with the failure in the call's path
        assert c.row.outcome == "hung up by flow"
        assert c.row.state["errors"] == 1
        assert ["welcome", "error"] in [list(p) for p in c.row.state["path"]]
    assert c.row.status == "ended"


@pytest.mark.parametrize(("number", "endpoint", "keys", "blocks"), [
    (ACME_MAIN, "ivr/middle/play", ("1",), [("welcome", "play"), TECHNICAL_PROBLEM]),
    (CONFERENCE, "ivr/middle/gather", ("2",), [("welcome", "gather"), ("sorry", "hangup")]),
    (FLORIST_OPEN, "ivr/middle/gather", ("0",), [("main_menu", "gather"), ("sorry", "hangup")]),
], ids=["auto_attendant", "conference_incoming", "small_business_open"])  # fmt: skip
def test_each_flow_reaches_its_error_handler(
    number: str, endpoint: str, keys, blocks, fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """A refused first block sends every inbound example flow to its own on_error node."""
    fake_hoiio.inject(endpoint, status="error_msg_invalid_xml", times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db, number=number, keys=keys)
    assert kinds(c) == blocks
    assert c.requests[-1].params["msg"]  # the caller hears why the call ends
    assert c.row.status == "ended" and c.row.outcome == "hung up by flow" and c.row.state["errors"] == 1
    assert c.ended.end_reason == "hangup"


def test_retryable_status_that_persists_goes_to_the_error_handler(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """error_session_not_ready on every attempt the client makes: the error handler, not silence."""
    fake_hoiio.inject("ivr/middle/play", status="error_session_not_ready", times=4)
    c = call(fake_hoiio, sqlite_server, sqlite_db)
    assert kinds(c) == [("welcome", "play"), TECHNICAL_PROBLEM]
    assert c.blocks[0].provider_status == "error_session_not_ready"
    assert 2 <= c.blocks[0].attempts <= 4
    assert c.row.outcome == "hung up by flow" and c.row.state["errors"] == 1
    assert c.ended.end_reason == "hangup"


# ------------------------------------------------------------------------------------------ transfers


@pytest.mark.parametrize("status", DESTINATION)
def test_refused_transfer_takes_the_failed_exit(
    status: str, fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """auto_attendant: the transfer to sales is refused; its failed exit offers voicemail."""
    fake_hoiio.inject("ivr/end/transfer", status=status, times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db)
    assert kinds(c) == [*SALES, ("nobody_free", "play"), ("voicemail", "record"), ("goodbye", "hangup")]
    assert (c.blocks[2].status, c.blocks[2].provider_status) == ("failed", status)
    assert c.row.state["call"]["transfer_status"] == status
    assert c.row.outcome == "hung up by flow"
    assert c.ended.end_reason == "hangup"


def test_refused_room_transfer_takes_the_failed_exit(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    fake_hoiio.inject("ivr/end/transfer", status="error_dest_invalid", times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db, number=CONFERENCE, keys=("2",))
    assert kinds(c) == [("welcome", "gather"), ("team_room", "transfer"), ("room_failed", "hangup")]
    assert c.row.outcome == "hung up by flow"


def test_session_ended_on_a_transfer_ends_the_call(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    fake_hoiio.inject("ivr/end/transfer", status="error_session_ended", times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db, must_end=False, settle=0.5)
    row = wait_for_call_row(sqlite_db, c.session, "ended")
    assert row.outcome == "provider ended session"
    assert kinds(c) == list(SALES)
    assert len(c.requests) == 3


# ------------------------------------------------------------------------------------------ transport


def test_connection_dropped_after_hoiio_carried_out_the_block(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """The play reached Hoiio but the answer was lost: not resent (it would play twice); the play's
    notification arrives and the flow goes on."""
    fake_hoiio.inject("ivr/middle/play", drop=True, processed=True, times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db)
    assert kinds(c) == list(SALES)
    assert (c.blocks[0].status, c.blocks[0].provider_status, c.blocks[0].attempts) == ("unknown", "error_connection", 1)
    assert [r.endpoint for r in c.requests] == ["ivr/middle/play", "ivr/middle/gather", "ivr/end/transfer"]
    assert c.row.outcome == "transferred"


def test_answer_slower_than_the_read_timeout(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """Hoiio answers the play after 5.5 s, later than the client's 5 s read timeout: the client gives
    up without resending (the play may be running), and the flow goes on when its notification
    comes."""
    fake_hoiio.inject("ivr/middle/play", delay=5.5, times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db)
    assert kinds(c) == list(SALES)
    assert (c.blocks[0].status, c.blocks[0].provider_status) == ("unknown", "error_timeout")
    assert len([r for r in c.requests if r.endpoint == "ivr/middle/play"]) == 1
    assert c.row.outcome == "transferred"


def test_connection_dropped_on_a_hangup_is_retried(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """Hangup is idempotent: a dropped connection (request not carried out) is simply sent again."""
    fake_hoiio.inject("ivr/end/hangup", drop=True, times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db, keys=("0",))
    assert kinds(c)[-1] == ("goodbye", "hangup")
    assert c.blocks[-1].attempts == 2 and c.blocks[-1].status == "sent"
    hangups = [r for r in c.requests if r.endpoint == "ivr/end/hangup"]
    assert [(r.status, r.fault) for r in hangups] == [(None, "dropped"), ("success_ok", None)]
    assert c.row.outcome == "hung up by flow"
    assert c.ended.end_reason == "hangup"


def test_connection_dropped_on_a_processed_hangup(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """The hangup went through but its answer was lost: the resend hears error_session_ended; either
    way the call is over and the caller heard the goodbye."""
    fake_hoiio.inject("ivr/end/hangup", drop=True, processed=True, times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db, keys=("0",))
    assert kinds(c)[-1] == ("goodbye", "hangup")
    assert c.ended.end_reason == "hangup"
    row = wait_for_call_row(sqlite_db, c.session, "ended")
    assert row.outcome in ("hung up by flow", "provider ended session")


def test_connection_dropped_before_hoiio_carried_out_the_block(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """The play never reached Hoiio's IVR (the connection dropped first): the caller must not be
    left in silence; within a few seconds the engine has to resend, or hand the call to the error
    handler, or end it."""
    fake_hoiio.inject("ivr/middle/play", drop=True, times=1)
    c = call(fake_hoiio, sqlite_server, sqlite_db, must_end=True)
    assert c.ended is not None or c.row.status == "ended", (
        f"call {c.session} is still {c.row.status} at node {c.row.node}; blocks: "
        f"{[(b.kind, b.status, b.provider_status) for b in c.blocks]}"
    )
