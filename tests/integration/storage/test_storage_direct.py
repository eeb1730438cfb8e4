"""The request path's statements run on the driver (engine.storage.direct): same SQL, same types,
same results as through SQLAlchemy, and driver errors still come out as SQLAlchemy's."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from storage_helpers import insert_call

from engine.storage.direct import DirectStatement, RiderFailed
from engine.storage.errors import ConcurrentUpdate, DuplicateBlock, StorageError
from engine.storage.repository import CallRow
from engine.storage.tables import blocks, calls, notifications


def _through_sqlalchemy(db, session: str) -> CallRow:
    with db.engine.connect() as conn:
        found = conn.execute(sa.select(calls).where(calls.c.session == session)).mappings().one()
    return CallRow(**found)


def test_a_call_read_directly_equals_the_one_sqlalchemy_reads(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        tx.update_call("S1", {"vars": {"pin": "1234", "n": 3}, "nested": [1, None]}, "menu", 2, "active",
                       billing={"cost": "0.05"}, expected_row_version=1, caller="+6591234567")
    with db.transaction() as tx:
        locked = tx.lock_call("S1")
    direct = db.get_call("S1")
    assert direct == locked == _through_sqlalchemy(db, "S1")
    assert direct.state == {"vars": {"pin": "1234", "n": 3}, "nested": [1, None]}
    assert direct.billing == {"cost": "0.05"}
    assert direct.caller == "+6591234567"
    assert direct.row_version == 2  # the literal 1 of "row_version + 1" is bound from the statement
    assert direct.updated_at.tzinfo is UTC and direct.created_at.tzinfo is UTC
    assert direct.ended_at is None


def test_an_inserted_call_comes_back_as_stored(db):
    with db.transaction() as tx:
        made = tx.insert_call(session="S2", flow="support", flow_version="v1", state={"a": "é"},
                              status="ended", node="bye", step=3)
    assert made == _through_sqlalchemy(db, "S2")
    assert made.ended_at == made.created_at and made.ended_at.tzinfo is UTC


def test_a_request_recorded_without_an_outcome_has_no_response_yet(db):
    with db.transaction() as tx:
        open_id = tx.record_notification("POST /hoiio/notify", "POST", body=b"a=1")
        done_id = tx.record_notification("POST /hoiio/notify", "POST", body=b"a=2", outcome="invalid",
                                         response={"status": "error"}, reason="bad", duration_ms=3.4)
    with db.engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(
            sa.select(notifications.c.id, notifications.c.outcome, notifications.c.duration_ms,
                      notifications.c.response.is_(None).label("no_response"), notifications.c.body))}
    assert rows[open_id].no_response and rows[open_id].outcome is None
    assert not rows[done_id].no_response and rows[done_id].outcome == "invalid"
    assert rows[done_id].duration_ms == 3
    assert db.get_notification(done_id).response == {"status": "error"}
    assert bytes(rows[done_id].body) == b"a=2"


def test_a_claimed_key_comes_back_unclaimed_and_the_request_is_still_stored(db):
    with db.transaction() as tx:
        first, claimed = tx.record_claimed("k1", "POST /hoiio/notify", "POST", body=b"x")
    with db.transaction() as tx:
        second, again = tx.record_claimed("k1", "POST /hoiio/notify", "POST", body=b"x")
    assert (claimed, again) == (True, False)
    assert second > first
    assert db.get_notification(second).dedupe_key is None


def test_driver_errors_are_sqlalchemy_errors(db):
    insert_call(db, "S1")
    stamp = sa.bindparam("t", type_=blocks.c.created_at.type)
    node_missing = DirectStatement(sa.insert(blocks).values(
        session="S1", step=2, node=sa.bindparam("node"), kind="play", endpoint="ivr/middle/play", params={},
        status="pending", attempts=0, created_at=stamp, updated_at=stamp))
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as tx:
        tx.add_block("S1", 1, "menu", "gather", "ivr/middle/gather", {"msg": "x"})
        node_missing.execute(tx.conn, {"node": None, "t": datetime.now(UTC)})  # NOT NULL
    assert db.blocks_for("S1") == []  # the whole transaction rolled back
    with db.transaction() as tx:  # and the connection is usable again
        node_missing.execute(tx.conn, {"node": "bye", "t": datetime.now(UTC)})
    assert [row.node for row in db.blocks_for("S1")] == ["bye"]


def test_statement_listeners_see_direct_statements(db):
    seen: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    insert_call(db, "S1")
    seen.clear()
    with db.transaction() as tx:
        tx.lock_call("S1")
    assert any(sql.lstrip().upper().startswith("SELECT") and "calls" in sql for sql in seen)


def test_expanding_parameters_are_refused(db):
    statement = DirectStatement(sa.select(calls.c.id).where(calls.c.status.in_(sa.bindparam("s", expanding=True))))
    with pytest.raises(ValueError, match="expanding"), db.engine.connect() as conn:
        statement.execute(conn, {"s": ["active"]})


def _sent_block_and_its_request(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        tx.add_block("S1", 1, "menu", "gather", "ivr/middle/gather", {"msg": "x"}, status="sending")
        notification_id, _ = tx.record_claimed("k", "POST /hoiio/notify", "POST", body=b"x", session="S1")
    return notification_id


SENT = {"session": "S1", "step": 1, "status": "sent", "http_status": 200, "provider_status": "success_ok",
        "response": {"status": "success_ok"}, "duration_ms": 4.2, "attempts": 1, "error": None}


def test_a_sent_block_and_the_outcome_of_its_notification_are_stored_together(db):
    notification_id = _sent_block_and_its_request(db)
    db.record_sent([SENT], {"notification_id": notification_id, "outcome": "accepted", "response": {"blocks": []},
                          "step": 1, "duration_ms": 9})
    block = db.blocks_for("S1")[0]
    assert (block.status, block.provider_status, block.http_status, block.attempts) == ("sent", "success_ok", 200, 1)
    assert block.response == {"status": "success_ok"} and block.duration_ms == 4 and block.sent_at is not None
    stored = db.get_notification(notification_id)
    assert (stored.outcome, stored.response, stored.step, stored.session) == ("accepted", {"blocks": []}, 1, "S1")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_failing_half_leaves_both_unwritten(db, database_url):
    notification_id = _sent_block_and_its_request(db)
    with pytest.raises(sa.exc.DataError), db.transaction() as tx:
        tx.mark_block_and_finish({**SENT, "duration_ms": 3e9},  # beyond an INTEGER: the block's half fails
                                 {"notification_id": notification_id, "outcome": "accepted"})
    assert db.blocks_for("S1")[0].status == "sending"
    assert db.get_notification(notification_id).outcome is None
    with pytest.raises(ValueError, match="session and step"), db.transaction() as tx:
        tx.mark_block_and_finish({"block_id": 1, "status": "sent"}, {"notification_id": notification_id,
                                                                      "outcome": "accepted"})


# ---------------------------------------------------------------- folded statements (one on PostgreSQL)
def test_claim_and_lock_claims_the_key_and_returns_the_call(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        first, claimed, row = tx.claim_and_lock("k1", "POST /hoiio/notify", "POST", body=b"a", session="S1",
                                                step=1, lock="S1")
    assert claimed and row == db.get_call("S1")
    with db.transaction() as tx:
        again, claimed_again, row_again = tx.claim_and_lock("k1", "POST /hoiio/notify", "POST", body=b"a",
                                                            session="S1", step=1, lock="S1")
        _, fresh, missing = tx.claim_and_lock("k2", "POST /hoiio/notify", "POST", body=b"b", lock="nobody")
    assert (claimed_again, row_again) == (False, None)
    assert again > first and db.get_notification(again).dedupe_key is None  # stored, unclaimed
    assert db.get_notification(first).dedupe_key == "k1" and db.get_notification(first).session == "S1"
    assert fresh and missing is None


def _update(version: int, **changes):
    return {"session": "S1", "state": {"n": version}, "node": "menu", "step": version + 1, "status": "active",
            "expected_row_version": version, **changes}


def _block(step: int) -> dict:
    return {"session": "S1", "step": step, "node": "menu", "kind": "gather", "endpoint": "ivr/middle/gather",
            "params": {"msg": "Press 1"}, "status": "sending"}


def test_update_call_with_a_queued_block_stores_the_state_and_the_block(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        assert tx.update_call(**_update(1, caller="+6591234567"), queue=[_block(2)]) == 2
    call = db.get_call("S1")
    assert (call.row_version, call.step, call.state, call.caller) == (2, 2, {"n": 1}, "+6591234567")
    (block,) = db.blocks_for("S1")
    assert (block.step, block.status, block.attempts, block.params) == (2, "sending", 1, {"msg": "Press 1"})


def test_update_call_with_a_queued_block_refuses_a_stale_version_and_queues_nothing(db):
    insert_call(db, "S1")
    with pytest.raises(ConcurrentUpdate), db.transaction() as tx:
        tx.update_call(**_update(7), queue=[_block(2)])
    with db.transaction() as tx:
        with pytest.raises(ConcurrentUpdate):
            tx.update_call(**_update(7), queue=[_block(2)])
        assert tx.conn.execute(sa.select(sa.func.count()).select_from(blocks)).scalar() == 0


def test_update_call_with_a_queued_block_refuses_a_block_already_queued(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        tx.add_block(**_block(2))
    with pytest.raises(DuplicateBlock), db.transaction() as tx:
        tx.update_call(**_update(1), queue=[_block(2)])
    assert db.get_call("S1").row_version == 1  # rolled back with the transaction


def _new_call(session: str = "S9") -> dict:
    return {"session": session, "flow": "support", "flow_version": "v1", "state": {"node": "welcome"},
            "node": "welcome", "step": 1, "status": "active", "caller": "+6591234567", "called": "+6531580000",
            "txn_ref": "T-1"}


def _answer(tx, key: str, *, queue: list, session: str = "S9"):
    return tx.start_call(key, "POST /hoiio/answer", "POST", body=b"session=" + session.encode(), session=session,
                         step=0, call=_new_call(session), queue=queue)


@pytest.mark.parametrize("blocks_queued", [0, 1, 2])
def test_start_call_stores_the_request_the_call_and_its_blocks(db, blocks_queued):
    queue = [{**_block(step), "session": "S9"} for step in range(1, blocks_queued + 1)]
    with db.transaction() as tx:
        notification_id, claimed, row = _answer(tx, "a1", queue=queue)
    assert claimed and row == db.get_call("S9") == _through_sqlalchemy(db, "S9")
    assert (row.row_version, row.caller, row.txn_ref, row.state) == (1, "+6591234567", "T-1", {"node": "welcome"})
    stored = db.get_notification(notification_id)
    assert (stored.dedupe_key, stored.session, stored.step, stored.outcome) == ("a1", "S9", 0, None)
    assert [(b.step, b.status, b.params) for b in db.blocks_for("S9")] == [
        (step, "sending", {"msg": "Press 1"}) for step in range(1, blocks_queued + 1)]


def test_start_call_of_a_redelivery_stores_it_unclaimed_and_starts_nothing(db):
    with db.transaction() as tx:
        first, _, _ = _answer(tx, "a1", queue=[{**_block(1), "session": "S9"}])
    with db.transaction() as tx:
        again, claimed, row = _answer(tx, "a1", queue=[{**_block(1), "session": "S9"}])
    assert (claimed, row) == (False, None)
    assert again > first and db.get_notification(again).dedupe_key is None
    assert len(db.blocks_for("S9")) == 1 and db.get_call("S9").row_version == 1


def test_start_call_of_an_existing_call_claims_the_key_and_changes_nothing(db):
    insert_call(db, "S9")
    before = db.get_call("S9")
    with db.transaction() as tx:
        notification_id, claimed, row = _answer(tx, "a2", queue=[{**_block(1), "session": "S9"}])
        tx.finish_notification(notification_id, "duplicate")  # the transaction is still usable
    assert (claimed, row) == (True, None)
    assert db.get_call("S9") == before and db.blocks_for("S9") == []
    assert db.get_notification(notification_id).outcome == "duplicate"


def test_start_call_is_undone_with_its_transaction(db):
    with pytest.raises(RuntimeError), db.transaction() as tx:
        _answer(tx, "a1", queue=[{**_block(1), "session": "S9"}])
        raise RuntimeError("after the start")
    assert db.get_call("S9") is None and db.blocks_for("S9") == []
    with db.transaction() as tx:
        _, claimed, row = _answer(tx, "a1", queue=[])
    assert claimed and row is not None  # the key was released with the rollback


# ---------------------------------------------------------------- PostgreSQL: BEGIN sent with the first statement
def _spy_round_trips(monkeypatch) -> list[list[str]]:
    """The statements of each PostgreSQL round trip the direct path makes, by their first word."""
    from engine.storage import direct

    trips: list[list[str]] = []
    real = direct._round_trip

    def spying(pgconn, queries):
        trips.append([query.sql.split()[0].decode() for query in queries])
        return real(pgconn, queries)

    monkeypatch.setattr(direct, "_round_trip", spying)
    return trips


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_transaction_is_begun_with_its_first_statement(db, database_url, monkeypatch):
    insert_call(db, "S1")
    trips = _spy_round_trips(monkeypatch)
    with db.transaction() as tx:
        row = tx.lock_call("S1")
        assert tx.conn.connection.dbapi_connection.autocommit  # psycopg sends no BEGIN of its own
        in_transaction = tx.conn.exec_driver_sql("SELECT now() = statement_timestamp()").scalar()
        tx.update_call("S1", {"n": 1}, "menu", 2, "active", expected_row_version=row.row_version)
    assert trips[0] == ["BEGIN", "SELECT"]  # one BEGIN, in one round trip with the SELECT ... FOR UPDATE
    assert [trip for trip in trips if "BEGIN" in trip] == [trips[0]]
    assert in_transaction is False  # the second statement ran inside the transaction the first began
    assert db.get_call("S1").row_version == 2


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_the_first_statement_is_undone_with_the_transaction(db, database_url):
    insert_call(db, "S1")
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.update_call("S1", {"n": 1}, "menu", 2, "active", expected_row_version=1)  # the BEGIN goes with it
        raise RuntimeError("undo")
    assert db.get_call("S1").row_version == 1
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.conn.execute(sa.update(calls).values(step=9))  # through SQLAlchemy: BEGIN sent before it
        raise RuntimeError("undo")
    assert db.get_call("S1").step == 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_failed_first_statement_leaves_the_connection_clean(db, database_url):
    insert_call(db, "S1")
    with pytest.raises(ConcurrentUpdate), db.transaction() as tx:
        tx.update_call("S1", {"n": 1}, "menu", 2, "active", expected_row_version=5)
    with pytest.raises(sa.exc.DataError), db.transaction() as tx:
        tx.update_call("S1", {"n": 1}, "menu", 2**40, "active", expected_row_version=1)  # beyond an INTEGER
    with db.engine.connect() as conn:
        status = conn.connection.dbapi_connection.info.transaction_status
    assert status == 0  # idle: the pool rolled the aborted transaction back
    with db.transaction() as tx:
        assert tx.update_call("S1", {"n": 1}, "menu", 2, "active", expected_row_version=1) == 2


# ---------------------------------------------------------------- PostgreSQL: COMMIT sent with the last statement
def _committed_elsewhere(db, session: str) -> int | None:
    with db.engine.connect() as other:
        return other.execute(sa.select(calls.c.row_version).where(calls.c.session == session)).scalar()


def test_an_update_marked_last_commits_its_transaction(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        claimed_id, _ = tx.record_claimed("k1", "POST /hoiio/notify", "POST", body=b"a", session="S1", step=1)
        assert tx.update_call(**_update(1), queue=[_block(2)], commit=True) == 2
        if db.backend == "postgresql":
            # committed with the statement: another connection sees it before the block ends
            assert tx.committed and _committed_elsewhere(db, "S1") == 2
            with pytest.raises(StorageError, match="committed with its last statement"):
                tx.lock_call("S1")
        else:
            assert not tx.committed  # SQLite commits at the end of the block, as usual
    assert db.get_call("S1").row_version == 2 and [b.step for b in db.blocks_for("S1")] == [2]
    assert db.get_notification(claimed_id).dedupe_key == "k1"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_stale_update_marked_last_commits_nothing(db, database_url):
    insert_call(db, "S1")
    with pytest.raises(ConcurrentUpdate), db.transaction() as tx:
        tx.record_claimed("k1", "POST /hoiio/notify", "POST", body=b"a", session="S1", step=1)
        tx.update_call(**_update(7), queue=[_block(2)], commit=True)
    assert db.get_call("S1").row_version == 1 and db.blocks_for("S1") == []
    assert db.recent_notifications() == []  # the claim went with the rollback
    with db.transaction() as tx:  # the pooled connection is clean
        assert tx.update_call(**_update(1), queue=[_block(2)], commit=True) == 2


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_block_already_queued_commits_nothing(db, database_url):
    insert_call(db, "S1")
    with db.transaction() as tx:
        tx.add_block(**{**_block(2), "params": {"msg": "first"}})
    with pytest.raises(DuplicateBlock), db.transaction() as tx:
        tx.update_call(**_update(1), queue=[_block(2)], commit=True)
    assert db.get_call("S1").row_version == 1
    assert [b.params for b in db.blocks_for("S1")] == [{"msg": "first"}]



# ---------------------------------------------------------------- the update with its notification's outcome
def _finish(notification_id: int) -> dict:
    return {"notification_id": notification_id, "outcome": "accepted", "response": {"status": "ok", "blocks": []},
            "session": "S1", "step": 2, "duration_ms": 3.2}


def test_an_update_with_its_notifications_outcome_marked_last_commits_both(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        claimed_id, _ = tx.record_claimed("k1", "POST /hoiio/notify", "POST", body=b"a", session="S1", step=1)
        assert tx.update_call(**_update(1, status="ended"), finish=_finish(claimed_id), commit=True) == 2
        if db.backend == "postgresql":  # committed with the statement
            assert tx.committed and _committed_elsewhere(db, "S1") == 2
        else:
            assert not tx.committed
    call, request = db.get_call("S1"), db.get_notification(claimed_id)
    assert (call.row_version, call.status) == (2, "ended") and call.ended_at is not None
    assert (request.outcome, request.response, request.step, request.duration_ms) == (
        "accepted", {"status": "ok", "blocks": []}, 2, 3)
    assert request.received_at is not None and request.dedupe_key == "k1"


def test_a_stale_update_with_its_notifications_outcome_commits_nothing(db):
    insert_call(db, "S1")
    with pytest.raises(ConcurrentUpdate), db.transaction() as tx:
        claimed_id, _ = tx.record_claimed("k1", "POST /hoiio/notify", "POST", body=b"a", session="S1", step=1)
        tx.update_call(**_update(7), finish=_finish(claimed_id), commit=True)
    assert db.get_call("S1").row_version == 1
    assert db.recent_notifications() == []  # the claim went with the rollback
    with db.transaction() as tx:  # the pooled connection is clean
        claimed_id, _ = tx.record_claimed("k1", "POST /hoiio/notify", "POST", body=b"a", session="S1", step=1)
        assert tx.update_call(**_update(1), finish=_finish(claimed_id), commit=True) == 2


def test_an_update_finishes_its_notification_only_when_it_queues_nothing(db):
    insert_call(db, "S1")
    with pytest.raises(ValueError, match="queues no block"), db.transaction() as tx:
        tx.update_call(**_update(1), queue=[_block(2)], finish=_finish(1), commit=True)
    assert db.get_call("S1").row_version == 1

# ---------------------------------------------------------------- riders: statements sent with another
_SET_STEP = DirectStatement(sa.update(calls).where(calls.c.session == sa.bindparam("key")).values(
    step=sa.bindparam("new_step")))
_SET_DIRECTION = DirectStatement(sa.update(calls).where(calls.c.session == sa.bindparam("key")).values(
    direction=sa.bindparam("new_direction")))  # the table's CHECK refuses anything but inbound/outbound
_SET_STATE = DirectStatement(sa.update(calls).where(calls.c.session == sa.bindparam("key")).values(
    state=sa.bindparam("new_state", type_=calls.c.state.type)))
_LOCK = DirectStatement(sa.select(calls.c.session, calls.c.step).where(calls.c.session == sa.bindparam("key"))
                        .with_for_update())


def test_riders_run_after_the_statement_in_its_transaction(db):
    insert_call(db, "S1")
    insert_call(db, "S2")
    sql = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: sql.append(args[2]))
    with db.transaction() as tx:
        found = _LOCK.execute(tx.conn, {"key": "S1"}, riders=[(_SET_STEP, {"key": "S2", "new_step": 7}),
                                                               (_SET_STEP, {"key": "S1", "new_step": 8})])
        assert found.first() == {"session": "S1", "step": 1}  # the statement's own result, read before them
        assert tx.conn.execute(sa.select(calls.c.step).where(calls.c.session == "S1")).scalar() == 8
    assert [s.split()[0] for s in sql if not s.startswith("BEGIN")][:3] == ["SELECT", "UPDATE", "UPDATE"]
    assert (db.get_call("S1").step, db.get_call("S2").step) == (8, 7)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        _LOCK.execute(tx.conn, {"key": "S1"}, riders=[(_SET_STEP, {"key": "S2", "new_step": 9})])
        raise RuntimeError("undo")
    assert db.get_call("S2").step == 7  # undone with the transaction


@pytest.mark.parametrize(("failing", "error"), [
    ((_SET_DIRECTION, {"key": "S1", "new_direction": "sideways"}), sa.exc.DBAPIError),  # the database refuses it
    ((_SET_STATE, {"key": "S1", "new_state": {"x": object()}}), TypeError),  # its value cannot be converted
], ids=["refused", "unconvertible"])
def test_a_failing_rider_raises_rider_failed_and_undoes_the_transaction(db, failing, error):
    insert_call(db, "S1")
    with pytest.raises(RiderFailed) as failed, db.transaction() as tx:
        _LOCK.execute(tx.conn, {"key": "S1"}, riders=[(_SET_STEP, {"key": "S1", "new_step": 2}), failing])
    assert isinstance(failed.value.error, error)
    assert db.get_call("S1").step == 1
    with db.transaction() as tx:  # the pooled connection is clean
        _LOCK.execute(tx.conn, {"key": "S1"}, riders=[(_SET_STEP, {"key": "S1", "new_step": 3})])
    assert db.get_call("S1").step == 3


def test_when_the_statement_itself_fails_its_own_error_is_raised_not_rider_failed(db):
    insert_call(db, "S1")
    with pytest.raises(sa.exc.IntegrityError) as failed, db.transaction() as tx:
        _SET_DIRECTION.execute(tx.conn, {"key": "S1", "new_direction": "sideways"},
                               riders=[(_SET_STEP, {"key": "S1", "new_step": 5})])
    assert not isinstance(failed.value, RiderFailed)
    assert db.get_call("S1").step == 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_riders_go_in_the_statements_round_trip(db, database_url, monkeypatch):
    insert_call(db, "S1")
    insert_call(db, "S2")
    with db.transaction() as tx:
        _LOCK.execute(tx.conn, {"key": "S2"})  # the transaction is begun
        trips = _spy_round_trips(monkeypatch)
        _LOCK.execute(tx.conn, {"key": "S1"}, riders=[(_SET_STEP, {"key": "S2", "new_step": 4})])
    assert trips == [["SELECT", "UPDATE"]]  # not the first statement, yet sent with its rider in one round trip
    assert db.get_call("S2").step == 4


# ---------------------------------------------------------------- PostgreSQL: statements prepared once per connection
def _prepared_here(conn) -> dict[str, int]:
    """This connection's prepared statements of the direct path: their text → times executed."""
    rows = conn.exec_driver_sql(
        "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements WHERE starts_with(name, '_ivr_')")
    return dict(rows.all())


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_statement_is_prepared_once_per_connection(db, database_url):
    insert_call(db, "S1")
    with db.engine.connect() as conn:
        for step in range(2, 6):
            with conn.begin():
                _LOCK.execute(conn, {"key": "S1"}, riders=[(_SET_STEP, {"key": "S1", "new_step": step})])
        prepared = _prepared_here(conn)
    lock = [count for sql, count in prepared.items() if "FOR UPDATE" in sql]
    update = [count for sql, count in prepared.items() if sql.startswith("UPDATE calls SET step")]
    assert lock == [4] and update == [4]  # one statement each, run four times
    assert db.get_call("S1").step == 5


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_statements_deallocated_behind_its_back_are_prepared_again(db, database_url):
    insert_call(db, "S1")
    with db.engine.connect() as conn:
        with conn.begin():
            _LOCK.execute(conn, {"key": "S1"})
        conn.exec_driver_sql("DEALLOCATE ALL")
        conn.commit()
        with pytest.raises(sa.exc.DBAPIError, match="does not exist"), conn.begin():
            _LOCK.execute(conn, {"key": "S1"})  # the one round trip that finds it gone
        with conn.begin():
            assert _LOCK.execute(conn, {"key": "S1"}).first() == {"session": "S1", "step": 1}
        assert list(_prepared_here(conn).values()) == [1]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_rider_whose_preparation_was_skipped_is_prepared_again(db, database_url):
    insert_call(db, "S1")
    with db.engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            # the statement fails, so the server skips the rest of its round trip: the rider's PREPARE too
            _SET_DIRECTION.execute(conn, {"key": "S1", "new_direction": "sideways"},
                                   riders=[(_SET_STEP, {"key": "S1", "new_step": 5})])
        assert not [sql for sql in _prepared_here(conn) if sql.startswith("UPDATE calls SET step")]
        conn.rollback()
        with conn.begin():
            _LOCK.execute(conn, {"key": "S1"}, riders=[(_SET_STEP, {"key": "S1", "new_step": 6})])
    assert db.get_call("S1").step == 6


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_prepared_statements_outlive_a_rollback(db, database_url):
    # psycopg's rollback() sends DEALLOCATE ALL once it has prepared statements of its own (after a
    # statement's fifth run, by default): the engine's connections have that turned off
    insert_call(db, "S1")
    with db.engine.connect() as conn:
        with conn.begin():
            _LOCK.execute(conn, {"key": "S1"})
        with conn.begin():
            for _ in range(6):
                conn.execute(sa.select(calls.c.step).where(calls.c.session == "S1")).scalar()
        with pytest.raises(RuntimeError), conn.begin():
            conn.execute(sa.update(calls).values(step=9))
            raise RuntimeError("rolled back")
        with conn.begin():
            assert _LOCK.execute(conn, {"key": "S1"}).first() == {"session": "S1", "step": 1}
        assert [count for sql, count in _prepared_here(conn).items() if "FOR UPDATE" in sql] == [2]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_round_trip_larger_than_the_sockets_buffer_is_sent_whole(db, database_url):
    insert_call(db, "S1")
    state = {"blob": "é" * 3_000_000, "n": 1}  # about 6 MB: several times a socket's send buffer

    def write() -> None:
        with db.transaction() as tx:
            _LOCK.execute(tx.conn, {"key": "S1"}, riders=[(_SET_STATE, {"key": "S1", "new_state": state})])

    # what is left unsent would leave the server waiting for the rest, and this test with it
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(60)
    assert not writer.is_alive(), "the round trip did not finish: part of it was never sent"
    assert db.get_call("S1").state == state


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_connection_lost_mid_round_trip_is_invalidated(db, database_url):
    insert_call(db, "S1")
    with db.engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.commit()
        with db.engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(sa.exc.OperationalError) as lost, conn.begin():
            _LOCK.execute(conn, {"key": "S1"})
        assert lost.value.connection_invalidated
    assert db.get_call("S1").step == 1  # the pool hands out a working connection again


def test_postgresql_text_numbers_each_parameter_once():
    from engine.storage.direct import _numbered

    sql = "SELECT %(a)s, %(b_x)s, %(a)s WHERE name LIKE 'x%%'"
    assert _numbered(sql, {"b x": "b_x"}) == (b"SELECT $1, $2, $1 WHERE name LIKE 'x%'", ("a", "b x"))


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_round_trip_broken_off_leaves_the_connection_usable(db, database_url, monkeypatch):
    from engine.storage import direct

    insert_call(db, "S1")
    real_wait, broken = direct._wait, []

    def wait_interrupted_once(fd, events):
        if not broken:
            broken.append(fd)
            raise KeyboardInterrupt  # as a signal would, while the answers are awaited
        return real_wait(fd, events)

    with db.engine.connect() as conn:
        monkeypatch.setattr(direct, "_wait", wait_interrupted_once)
        with pytest.raises(KeyboardInterrupt), conn.begin():
            _LOCK.execute(conn, {"key": "S1"}, riders=[(_SET_STEP, {"key": "S1", "new_step": 4})])
        driver = conn.connection.dbapi_connection
        assert broken and driver.pgconn.pipeline_status == 0 and not driver.closed  # answers read, pipeline left
        with conn.begin():
            assert _LOCK.execute(conn, {"key": "S1"}).first() == {"session": "S1", "step": 1}  # rolled back


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_round_trip_that_cannot_be_finished_closes_its_connection(db, database_url, monkeypatch):
    from engine.storage import direct

    insert_call(db, "S1")

    def wait_never(fd, events):
        raise RuntimeError("the wait failed")

    with db.engine.connect() as conn:
        driver = conn.connection.dbapi_connection
        monkeypatch.setattr(direct, "_wait", wait_never)
        # the rollback at the end of the block then finds the connection closed, and says so
        with pytest.raises(sa.exc.OperationalError, match="closed") as failed, conn.begin():
            _LOCK.execute(conn, {"key": "S1"})
        monkeypatch.undo()
        chain, error = [], failed.value
        while error is not None:
            chain.append(type(error))
            error = error.__cause__ or error.__context__
        assert RuntimeError in chain  # the first failure is kept in the chain
        assert driver.closed and failed.value.connection_invalidated  # not left half way through a pipeline
    assert db.get_call("S1").step == 1  # the pool hands out a working connection
