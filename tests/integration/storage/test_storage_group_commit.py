"""``Database.write``: a function's writes in one transaction, on SQLite and PostgreSQL; on SQLite,
the callers of a process that arrive while a write is under way share the next commit (group
commit), and one caller's failure undoes only its own writes."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from storage_helpers import sample_state
from test_storage_sent import _count_commits, _held

from engine.storage import Database, DatabaseUnavailable, NestedTransaction, StorageBusy
from engine.storage.db import READ_ONLY


def _add(session: str, *, fail: BaseException | None = None):
    """A ``write`` function: stores the call ``session``, then raises ``fail`` if given."""

    def fn(tx):
        state = sample_state(session)
        tx.insert_call(session=session, flow="support", flow_version="v1", direction="inbound",
                       state=state.to_dict(), node="menu", step=1, status="active", caller=None, called=None,
                       dest=None, txn_ref=None)
        if fail is not None:
            raise fail
        return f"stored {session}"

    return fn


def _sessions(database: Database) -> set[str]:
    with database.engine.connect() as conn:
        conn.execution_options(**READ_ONLY)
        return {row[0] for row in conn.execute(sa.text("SELECT session FROM calls"))}


def _in_threads(database: Database, fns: dict[str, object]) -> tuple[dict[str, object], list[threading.Thread]]:
    """Start one thread per function, each calling ``database.write``; returns what each got."""
    got: dict[str, object] = {}

    def call(name: str, fn) -> None:
        try:
            got[name] = database.write(fn)
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to look at
            got[name] = exc

    threads = [threading.Thread(target=call, args=item) for item in fns.items()]
    for thread in threads:
        thread.start()
    return got, threads


def _together(database: Database, fns: dict[str, object]) -> dict[str, object]:
    """Each function's ``write`` called from a thread of its own while another program holds
    SQLite's write lock, released once all of them wait; returns what each caller got."""
    with _held(database):
        got, threads = _in_threads(database, fns)
        deadline = time.monotonic() + 10
        while len(database._group.pending) < len(fns):
            assert time.monotonic() < deadline, "the callers never queued"
            time.sleep(0.005)
    for thread in threads:
        thread.join(10)
    return got


def test_write_commits_and_returns_what_the_function_returned(db):
    assert db.write(_add("S1")) == "stored S1"
    assert _sessions(db) == {"S1"}


def test_a_function_that_raises_leaves_nothing_and_its_exception_reaches_the_caller(db):
    with pytest.raises(LookupError, match="no such menu"):
        db.write(_add("S1", fail=LookupError("no such menu")))
    assert _sessions(db) == set()
    assert db.write(_add("S2")) == "stored S2"  # the connection is usable again


def test_write_inside_a_write_transaction_is_refused(db):
    with db.transaction() as _tx, pytest.raises(NestedTransaction):
        db.write(_add("S1"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_callers_waiting_for_the_lock_share_one_commit(db):
    commits = _count_commits(db)
    got = _together(db, {f"S{n}": _add(f"S{n}") for n in range(6)})
    assert got == {f"S{n}": f"stored S{n}" for n in range(6)}
    assert commits[0] == 1  # one commit for all six, where each used to take its own
    assert _sessions(db) == {f"S{n}" for n in range(6)}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_in_a_shared_commit_a_failing_function_undoes_only_its_own_writes(db):
    got = _together(db, {"S1": _add("S1"), "S2": _add("S2", fail=ValueError("bad digits")), "S3": _add("S3")})
    assert got["S1"] == "stored S1" and got["S3"] == "stored S3"
    assert isinstance(got["S2"], ValueError) and str(got["S2"]) == "bad digits"
    assert _sessions(db) == {"S1", "S3"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_in_a_shared_commit_an_outage_fails_every_caller_and_stores_nothing(db):
    outage = DatabaseUnavailable("disk I/O error")
    got = _together(db, {"S1": _add("S1"), "S2": _add("S2", fail=outage), "S3": _add("S3")})
    assert all(isinstance(got[name], DatabaseUnavailable) for name in ("S1", "S2", "S3")), got
    assert len({id(got[name]) for name in ("S1", "S2", "S3")}) == 3  # each thread raises its own copy
    assert _sessions(db) == set()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_callers_still_waiting_at_the_lock_timeout_get_storage_busy(database_url):
    database = Database.open(database_url, auto_migrate=True, lock_timeout_ms=300)
    try:
        with _held(database):
            got, threads = _in_threads(database, {f"S{n}": _add(f"S{n}") for n in range(3)})
            for thread in threads:
                thread.join(10)
        assert all(isinstance(got[f"S{n}"], StorageBusy) for n in range(3)), got
        assert database._group.pending == [] and not database._group.leading
        assert database.write(_add("S9")) == "stored S9"  # and the next caller writes at once
        assert _sessions(database) == {"S9"}
    finally:
        database.close()


def test_many_threads_writing_at_once_all_get_their_own_result(db):
    got, threads = _in_threads(db, {f"S{n}": _add(f"S{n}", fail=KeyError(n) if n % 5 == 0 else None)
                                    for n in range(40)})
    for thread in threads:
        thread.join(30)
    for n in range(40):
        if n % 5 == 0:
            assert isinstance(got[f"S{n}"], KeyError) and got[f"S{n}"].args == (n,)
        else:
            assert got[f"S{n}"] == f"stored S{n}"
    assert _sessions(db) == {f"S{n}" for n in range(40) if n % 5}
