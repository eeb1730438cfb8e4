"""How writers take turns on SQLite (``WriterQueue``), and when PostgreSQL connections are pinged."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
from storage_helpers import insert_call

from engine.storage import Database, DatabaseUnavailable, StorageBusy
from engine.storage import db as db_module

postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
def sqlite_file(tmp_path):
    return tmp_path / "ivr.sqlite3"


def _hold_turn(database: Database, entered: threading.Event, release: threading.Event) -> None:
    with database.transaction() as tx:
        tx.lock_call("nobody")
        entered.set()
        release.wait(10)


def test_the_lock_file_sits_beside_the_database(sqlite_file):
    database = Database.open(f"sqlite:///{sqlite_file}")
    try:
        with database.transaction():
            pass
        assert (sqlite_file.parent / "ivr.sqlite3-writer.lock").exists()
    finally:
        database.close()


def test_a_writer_waits_for_the_turn_and_goes_on_as_soon_as_it_is_free(sqlite_file):
    database = Database.open(f"sqlite:///{sqlite_file}")
    try:
        insert_call(database, "S1")
        entered, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_hold_turn, args=(database, entered, release))
        holder.start()
        assert entered.wait(5)
        done = threading.Event()

        def second() -> None:
            with database.transaction() as tx:
                tx.lock_call("S1")
            done.set()

        waiter = threading.Thread(target=second)
        waiter.start()
        assert not done.wait(0.2)  # the first writer still has the turn
        release.set()
        assert done.wait(5)
        holder.join(5)
        waiter.join(5)
    finally:
        database.close()


def test_a_turn_held_beyond_the_lock_timeout_is_storage_busy(sqlite_file):
    database = Database.open(f"sqlite:///{sqlite_file}", lock_timeout_ms=200)
    try:
        entered, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_hold_turn, args=(database, entered, release))
        holder.start()
        assert entered.wait(5)
        with pytest.raises(StorageBusy, match="stayed locked beyond the lock timeout"), database.transaction():
            pass
        release.set()
        holder.join(5)
        with database.transaction() as tx:  # free again
            assert tx.lock_call("S1") is None
    finally:
        database.close()


def test_another_process_holding_the_turn_makes_this_one_wait(sqlite_file):
    """Between processes the turn is an flock on the lock file: a forked child opens its own."""
    database = Database.open(f"sqlite:///{sqlite_file}", lock_timeout_ms=300)
    try:
        with database.transaction():  # this process has its lock file open before the fork
            pass
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: hold the turn (only the turn: SQLite itself is not locked) for a second
            code = 1
            try:
                os.close(read_end)
                with database.writers.turn():
                    os.write(write_end, b"in")
                    time.sleep(1.0)
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        try:
            assert os.read(read_end, 2) == b"in"
            with pytest.raises(StorageBusy), database.transaction():
                pass
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(read_end)
        assert os.waitstatus_to_exitcode(status) == 0
        with database.transaction() as tx:  # the child is gone: the turn is free
            assert tx.lock_call("S1") is None
    finally:
        database.close()


def test_a_missing_directory_is_a_clear_database_unavailable(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'missing' / 'ivr.sqlite3'}")
    try:
        with pytest.raises(DatabaseUnavailable, match="does the directory exist"), database.transaction():
            pass
    finally:
        database.close()


@postgres_only
def test_a_connection_in_steady_use_is_not_pinged_but_an_idle_one_is(db, monkeypatch):
    pings: list[object] = []
    real_ping = db.engine.dialect.do_ping

    def counting_ping(dbapi_connection):
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counting_ping)
    insert_call(db, "S1")
    pings.clear()
    for _ in range(5):
        assert db.get_call("S1") is not None
    assert pings == []  # used a moment ago, and its socket is quiet
    monkeypatch.setattr(db_module, "IDLE_PING_S", 0.0)
    assert db.get_call("S1") is not None
    assert len(pings) == 1


def test_the_wal_is_checkpointed_by_a_thread_of_its_own_not_by_a_commit(sqlite_file):
    database = Database.open(f"sqlite:///{sqlite_file}")
    try:
        with database.engine.connect() as conn:  # commits leave the copying to the thread
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == db_module.AUTOCHECKPOINT_PAGES
        checkpoints = database.checkpoints
        checkpoints.interval_s = 0.05
        for index in range(20):
            insert_call(database, f"S{index}")  # the first write starts the thread
        deadline = time.monotonic() + 5
        while checkpoints.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert checkpoints.runs > 0
        busy, frames, copied = checkpoints.checkpoint()
        assert busy == 0 and copied == frames  # nothing left behind in the WAL
    finally:
        database.close()


def test_the_checkpoint_thread_never_creates_a_database_file(tmp_path):
    checkpointer = db_module.WalCheckpointer(str(tmp_path / "gone.sqlite3"), 0.05)
    assert checkpointer.checkpoint() is None
    assert not (tmp_path / "gone.sqlite3").exists()


def _checkpoint_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "ivr-wal-checkpoint"}


def test_the_checkpoint_thread_ends_with_its_database(sqlite_file):
    before = _checkpoint_threads()
    database = Database.open(f"sqlite:///{sqlite_file}")
    database.checkpoints.interval_s = 0.02
    insert_call(database, "S1")
    started = _checkpoint_threads() - before
    assert len(started) == 1
    database.dispose()  # dispose (after fork, in tests) and close both stop it
    thread = started.pop()
    thread.join(2)
    assert not thread.is_alive()
    insert_call(database, "S2")  # the next write starts it again
    again = _checkpoint_threads() - before
    assert len(again) == 1
    del database  # and a Database nobody holds any more takes its thread with it
    thread = again.pop()
    thread.join(2)
    assert not thread.is_alive()


def test_a_writer_outside_the_queue_makes_begin_fail_as_storage_busy(sqlite_file):
    database = Database.open(f"sqlite:///{sqlite_file}", lock_timeout_ms=100)
    outsider = sqlite3.connect(sqlite_file, isolation_level=None)
    try:
        outsider.execute("BEGIN IMMEDIATE")  # e.g. an operator's sqlite3 shell, which knows no lock file
        with pytest.raises(StorageBusy, match="stayed locked"), database.transaction():
            pass
        outsider.execute("ROLLBACK")
        with database.transaction() as tx:  # and the pool's connection is usable again
            assert tx.lock_call("nobody") is None
    finally:
        outsider.close()
        database.close()
