"""Sent blocks' results written behind (``Database.record_sent``), on SQLite and PostgreSQL: the
caller never waits for a commit, one commit carries many results, reads see them, an outage keeps
them, a refused one is dropped alone, and nothing queued is lost at close or at exit."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from storage_helpers import insert_call

from engine.storage import Database
from engine.storage.db import READ_ONLY
from engine.storage.tables import notifications

ROOT = Path(__file__).resolve().parents[3]


def _sent_block(database: Database, session: str) -> tuple[dict, dict]:
    insert_call(database, session)
    with database.transaction() as tx:
        tx.add_block(session, 1, "menu", "gather", "ivr/middle/gather", {"msg": "x"}, status="sending")
        notification_id, _ = tx.record_claimed(f"key-{session}", "POST /hoiio/notify", "POST", session=session)
    mark = {"session": session, "step": 1, "status": "sent", "http_status": 200, "provider_status": "success_ok",
            "response": {"status": "success_ok"}, "duration_ms": 2, "attempts": 1, "error": None}
    return [mark], {"notification_id": notification_id, "outcome": "accepted", "step": 1}


class _Hold:
    """The database held by a writer outside this ``Database``: SQLite's write lock (an sqlite3
    shell, say), or every block row locked on PostgreSQL. ``release`` may come from any thread."""

    def __init__(self, url: str) -> None:
        self.url = sa.engine.make_url(url)
        if self.url.get_backend_name() == "sqlite":
            self.conn = sqlite3.connect(self.url.database, isolation_level=None, check_same_thread=False)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            self.conn = psycopg.connect(self.url.set(drivername="postgresql").render_as_string(False))
            self.conn.execute("SELECT id FROM blocks FOR UPDATE")

    def release(self) -> None:
        self.conn.commit() if not isinstance(self.conn, sqlite3.Connection) else self.conn.execute("COMMIT")
        self.conn.close()


@contextmanager
def _held(database: Database) -> Iterator[_Hold]:
    hold = _Hold(database.url.render_as_string(False))
    try:
        yield hold
    finally:
        hold.release()


def _stored(database: Database, session: str, notification_id: int) -> tuple[str, str | None]:
    """The block's status and the notification's outcome, read on a connection of their own (no
    waiting for the queue)."""
    with database.engine.connect() as conn:
        conn.execution_options(**READ_ONLY)
        status = conn.execute(sa.text("SELECT status FROM blocks WHERE session = :s"), {"s": session}).scalar()
        outcome = conn.execute(sa.text("SELECT outcome FROM notifications WHERE id = :i"),
                               {"i": notification_id}).scalar()
    return status, outcome


def _count_commits(database: Database) -> list[int]:
    """Commits on the ``Database``'s connections, those that write results behind included, and
    statements committed on their own."""
    count = [0]

    def on_statement(conn, *_args) -> None:
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            count[0] += 1

    for engine in {database.engine, database.sent_engine}:
        sa.event.listen(engine, "commit", lambda _conn: count.__setitem__(0, count[0] + 1))
        sa.event.listen(engine, "before_cursor_execute", on_statement)
    return count


def test_the_caller_does_not_wait_for_the_commit(db):
    marks, finish = _sent_block(db, "S1")
    with _held(db):
        db.record_sent(marks, finish)  # returns while the database is held ...
        assert _stored(db, "S1", finish["notification_id"]) == ("sending", None)  # ... nothing written yet
    assert db.settle_sent(10)
    assert _stored(db, "S1", finish["notification_id"]) == ("sent", "accepted")


def test_a_read_made_while_the_writes_are_pending_sees_them(db):
    marks, finish = _sent_block(db, "S1")
    results: list = []
    with _held(db):
        db.record_sent(marks, finish)
        reader = threading.Thread(target=lambda: results.append(db.get_notification(finish["notification_id"])))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive()  # it waits for the queued result ...
    reader.join(10)
    assert results[0].outcome == "accepted"  # ... and then sees it


def test_one_commit_carries_the_results_of_many_notifications(db):
    sent = [_sent_block(db, f"S{n}") for n in range(10)]
    commits = _count_commits(db)
    with _held(db):
        for marks, finish in sent:
            db.record_sent(marks, finish)
    assert db.settle_sent(10)
    assert commits[0] <= 2  # the writer's first transaction may have started with the first one alone
    assert all(_stored(db, marks[0]["session"], finish["notification_id"]) == ("sent", "accepted")
               for marks, finish in sent)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_the_next_write_transaction_carries_them(db):
    marks, finish = _sent_block(db, "S1")
    commits = _count_commits(db)
    entered, release = threading.Event(), threading.Event()

    def hold_turn() -> None:
        with db.transaction() as tx:
            tx.lock_call("nobody")
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold_turn)
    holder.start()
    assert entered.wait(5)
    db.record_sent(marks, finish)  # the writer thread now waits for the turn ...
    release.set()
    holder.join(10)
    assert db.settle_sent(10)
    assert commits[0] == 1  # ... but the holder's commit wrote it
    assert _stored(db, "S1", finish["notification_id"]) == ("sent", "accepted")


def test_a_result_that_cannot_be_stored_is_dropped_alone_and_logged(db, caplog):
    good1, bad, good2 = (_sent_block(db, session) for session in ("S1", "S2", "S3"))
    with caplog.at_level(logging.ERROR, logger="engine.storage"), _held(db):
        db.record_sent(*good1)
        db.record_sent(bad[0], {**bad[1], "outcome": "no-such-outcome"})
        db.record_sent(*good2)
    assert db.settle_sent(10)
    assert _stored(db, "S1", good1[1]["notification_id"]) == ("sent", "accepted")
    assert _stored(db, "S3", good2[1]["notification_id"]) == ("sent", "accepted")
    assert _stored(db, "S2", bad[1]["notification_id"]) == ("sending", None)
    assert any("dropped the result" in r.getMessage() and "S2" in r.getMessage() for r in caplog.records)
    later = _sent_block(db, "S4")  # nothing is left queued to poison later writes
    db.record_sent(*later)
    assert db.settle_sent(10) and _stored(db, "S4", later[1]["notification_id"]) == ("sent", "accepted")


def test_the_results_of_several_blocks_are_stored_with_their_notification(db):
    marks, finish = _sent_block(db, "S1")
    with db.transaction() as tx:
        tx.add_block("S1", 2, "menu", "play", "ivr/middle/play", {"msg": "y"}, status="sending")
    second = {**marks[0], "step": 2, "provider_status": "error_session_ended", "status": "failed"}
    db.record_sent([*marks, second], finish)
    blocks = {block.step: block for block in db.blocks_for("S1")}
    assert (blocks[1].status, blocks[2].status, blocks[2].provider_status) == ("sent", "failed", "error_session_ended")
    assert db.get_notification(finish["notification_id"]).outcome == "accepted"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_read_inside_a_write_transaction_does_not_wait_for_the_queue(database_url):
    database = Database.open(database_url, lock_timeout_ms=30_000)
    try:
        marks, finish = _sent_block(database, "S1")
        done = threading.Event()

        def write_then_read() -> None:
            with database.transaction() as tx:
                tx.lock_call("S1")
                database.record_sent(marks, finish)  # its writer now waits for this transaction's turn
                assert database.get_call("S1") is not None  # so this read must not wait for the queue
            done.set()

        worker = threading.Thread(target=write_then_read)
        worker.start()
        worker.join(10)  # a read waiting for the queue would hang for the 30 s lock timeout
        assert done.is_set()
        assert _stored(database, "S1", finish["notification_id"]) == ("sent", "accepted")  # carried by the commit
    finally:
        database.close()


def test_a_single_result_that_cannot_be_stored_is_dropped_and_logged(db, caplog):
    marks, finish = _sent_block(db, "S1")
    with caplog.at_level(logging.ERROR, logger="engine.storage"):
        db.record_sent(marks, {**finish, "outcome": "no-such-outcome"})  # alone: on PostgreSQL, autocommitted
        assert db.settle_sent(10)
    assert _stored(db, "S1", finish["notification_id"]) == ("sending", None)
    assert any("dropped the result" in r.getMessage() and "no-such-outcome" in r.getMessage()
               for r in caplog.records)


def test_a_database_outage_keeps_the_results_until_it_is_over(database_url, caplog):
    database = Database.open(database_url, auto_migrate=True, lock_timeout_ms=100)
    try:
        marks, finish = _sent_block(database, "S1")
        with caplog.at_level(logging.ERROR, logger="engine.storage"), _held(database):
            database.record_sent(marks, finish)
            assert not database.settle_sent(0.6)  # the lock timeout passes, more than once
            assert any("retrying" in r.getMessage() for r in caplog.records)
        assert database.settle_sent(10)
        assert _stored(database, "S1", finish["notification_id"]) == ("sent", "accepted")
    finally:
        database.close()


def test_close_writes_what_is_queued(database_url):
    database = Database.open(database_url, auto_migrate=True)
    marks, finish = _sent_block(database, "S1")
    hold = _Hold(database.url.render_as_string(False))
    database.record_sent(marks, finish)
    threading.Timer(0.3, hold.release).start()
    database.close()  # while the database is still held: it waits for the write
    again = Database(database_url)
    try:
        assert _stored(again, "S1", finish["notification_id"]) == ("sent", "accepted")
    finally:
        again.close()


_EXITING = """
import json, sys, threading
sys.path.insert(0, sys.argv[3])
from test_storage_sent import _Hold
from engine.storage import Database
db = Database(sys.argv[1])
marks, finish = json.loads(sys.argv[2])
hold = _Hold(sys.argv[1])
db.record_sent(marks, finish)
release = threading.Timer(0.3, hold.release)
release.daemon = True  # not waited for by the interpreter: only the exit's own wait remains
release.start()
sys.exit(0)
"""


def test_a_process_that_exits_writes_what_is_queued_first(database_url):
    database = Database.open(database_url, auto_migrate=True)
    try:
        marks, finish = _sent_block(database, "S1")
    finally:
        database.close()
    subprocess.run([sys.executable, "-c", _EXITING, database_url, json.dumps([marks, finish]),
                    str(Path(__file__).parent)], cwd=ROOT, check=True, timeout=60)
    again = Database(database_url)
    try:
        assert _stored(again, "S1", finish["notification_id"]) == ("sent", "accepted")
    finally:
        again.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_results_are_written_without_waiting_for_the_wal_flush(db):
    """Their commits do not wait for the disk (``synchronous_commit=off``, on connections of their
    own); every other write still does."""
    marks, finish = _sent_block(db, "S1")
    on_main, on_sent = [], []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: on_main.append(args[2]))
    sa.event.listen(db.sent_engine, "before_cursor_execute", lambda *args: on_sent.append(args[2]))
    db.record_sent(marks, finish)
    assert db.settle_sent(10)
    assert on_sent and not on_main  # written on the connections of their own
    assert _stored(db, "S1", finish["notification_id"]) == ("sent", "accepted")
    with db.sent_engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


# ---------------------------------------------------------------- PostgreSQL: carried by the next notification
@pytest.fixture
def carrying_db(database_url, monkeypatch) -> Iterator[Database]:
    """A PostgreSQL ``Database`` whose writer thread waits 30 s for a notification to carry the
    results (``SENT_LINGER_S``), so that the tests decide who writes them."""
    monkeypatch.setattr("engine.storage.db.SENT_LINGER_S", 30.0)
    database = Database.open(database_url, auto_migrate=True)
    try:
        yield database
    finally:
        database.close()


def _claiming(session: str, key: str, runs: list | None = None):
    """A notification's main transaction (``Database.write``): claim a request and lock the call;
    ``runs`` gets one item per run (the claimed id, or None if the claim raised)."""
    def body(tx):
        if runs is not None:
            runs.append(None)
        claimed_id, claimed, row = tx.claim_and_lock(key, "POST /hoiio/notify", "POST", session=session, lock=session)
        if runs is not None:
            runs[-1] = claimed_id
        return row.session
    return body


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_the_next_notification_carries_them_in_its_claims_round_trip(carrying_db):
    db = carrying_db
    marks, finish = _sent_block(db, "S1")
    insert_call(db, "S2")
    commits = _count_commits(db)
    on_main, on_sent = [], []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: on_main.append(args[2].split()[0]))
    sa.event.listen(db.sent_engine, "before_cursor_execute", lambda *args: on_sent.append(args[2]))
    db.record_sent(marks, finish)
    assert db.write(_claiming("S2", "k-S2")) == "S2"
    assert on_main == ["WITH", "WITH"]  # the claim, and the result riding with it (one pipeline)
    # stored by the notification's own commit, before any settling: the writer thread did nothing
    assert _stored(db, "S1", finish["notification_id"]) == ("sent", "accepted")
    assert on_sent == [] and commits[0] == 1 and db._sent.empty()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_notification_that_fails_gives_back_what_it_carried(carrying_db):
    db = carrying_db
    marks, finish = _sent_block(db, "S1")
    insert_call(db, "S2")
    db.record_sent(marks, finish)

    def failing(tx):
        _claiming("S2", "k-S2")(tx)
        raise LookupError("the notification's own fault")

    with pytest.raises(LookupError):
        db.write(failing)
    assert _stored(db, "S1", finish["notification_id"]) == ("sending", None)  # undone with it ...
    assert db.write(_claiming("S2", "k-S2")) == "S2"  # ... and carried again by the next one
    assert _stored(db, "S1", finish["notification_id"]) == ("sent", "accepted")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_carried_result_the_database_refuses_costs_the_notification_nothing(carrying_db, caplog):
    db = carrying_db
    good, bad = _sent_block(db, "S1"), _sent_block(db, "S3")
    insert_call(db, "S2")
    with db.engine.begin() as conn:  # a refusal only the database can make (the values pass every check here)
        conn.exec_driver_sql("ALTER TABLE blocks ADD CONSTRAINT no_teapot CHECK (http_status <> 418)")
    db.record_sent(*good)
    db.record_sent([{**bad[0][0], "http_status": 418}], bad[1])
    runs: list[int | None] = []
    with caplog.at_level(logging.WARNING, logger="engine.storage"):
        assert db.write(_claiming("S2", "k-S2", runs)) == "S2"
        assert runs[0] is None and len(runs) == 2  # its claim failed with them: run again without them
        assert db.get_notification(runs[-1]).dedupe_key == "k-S2"
        assert db.settle_sent(10)  # the writer thread writes them alone, and drops the bad one
    assert _stored(db, "S1", good[1]["notification_id"]) == ("sent", "accepted")
    assert _stored(db, "S3", bad[1]["notification_id"]) == ("sending", None)
    messages = [r.getMessage() for r in caplog.records]
    assert any("runs again without them" in m and "no_teapot" in m for m in messages)
    assert any("dropped the result" in m and "S3" in m for m in messages)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_result_refused_before_any_write_is_not_carried(carrying_db, caplog):
    db = carrying_db
    good, bad = _sent_block(db, "S1"), _sent_block(db, "S3")
    insert_call(db, "S2")
    db.record_sent(*good)
    db.record_sent(bad[0], {**bad[1], "outcome": "no-such-outcome"})
    runs: list[int | None] = []
    with caplog.at_level(logging.ERROR, logger="engine.storage"):
        assert db.write(_claiming("S2", "k-S2", runs)) == "S2"
        assert len(runs) == 1  # run once: the good one rode with it
        assert _stored(db, "S1", good[1]["notification_id"]) == ("sent", "accepted")
        assert db.settle_sent(10)
    assert _stored(db, "S3", bad[1]["notification_id"]) == ("sending", None)
    assert any("dropped the result" in r.getMessage() and "no-such-outcome" in r.getMessage()
               for r in caplog.records)


def test_notifications_on_many_threads_carry_every_result_exactly_once(database_url):
    """Eight threads, each a stream of notifications: claim, then queue the result of the block it
    sent. Whoever carries them (another thread's transaction, or the writer thread), every result
    is stored once and every notification finished, with nothing left queued and nothing lost."""
    database = Database.open(database_url, auto_migrate=True, lock_timeout_ms=10_000)
    threads, rounds = 8, 12
    failures: list[BaseException] = []
    finished: list[int] = []
    try:
        for t in range(threads):
            insert_call(database, f"T{t}")

        def stream(t: int) -> None:
            session = f"T{t}"
            try:
                for step in range(1, rounds + 1):
                    def body(tx, step=step):
                        claimed_id, claimed, _row = tx.claim_and_lock(
                            f"k-{session}-{step}", "POST /hoiio/notify", "POST", session=session, step=step,
                            lock=session)
                        assert claimed
                        tx.add_block(session, step, "menu", "gather", "ivr/middle/gather", {"msg": "x"},
                                     status="sending")
                        return claimed_id

                    claimed_id = database.write(body)
                    mark = {"session": session, "step": step, "status": "sent", "http_status": 200,
                            "provider_status": "success_ok", "response": {"status": "success_ok"},
                            "duration_ms": 1, "attempts": 1, "error": None}
                    database.record_sent([mark], {"notification_id": claimed_id, "outcome": "accepted", "step": step})
                    finished.append(claimed_id)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        workers = [threading.Thread(target=stream, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert not failures, failures[0]
        assert database.settle_sent(10) and database._sent.empty()
        assert len(finished) == threads * rounds
        with database.engine.connect() as conn:
            conn.execution_options(**READ_ONLY)
            statuses = conn.execute(sa.text("SELECT status, count(*) FROM blocks GROUP BY status")).all()
            outcomes = conn.execute(sa.select(notifications.c.outcome, sa.func.count())
                                    .where(notifications.c.id.in_(finished)).group_by(notifications.c.outcome)).all()
        assert dict(statuses) == {"sent": threads * rounds}
        assert dict(outcomes) == {"accepted": threads * rounds}
    finally:
        database.close()
