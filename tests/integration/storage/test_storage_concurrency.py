"""Per-session serialisation under concurrency, on SQLite and PostgreSQL: no lost update between
threads or processes, waiting instead of failing, bounded waits, and SQLite's WAL + BEGIN IMMEDIATE."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from storage_helpers import increment_step, insert_call

from engine.storage import Database, DatabaseUnavailable, StorageBusy, migrate


def _run_threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


def test_two_threads_incrementing_one_call_lose_no_update_and_wait_for_each_other(db):
    insert_call(db, "S1", step=0)
    rounds, hold = 8, 0.01
    start = threading.Barrier(2)
    spans: list[tuple[float, float]] = []  # (lock obtained, last write done) per transaction

    def worker(_index: int) -> None:
        start.wait()
        for _ in range(rounds):
            with db.transaction() as tx:
                row = tx.lock_call("S1")
                locked_at = time.monotonic()
                step = row.step
                time.sleep(hold)  # widen the read-modify-write window
                tx.update_call("S1", row.state, row.node, step + 1, row.status, expected_row_version=row.row_version)
                written_at = time.monotonic()  # the commit follows: the next lock comes after it
            spans.append((locked_at, written_at))

    assert _run_threads(worker, 2) == []
    final = db.get_call("S1")
    assert final.step == 2 * rounds
    assert final.row_version == 1 + 2 * rounds
    # Serialised: no two lock-holding periods overlap (the other thread waited for the lock).
    spans.sort()
    assert all(earlier[1] <= later[0] + 0.002 for earlier, later in zip(spans, spans[1:], strict=False))


def test_two_processes_incrementing_one_call_are_serialised(db, database_url):
    insert_call(db, "S1", step=0)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    rounds = 10
    workers = [
        ctx.Process(target=increment_step, args=(database_url, "S1", rounds, 0.005, start, results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == [("ok", rounds), ("ok", rounds)]
    assert db.get_call("S1").step == 2 * rounds


def test_concurrent_claims_of_one_dedupe_key_let_exactly_one_through(db):
    ids = [db.record_notification("POST /n", "POST", body=b"same") for _ in range(4)]
    start = threading.Barrier(4)
    claimed: list[bool] = []

    def worker(index: int) -> None:
        start.wait()
        with db.transaction() as tx:
            claimed.append(tx.claim_notification("key-1", notification_id=ids[index]))
            time.sleep(0.02)

    assert _run_threads(worker, 4) == []
    assert sorted(claimed) == [False, False, False, True]


def test_a_lock_held_beyond_the_timeout_gives_storage_busy(database_url, db):
    insert_call(db, "S1")
    impatient = Database(database_url, lock_timeout_ms=200)
    holding = threading.Event()
    release = threading.Event()

    def hold_the_call() -> None:
        with db.transaction() as tx:
            tx.lock_call("S1")
            holding.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=hold_the_call)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        started = time.monotonic()
        with pytest.raises(StorageBusy), impatient.transaction() as tx:
            tx.lock_call("S1")
        assert 0.15 < time.monotonic() - started < 3
        release.set()
        holder.join(timeout=10)
        with impatient.transaction() as tx:  # usable again once the lock is gone
            assert tx.lock_call("S1") is not None
    finally:
        release.set()
        holder.join(timeout=10)
        impatient.close()


# ---------------------------------------------------------------------------------------- SQLite only


@pytest.fixture
def sqlite_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'ivr.sqlite3'}"
    database = Database.open(url)
    yield database, tmp_path / "ivr.sqlite3"
    database.close()


def test_sqlite_connections_use_wal_and_the_documented_pragmas(sqlite_db):
    db, path = sqlite_db
    with db.engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
        }
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1, "synchronous": 1}
    with sqlite3.connect(path) as raw:  # WAL is a property of the file, seen by any client
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_write_transactions_take_the_write_lock_at_begin(sqlite_db):
    db, path = sqlite_db
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        # Nothing is read or written inside, but BEGIN IMMEDIATE already holds the lock.
        with db.transaction(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        with db.reading() as tx:  # read-only transactions do not take it
            tx.get_call("S1")
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()


def test_sqlite_deferred_read_then_write_would_fail_and_the_engine_path_does_not(sqlite_db):
    db, path = sqlite_db
    insert_call(db, "S1", step=0)

    # Control: the sqlite3 module's default (deferred) transaction. A reads, B commits a write, A's
    # upgrade to a writer fails at once, whatever the busy timeout.
    a = sqlite3.connect(path, timeout=5, isolation_level=None)
    b = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        a.execute("BEGIN")
        a.execute("SELECT step FROM calls WHERE session = 'S1'").fetchone()
        b.execute("UPDATE calls SET step = step + 1 WHERE session = 'S1'")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            a.execute("UPDATE calls SET step = step + 1 WHERE session = 'S1'")
        assert time.monotonic() - started < 1
        a.execute("ROLLBACK")
    finally:
        a.close()
        b.close()

    # The engine: the same interleaving; the concurrent writer waits instead, nobody fails.
    reading = threading.Event()
    writer_errors: list[BaseException] = []

    def concurrent_writer() -> None:
        try:
            reading.wait(timeout=10)
            with db.transaction() as tx:
                row = tx.lock_call("S1")
                tx.update_call(
                    "S1", row.state, row.node, row.step + 1, row.status, expected_row_version=row.row_version
                )
        except BaseException as exc:
            writer_errors.append(exc)

    writer = threading.Thread(target=concurrent_writer)
    writer.start()
    with db.transaction() as tx:
        row = tx.lock_call("S1")
        reading.set()
        time.sleep(0.2)  # the writer is now blocked in BEGIN IMMEDIATE
        tx.update_call("S1", row.state, row.node, row.step + 1, row.status, expected_row_version=row.row_version)
    writer.join(timeout=10)
    assert writer_errors == []
    assert db.get_call("S1").step == 3  # 1 from the control + 2


def test_sqlite_reads_do_not_wait_for_a_writer(sqlite_db):
    db, _path = sqlite_db
    insert_call(db, "S1")
    with db.transaction() as tx:
        tx.lock_call("S1")
        started = time.monotonic()
        assert db.get_call("S1") is not None  # another connection, deferred BEGIN, WAL snapshot
        assert db.list_calls() != []
        assert time.monotonic() - started < 1


def test_sqlite_upgrade_leaves_foreign_keys_on(sqlite_db):
    db, _path = sqlite_db
    assert migrate.upgrade(db) == migrate.head_revision()
    with db.engine.connect() as conn:  # foreign keys are on again after the migration
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# ---------------------------------------------------------------------------------------- lost connections


def _kill_pooled_connection(db: Database) -> None:
    """Make the server end the connection the pool will hand out next (PostgreSQL)."""
    with db.engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = sa.create_engine(db.url)
    try:
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
            # pg_terminate_backend only signals: wait until the backend has told the client and gone
            gone = sa.text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid")
            deadline = time.monotonic() + 5
            while not conn.execute(gone, {"pid": pid}).scalar() and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        admin.dispose()


postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@postgres_only
def test_a_connection_dropped_while_idle_is_replaced_by_the_pre_ping(db, database_url):
    insert_call(db, "S1")
    _kill_pooled_connection(db)
    assert db.get_call("S1") is not None


@postgres_only
def test_a_connection_dropped_inside_a_transaction_is_database_unavailable(db, database_url):
    insert_call(db, "S1")
    with pytest.raises(DatabaseUnavailable), db.transaction() as tx:
        tx.lock_call("S1")
        pid = tx.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        admin = sa.create_engine(db.url)
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.dispose()
        tx.update_call("S1", {}, None, 2, "active", expected_row_version=1)
    assert db.get_call("S1").step == 1  # nothing half-written; the next transaction works


def test_open_starts_even_when_postgres_is_down(caplog):
    db = Database.open("postgresql://postgres@127.0.0.1:1/test")
    try:
        assert "cannot connect to the database" in caplog.text
        with pytest.raises(DatabaseUnavailable):
            db.ping()
    finally:
        db.close()
