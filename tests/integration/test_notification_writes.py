"""What one notification writes, and in how many transactions (SQLite and PostgreSQL).

The request path stores the raw notification, the claim of its dedupe key, the call's new state
and the outbox in one transaction, and the provider's answers with the outcome in a second one,
written behind (none when nothing was sent; under load one commit carries many). Whatever
happens, the notification ends up stored exactly once, with its outcome: these tests count commits
and read back the rows.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa

from engine.core import interpreter
from engine.providers.hoiio.signature import sign_body
from tests.integration.conftest import TOKEN


class Commits:
    """Counts committed write transactions (read-only ones, ``db.reading()``, are not counted),
    and statements committed on their own, which count as one each."""

    def __init__(self, *engines: sa.Engine) -> None:
        self.count = 0
        self._engines = set(engines)  # the Database's, and the one that writes results behind
        for engine in self._engines:
            sa.event.listen(engine, "commit", self._on_commit)
            sa.event.listen(engine, "before_cursor_execute", self._on_statement)

    def _on_commit(self, conn) -> None:
        if conn.get_execution_options().get("ivr_write", True):
            self.count += 1

    def _on_statement(self, conn, *_args) -> None:
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            self.count += 1

    def close(self) -> None:
        for engine in self._engines:
            sa.event.remove(engine, "commit", self._on_commit)
            sa.event.remove(engine, "before_cursor_execute", self._on_statement)


@pytest.fixture
def commits(harness):
    counter = Commits(harness.db.engine, harness.db.sent_engine)
    yield counter
    counter.close()


def _stored(harness, session: str):
    return list(reversed(harness.db.recent_notifications(100, session=session)))


def test_a_notification_that_sends_a_block_takes_two_commits(harness, commits):
    harness.answer("W1")
    assert harness.db.settle_sent(10)  # earlier notifications' results written behind
    commits.count = 0
    response = harness.reply("W1", "play")
    assert response.status_code == 200 and response.get_json()["blocks"]
    assert harness.db.settle_sent(10)
    assert commits.count == 2  # main transaction; then, written behind, the block's result with the outcome
    row = _stored(harness, "W1")[-1]
    assert row.outcome == "accepted" and row.step == harness.step_of(harness.notify_url("W1"))  # the step it led to
    assert b"ivr_block=play" in row.body and row.dedupe_key
    assert row.response["blocks"][0]["endpoint"] == "ivr/middle/gather"
    block = harness.db.blocks_for("W1")[-1]
    assert block.kind == "gather" and block.status == "sent" and block.provider_status == "success_ok"
    assert block.http_status == 200 and block.attempts == 1 and block.sent_at is not None


def test_a_notification_with_nothing_to_send_takes_one_commit(harness, commits):
    harness.answer("W2")
    harness.reply("W2", "play")
    harness.reply("W2", "gather", digits="9")  # invalid: asked again
    assert harness.db.settle_sent(10)  # earlier notifications' results written behind
    commits.count = 0
    response = harness.reply("W2", "gather", call_state="ended", date="2026-11-23 10:00:05", duration="1",
                             currency="SGD", rate="0.020", debit="0.020")
    assert response.status_code == 200 and response.get_json()["blocks"] == []
    assert commits.count == 1
    row = _stored(harness, "W2")[-1]
    assert row.outcome == "accepted" and row.response["call_status"] == "ended"
    assert harness.db.get_call("W2").status == "ended"


def test_a_redelivery_is_stored_once_more_as_duplicate_in_one_commit(harness, commits):
    harness.answer("W3")
    url = harness.notify_url("W3")
    harness.reply("W3", "play", url=url)
    assert harness.db.settle_sent(10)  # earlier notifications' results written behind
    commits.count = 0
    again = harness.reply("W3", "play", url=url)
    assert again.get_json()["status"] == "ignored"
    assert commits.count == 1
    first, second = _stored(harness, "W3")[-2:]
    assert (first.outcome, second.outcome) == ("accepted", "duplicate")
    assert first.body == second.body and first.dedupe_key and second.dedupe_key is None


def test_a_refused_notification_is_stored_with_its_outcome_in_one_commit(harness, commits):
    harness.answer("W4")
    url = harness.notify_url("W4")
    assert harness.db.settle_sent(10)  # earlier notifications' results written behind
    commits.count = 0
    forged = harness.reply("W4", "play", url=url.replace("sig=", "sig=0"))
    assert forged.status_code == 403
    assert commits.count == 1
    row = _stored(harness, "W4")[-1]
    assert row.outcome == "refused" and b"ivr_block=play" in row.body and row.duration_ms is not None


def test_a_notification_whose_transaction_fails_is_still_stored(harness, commits, monkeypatch):
    harness.answer("W5")
    url = harness.notify_url("W5")
    before = harness.db.get_call("W5")

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug in the interpreter")

    monkeypatch.setattr(interpreter, "step", broken)
    assert harness.db.settle_sent(10)  # earlier notifications' results written behind
    commits.count = 0
    response = harness.reply("W5", "play", url=url)
    assert response.status_code == 500
    assert commits.count == 1  # the main transaction rolled back; the request is stored on its own
    row = _stored(harness, "W5")[-1]
    assert row.outcome == "error" and row.reason == "RuntimeError" and b"ivr_block=play" in row.body
    assert row.dedupe_key is None  # the claim rolled back with the state change
    after = harness.db.get_call("W5")
    assert (after.step, after.row_version) == (before.step, before.row_version)
    monkeypatch.undo()
    retried = harness.reply("W5", "play", url=url)  # the same notification again now goes through
    assert retried.status_code == 200 and retried.get_json()["blocks"]


class ClaimCommits:
    """Counts the commits that stored at least one notification's claim (its main transaction)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self._open: set[int] = set()
        self._engine = engine
        sa.event.listen(engine, "before_cursor_execute", self._on_statement)
        sa.event.listen(engine, "commit", self._on_commit)

    def _on_statement(self, conn, _cursor, statement, *_args) -> None:
        if "INSERT INTO notifications" in statement:
            self._open.add(id(conn))

    def _on_commit(self, conn) -> None:
        if id(conn) in self._open:
            self._open.discard(id(conn))
            self.count += 1

    def close(self) -> None:
        sa.event.remove(self._engine, "before_cursor_execute", self._on_statement)
        sa.event.remove(self._engine, "commit", self._on_commit)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_notifications_arriving_together_share_one_commit(harness):
    """Group commit: notifications whose main transactions wait for the write lock are written in
    one transaction; each still gets its own answer, and a redelivery among them is a duplicate."""
    sessions = [f"G{n}" for n in range(6)]
    for session in sessions:
        harness.answer(session)
        harness.reply(session, "play")  # now at the menu
    urls = {session: harness.notify_url(session) for session in sessions}
    assert harness.db.settle_sent(10)
    claims = ClaimCommits(harness.db.engine)
    answers: dict[str, list] = {session: [] for session in sessions}

    def post(session: str) -> None:
        client = harness.app.test_client()
        parts = urlsplit(urls[session])
        fields = {"ivr_block": "gather", "session": session, "txn_ref": f"AA-{session}", "call_state": "ongoing",
                  "from": "+6591234567", "to": "+6560000001", "tag": "", "digits": "1"}
        body = urlencode(fields).encode()
        answers[session].append(client.post(f"{parts.path}?{parts.query}", data=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Hoiio-Signature": sign_body(body, TOKEN)}))

    holder = sqlite3.connect(harness.db.url.database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock meanwhile
    threads = [threading.Thread(target=post, args=(session,)) for session in [*sessions, "G0"]]  # G0 twice
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(harness.db._group.pending) < len(threads):
            assert time.monotonic() < deadline, "the notifications never queued for the write"
            time.sleep(0.005)
    finally:
        holder.execute("COMMIT")
        holder.close()
    for thread in threads:
        thread.join(10)
    try:
        assert claims.count == 1  # seven main transactions in one commit
    finally:
        claims.close()
    for session in sessions[1:]:
        (response,) = answers[session]
        assert response.status_code == 200 and response.get_json()["status"] == "ok"
    first, second = sorted(answers["G0"], key=lambda r: r.get_json()["status"])
    assert (first.get_json()["status"], second.get_json()["status"]) == ("ignored", "ok")
    assert first.get_json()["reason"] == "this notification was already handled"
    asked = [params["session"] for _endpoint, params in harness.hoiio.requests
             if params.get("msg") == "Enter your four digit PIN."]
    assert sorted(asked) == sessions  # each call moved on once, the redelivered one too
    assert harness.db.settle_sent(10)
    outcomes = [row.outcome for row in _stored(harness, "G0")[-2:]]
    assert sorted(outcomes) == ["accepted", "duplicate"]


class RoundTrips:
    """PostgreSQL: the times this thread waits for the server: each statement sent alone, each
    pipeline (whatever it holds), each round trip of the direct path (``engine.storage.direct``),
    each COMMIT or ROLLBACK psycopg sends. Other threads (the writer of results written behind) are
    not counted."""

    def __init__(self, monkeypatch) -> None:
        import psycopg

        from engine.storage import direct

        real_round_trip = direct._round_trip

        def round_trip(pgconn, queries):
            counter.add()
            return real_round_trip(pgconn, queries)

        monkeypatch.setattr(direct, "_round_trip", round_trip)

        self.count = 0
        self.thread = threading.get_ident()
        counter = self
        real_execute, real_pipeline = psycopg.Cursor.execute, psycopg.Connection.pipeline
        real_commit, real_rollback = psycopg.Connection.commit, psycopg.Connection.rollback

        def execute(cursor, query, *args, **kwargs):
            if cursor.connection._pipeline is None:
                counter.add()
            return real_execute(cursor, query, *args, **kwargs)

        def pipeline(conn):
            if conn._pipeline is None:
                counter.add()
            return real_pipeline(conn)

        def ending(real):
            def end(conn):
                if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    counter.add()
                return real(conn)
            return end

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
        monkeypatch.setattr(psycopg.Connection, "pipeline", pipeline)
        monkeypatch.setattr(psycopg.Connection, "commit", ending(real_commit))
        monkeypatch.setattr(psycopg.Connection, "rollback", ending(real_rollback))

    def add(self) -> None:
        if threading.get_ident() == self.thread:
            self.count += 1

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_each_notification_takes_two_round_trips(harness, monkeypatch):
    harness.answer("R0")  # the pool's connection is made and its first ping is done
    trips = RoundTrips(monkeypatch)
    harness.answer("R1")
    assert trips.take() == 2  # BEGIN with request + call + block; COMMIT
    assert harness.reply("R1", "play").get_json()["blocks"]
    assert trips.take() == 2  # BEGIN with claim + lock (and results written behind); update + block + COMMIT
    response = harness.reply("R1", "gather", call_state="ended", date="2026-11-23 10:00:05", duration="1",
                             currency="SGD", rate="0.020", debit="0.020")
    assert response.get_json()["blocks"] == []
    assert trips.take() == 2  # BEGIN with claim + lock; update + the request's outcome + COMMIT
    assert harness.db.get_call("R1").status == "ended"
    assert _stored(harness, "R1")[-1].outcome == "accepted"
