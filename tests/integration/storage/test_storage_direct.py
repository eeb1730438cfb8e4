"""The request path's statements run on the driver (engine.storage.direct): same SQL, same types,
same results as through SQLAlchemy, and driver errors still come out as SQLAlchemy's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from storage_helpers import insert_call

from engine.storage.direct import DirectStatement
from engine.storage.errors import ConcurrentUpdate, DuplicateBlock
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
