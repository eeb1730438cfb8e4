"""The repository API on SQLite and PostgreSQL: calls, notifications and dedupe, the outbox, side
calls, flow versions, the timeline and pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from storage_helpers import insert_call, sample_state

from engine.core.state import CallState
from engine.storage import (
    ConcurrentUpdate,
    DuplicateBlock,
    DuplicateCall,
    NestedTransaction,
    StorageError,
    make_dedupe_key,
)
from engine.storage.tables import CALL_UPDATED_COLUMNS, notifications

# ---------------------------------------------------------------------------------------- calls


def test_insert_call_round_trips_every_field(db):
    state = sample_state("S1", 3)
    with db.transaction() as tx:
        row = tx.insert_call(
            session="S1",
            flow="support",
            flow_version="v1",
            direction="outbound",
            state=state.to_dict(),
            node="menu",
            step=3,
            status="active",
            caller="+6561234567",
            called="+6560000000",
            dest="+6569999999",
            txn_ref="TXN1",
            billing={"duration": "0"},
        )
    assert row.row_version == 1
    stored = db.get_call("S1")
    assert stored == row
    assert stored.direction == "outbound" and stored.dest == "+6569999999" and stored.txn_ref == "TXN1"
    assert stored.call_state() == state
    assert stored.created_at.tzinfo is not None and stored.created_at.utcoffset() == timedelta(0)
    assert stored.ended_at is None
    assert db.get_call("nobody") is None


def test_insert_call_twice_raises_duplicate_call_and_keeps_the_transaction_usable(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        with pytest.raises(DuplicateCall):
            tx.insert_call(session="S1", flow="f", flow_version="v", state={})
        assert tx.lock_call("S1").flow == "support"
        tx.add_block("S1", 2, "menu", "play", "ivr/middle/play", {"msg": "hi"})
    assert len(db.blocks_for("S1")) == 1


def test_update_call_writes_state_and_bumps_row_version(db, clock):
    insert_call(db, "S1", step=1)
    ended = sample_state("S1", 2, status="ended", outcome="hangup", billing={"duration": "42"})
    with db.transaction() as tx:
        row = tx.lock_call("S1")
        new_version = tx.update_call(
            "S1",
            state=ended.to_dict(),
            node="bye",
            step=2,
            status="ended",
            outcome="hangup",
            billing={"duration": "42"},
            expected_row_version=row.row_version,
            txn_ref="TXN-NEW",
        )
    assert new_version == 2
    stored = db.get_call("S1")
    assert (stored.step, stored.node, stored.status, stored.outcome) == (2, "bye", "ended", "hangup")
    assert stored.billing == {"duration": "42"} and stored.txn_ref == "TXN-NEW"
    assert stored.caller == "+6561234567"  # None means "keep"
    assert stored.row_version == 2 and stored.call_state() == ended
    assert stored.ended_at is not None and stored.updated_at > stored.created_at
    first_end = stored.ended_at

    with db.transaction() as tx:
        tx.update_call("S1", ended.to_dict(), "bye", 2, "ended", "hangup", expected_row_version=2)
    assert db.get_call("S1").ended_at == first_end  # the first end is kept


def test_update_call_with_an_old_row_version_raises_concurrent_update(db):
    insert_call(db, "S1", step=1)
    state = sample_state("S1", 2).to_dict()
    with db.transaction() as tx:
        tx.update_call("S1", state, "menu", 2, "active", expected_row_version=1)
    with pytest.raises(ConcurrentUpdate) as caught, db.transaction() as tx:
        tx.update_call("S1", state, "menu", 3, "active", expected_row_version=1)
    assert caught.value.expected == 1 and caught.value.actual == 2
    assert "row_version is 2, expected 1" in str(caught.value)
    assert db.get_call("S1").step == 2  # rolled back

    with pytest.raises(ConcurrentUpdate, match="no longer exists"), db.transaction() as tx:
        tx.update_call("GONE", state, "menu", 3, "active", expected_row_version=1)


def test_a_failing_transaction_rolls_everything_back(db):
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.insert_call(session="S1", flow="f", flow_version="v", state={})
        tx.add_block("S1", 1, "n", "play", "ivr/middle/play", {})
        raise RuntimeError("boom")
    assert db.get_call("S1") is None
    assert db.blocks_for("S1") == []


def test_a_transaction_cannot_be_used_after_its_block(db):
    with db.transaction() as tx:
        pass
    with pytest.raises(StorageError, match="has ended"):
        tx.get_call("S1")


def test_reading_transactions_refuse_writes(db):
    with db.reading() as tx, pytest.raises(StorageError, match="read-only"):
        tx.insert_call(session="S1", flow="f", flow_version="v", state={})


def test_writing_through_db_inside_a_transaction_fails_fast(db):
    with db.transaction() as tx:
        tx.record_flow_version("f", "v1", "source")
        with pytest.raises(NestedTransaction, match=r"tx\.\* method"):
            db.record_flow_version("f", "v2", "source")
        with pytest.raises(NestedTransaction), db.transaction():
            pass
        assert db.get_call("S1") is None  # reads are fine
    assert db.record_flow_version("f", "v2", "source") is True


def _update(db, session, status="active"):
    with db.transaction() as tx:
        row = tx.lock_call(session)
        tx.update_call(session, row.state, row.node, row.step + 1, status, None, expected_row_version=row.row_version)


def test_list_calls_most_recently_started_first_and_finished_calls_by_when_they_ended(db):
    for session in ("A", "B", "C", "D"):
        insert_call(db, session)
    _update(db, "B", "ended")
    _update(db, "A", "ended")  # ended after B
    _update(db, "C")  # a call in progress moves on: its place in the lists does not change
    assert [c.session for c in db.list_calls()] == ["D", "C", "B", "A"]
    assert [c.session for c in db.list_calls(limit=2)] == ["D", "C"]
    assert [c.session for c in db.list_calls(status="active")] == ["D", "C"]
    assert [c.session for c in db.list_calls(status="ended")] == ["A", "B"]
    assert [c.session for c in db.list_calls(status="ended", limit=1)] == ["A"]
    assert [c.session for c in db.list_calls(status=("ended", "active"), limit=1)] == ["D"]
    assert db.count_calls("active") == 2 and db.count_calls("ended") == 2 and db.count_calls() == 4


def test_no_index_of_calls_holds_a_column_a_call_in_progress_changes(db):
    # what lets PostgreSQL update a call's row in place, with no new index entry, at every notification
    indexes = sa.inspect(db.engine).get_indexes("calls")
    assert indexes, "the inspection found no index at all"
    for index in indexes:
        assert not set(index["column_names"]) & set(CALL_UPDATED_COLUMNS), index


def test_a_call_in_progress_is_updated_in_place_on_postgresql(db):
    if db.backend != "postgresql":
        pytest.skip("heap-only tuple updates are PostgreSQL's")
    insert_call(db, "S1")
    hot = ("SELECT pg_stat_get_xact_tuples_hot_updated('calls'::regclass),"
           " pg_stat_get_xact_tuples_updated('calls'::regclass)")
    with db.transaction() as tx:  # the counters of the current transaction, read in it
        for step in range(1, 4):
            row = tx.lock_call("S1")
            tx.update_call("S1", {**row.state, "n": step}, f"node{step}", step, "active", None,
                           expected_row_version=row.row_version)
        assert tuple(tx.conn.execute(sa.text(hot)).one()) == (3, 3)
        row = tx.lock_call("S1")
        tx.update_call("S1", row.state, row.node, 4, "ended", "hangup", expected_row_version=row.row_version)
        assert tuple(tx.conn.execute(sa.text(hot)).one()) == (3, 4)  # its end changes status and ended_at


# ---------------------------------------------------------------------------------------- notifications

RAW_BODY = b"session=S1&digits=1%23&call_state=ongoing&junk=\x00\xff\xfe"


def test_record_and_finish_notification(db):
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "Basic c2VjcmV0",
        "Cookie": "a=b",
        "X-Hoiio-Signature": "abc123",
        "X-Access-Token": "tok",
    }
    nid = db.record_notification(
        route="POST /hoiio/notify/support",
        method="POST",
        query_string="step=2&sig=ff&odd=\x00",
        headers=headers,
        body=RAW_BODY,
    )
    row = db.get_notification(nid)
    assert row.body == RAW_BODY  # byte for byte, NUL and non-UTF-8 included
    assert row.headers == {"Content-Type": "application/x-www-form-urlencoded", "X-Hoiio-Signature": "abc123"}
    assert row.query_string == "step=2&sig=ff&odd=\ufffd"
    assert row.outcome is None and row.session is None and row.dedupe_key is None

    response = {"status": "ok", "blocks": [{"endpoint": "ivr/middle/play"}]}
    db.finish_notification(nid, "accepted", None, response, "S1", 2, 12.6)
    row = db.get_notification(nid)
    assert (row.outcome, row.session, row.step, row.duration_ms, row.response) == ("accepted", "S1", 2, 13, response)
    assert row.to_dict()["received_at"].endswith("+00:00")

    with pytest.raises(ValueError, match="outcome must be one of"):
        db.finish_notification(nid, "exploded")


def test_recent_notifications_newest_first_with_filters(db):
    first = db.record_notification("POST /a", "POST", session="S1")
    second = db.record_notification("POST /b", "POST", session="S2")
    third = db.record_notification("POST /c", "POST", session="S1")
    db.finish_notification(first, "accepted")
    db.finish_notification(second, "invalid", "bad form")
    assert [n.id for n in db.recent_notifications()] == [third, second, first]
    assert [n.id for n in db.recent_notifications(limit=1)] == [third]
    assert [n.id for n in db.recent_notifications(session="S1")] == [third, first]
    [invalid] = db.recent_notifications(outcome="invalid")
    assert invalid["outcome"] == invalid.outcome == "invalid" and invalid.get("missing") is None
    with pytest.raises(KeyError):
        invalid["missing"]


def test_header_pairs_are_joined_and_long_fields_clipped(db):
    nid = db.record_notification(
        "POST /x", "POST", "", [("Via", "a"), ("Via", "b"), ("set-cookie", "x")], "text", session="S" * 100
    )
    row = db.get_notification(nid)
    assert row.headers == {"Via": "a, b"}
    assert row.body == b"text"
    assert row.session == "S" * 64


def test_claim_notification_is_once_per_key_and_undone_by_rollback(db):
    key = make_dedupe_key("S1", 2, "gather", "ongoing")
    assert len(key) == 64
    first = db.record_notification("POST /n", "POST", body=b"a")
    second = db.record_notification("POST /n", "POST", body=b"a")

    with pytest.raises(RuntimeError), db.transaction() as tx:
        assert tx.claim_notification(key, notification_id=first) is True
        raise RuntimeError("processing failed: the claim must not survive")
    assert db.get_notification(first).dedupe_key is None

    with db.transaction() as tx:
        assert tx.claim_notification(key, notification_id=first) is True
    with db.transaction() as tx:
        assert tx.claim_notification(key, notification_id=second) is False
        tx.record_flow_version("f", "v", "still usable after a refused claim")
    assert db.get_notification(first).dedupe_key == key
    assert db.get_notification(second).dedupe_key is None


def test_claim_notification_without_a_record_uses_a_marker_row(db):
    with db.transaction() as tx:
        assert tx.claim_notification("k1") is True
        assert tx.claim_notification("k1") is False
    with db.transaction() as tx:
        assert tx.claim_notification("k1") is False
        with pytest.raises(StorageError, match="no recorded notification"):
            tx.claim_notification("k2", notification_id=999_999)


def test_dedupe_key_is_unique_in_the_schema(db):
    row = {
        "received_at": datetime.now(UTC),
        "route": "r",
        "method": "POST",
        "query_string": "",
        "headers": {},
        "body": b"",
        "dedupe_key": "same",
    }
    with db.engine.begin() as conn:
        conn.execute(sa.insert(notifications).values(**row))
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(sa.insert(notifications).values(**row))
    with db.engine.begin() as conn:  # NULL keys never collide
        conn.execute(sa.insert(notifications).values(**{**row, "dedupe_key": None}))
        conn.execute(sa.insert(notifications).values(**{**row, "dedupe_key": None}))


# ---------------------------------------------------------------------------------------- outbox


def test_add_block_and_duplicate_block(db):
    insert_call(db, "S1")
    params = {"msg": "Press 1", "max_digits": "1", "timeout": "5"}
    with db.transaction() as tx:
        block_id = tx.add_block("S1", 2, "menu", "gather", "ivr/middle/gather", params)
        with pytest.raises(DuplicateBlock) as caught:
            tx.add_block(session="S1", step=2, node="other", kind="play", endpoint="ivr/middle/play", params={})
        assert (caught.value.session, caught.value.step) == ("S1", 2)
        tx.add_block("S1", 3, "menu", "hangup", "ivr/end/hangup", [("msg", "bye")])
    block = db.get_block(block_id)
    assert (block.status, block.attempts, block.kind, block.node) == ("pending", 0, "gather", "menu")
    assert list(block.params.items()) == list(params.items())  # order kept
    assert [b.step for b in db.blocks_for("S1")] == [2, 3]


def test_add_block_refuses_credentials(db):
    insert_call(db, "S1")
    with db.transaction() as tx, pytest.raises(ValueError, match="access_token, app_id"):
        tx.add_block("S1", 2, "menu", "play", "ivr/middle/play", {"msg": "x", "access_token": "t", "app_id": "a"})


def test_mark_block_by_id_or_session_step(db):
    insert_call(db, "S1")
    with db.transaction() as tx:
        block_id = tx.add_block("S1", 2, "menu", "play", "ivr/middle/play", {"msg": "hi"})

    assert db.mark_block(block_id, "sending", from_status=("pending",)) is True
    assert db.mark_block(block_id, "sending", from_status=("pending",)) is False  # already claimed
    sending = db.get_block(block_id)
    assert (sending.status, sending.attempts, sending.sent_at) == ("sending", 1, None)

    changed = db.mark_block(
        session="S1",
        step=2,
        status="sent",
        http_status=200,
        provider_status="success_ok",
        response={"status": "success_ok"},
        duration_ms=40.2,
        attempts=1,
    )
    assert changed is True
    sent = db.get_block(block_id)
    assert (sent.status, sent.http_status, sent.provider_status, sent.duration_ms) == ("sent", 200, "success_ok", 40)
    assert sent.response == {"status": "success_ok"} and sent.sent_at is not None and sent.error is None

    assert db.mark_block(session="S1", step=99, status="failed") is False
    with pytest.raises(ValueError, match="block status"):
        db.mark_block(block_id, "lost")
    with pytest.raises(ValueError, match="block_id, or session and step"):
        db.mark_block(status="sent")


def test_blocks_in_status_finds_stuck_blocks_for_recovery(db, clock):
    insert_call(db, "S1")
    with db.transaction() as tx:
        old_pending = tx.add_block("S1", 2, "a", "play", "ivr/middle/play", {})
        old_sending = tx.add_block("S1", 3, "b", "play", "ivr/middle/play", {})
        done = tx.add_block("S1", 4, "c", "play", "ivr/middle/play", {})
    db.mark_block(old_sending, "sending")
    db.mark_block(done, "sent")
    clock.advance(timedelta(seconds=60))
    with db.transaction() as tx:
        fresh = tx.add_block("S1", 5, "d", "play", "ivr/middle/play", {})

    assert [b.id for b in db.blocks_in_status(("pending", "sending"), older_than_seconds=30)] == [
        old_pending,
        old_sending,
    ]
    assert [b.id for b in db.blocks_in_status()] == [old_pending, old_sending, fresh]
    assert [b.id for b in db.blocks_in_status("sent")] == [done]


# ---------------------------------------------------------------------------------------- the rest


def test_side_calls_and_call_events(db):
    side = db.add_side_call("conference/call", {"dest": "+6561111111"}, session="S1")
    assert db.update_side_call(side, "sent", {"status": "success_ok", "txn_ref": "T9"}, txn_ref="T9") is True
    assert db.update_side_call(999_999, "sent") is False
    [row] = db.side_calls(txn_ref="T9")
    assert (row.id, row.kind, row.session, row.status) == (side, "conference/call", "S1", "sent")
    assert row.request == {"dest": "+6561111111"} and row.response["txn_ref"] == "T9"

    first = db.record_call_event("T9", "answered", {"call_state": "answered"})
    second = db.record_call_event("T9", "ended", {"call_state": "ended", "duration": "12"})
    assert [(e.id, e.kind) for e in db.call_events("T9")] == [(first, "answered"), (second, "ended")]
    assert db.call_events("other") == []


def test_flow_versions_keep_the_first_source(db):
    assert db.record_flow_version("support", "abc123", "name: support\n") is True
    assert db.record_flow_version("support", "abc123", "something else") is False
    assert db.get_flow_source("support", "abc123") == "name: support\n"
    assert db.get_flow_source("support", "zzz") is None


def test_timeline_merges_notifications_blocks_and_side_calls_in_time_order(db):
    answer = db.record_notification("POST /hoiio/answer", "POST", body=b"a", session="S1")
    insert_call(db, "S1")
    with db.transaction() as tx:
        b2 = tx.add_block("S1", 2, "menu", "gather", "ivr/middle/gather", {})
    notify = db.record_notification("POST /hoiio/notify", "POST", body=b"b", session="S1", step=2)
    side = db.add_side_call("conference/call", {}, session="S1")
    with db.transaction() as tx:
        b3 = tx.add_block("S1", 3, "bye", "hangup", "ivr/end/hangup", {})
    db.record_notification("POST /hoiio/notify", "POST", body=b"c", session="OTHER")

    timeline = db.timeline("S1")
    assert [(e.kind, e.row.id) for e in timeline] == [
        ("notification", answer),
        ("block", b2),
        ("notification", notify),
        ("side_call", side),
        ("block", b3),
    ]
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)
    as_json = timeline[0].to_dict()
    assert as_json["kind"] == "notification" and as_json["body"] == "a" and as_json["id"] == answer
    assert timeline[1]["kind"] == "block" and timeline[1]["step"] == 2 and timeline[1]["row"].id == b2


def test_timeline_shows_the_conference_requests_the_call_made_in_their_room(db):
    insert_call(db, "S1")
    insert_call(db, "S2")

    def conference(made_by: str | None) -> tuple[int, int]:
        request = {"params": {"room": "R"}, "origin": "flow" if made_by else "api"}
        if made_by:
            request["session"] = made_by
        ref = db.add_side_call("conference/call", request, session="room:R", status="sent")
        leg = db.add_side_call("conference/participant", {"number": "+6561000001", "room": "R", "request_id": ref},
                               txn_ref=f"T{ref}", session="room:R", status="active")  # fmt: skip
        return ref, leg

    mine = conference("S1")
    theirs = conference("S2")
    from_the_api = conference(None)
    moderation = db.add_side_call("conference/moderate", {"action": "mute", "room": "R"}, txn_ref=f"T{mine[1]}",
                                  session="room:R", status="sent")  # fmt: skip

    def sides(session: str) -> list[int]:
        return [e.row.id for e in db.timeline(session) if e.kind == "side_call"]

    assert sides("S1") == list(mine)
    assert sides("S2") == list(theirs)
    assert sides("room:R") == [*mine, *theirs, *from_the_api, moderation]  # the room's own view
    assert sides("UNKNOWN") == []


def test_timeline_puts_a_notification_before_a_block_written_at_the_same_instant(db, clock):
    insert_call(db, "S1")
    clock.tick = timedelta(0)
    with db.transaction() as tx:
        block = tx.add_block("S1", 2, "menu", "play", "ivr/middle/play", {})
    note = db.record_notification("POST /n", "POST", session="S1")
    assert [e.kind for e in db.timeline("S1")] == ["notification", "block"]
    assert [e.row.id for e in db.timeline("S1")] == [note, block]


def test_prune_removes_old_calls_with_their_blocks_and_old_records(db, clock):
    insert_call(db, "OLD_ENDED")
    insert_call(db, "ABANDONED")
    insert_call(db, "LONG_ENDED_RECENTLY")
    with db.transaction() as tx:
        for session in ("OLD_ENDED", "ABANDONED", "LONG_ENDED_RECENTLY"):
            tx.add_block(session, 2, "menu", "play", "ivr/middle/play", {})
        row = tx.lock_call("OLD_ENDED")
        tx.update_call("OLD_ENDED", row.state, None, 2, "ended", "hangup", expected_row_version=1)
    db.record_notification("POST /n", "POST", session="OLD_ENDED")
    db.add_side_call("conference/call", {})
    db.record_call_event("T1", "ended", {})
    db.record_flow_version("support", "v1", "src")

    clock.advance(timedelta(days=31))
    with db.transaction() as tx:
        row = tx.lock_call("LONG_ENDED_RECENTLY")
        tx.update_call("LONG_ENDED_RECENTLY", row.state, None, 2, "ended", "hangup", expected_row_version=1)
    insert_call(db, "FRESH")
    fresh_note = db.record_notification("POST /n", "POST", session="FRESH")

    counts = db.prune(timedelta(days=30))
    assert counts == {"blocks": 2, "calls": 2, "notifications": 1, "side_calls": 1, "call_events": 1}
    assert {c.session for c in db.list_calls()} == {"LONG_ENDED_RECENTLY", "FRESH"}
    assert len(db.blocks_for("LONG_ENDED_RECENTLY")) == 1
    assert db.get_notification(fresh_note) is not None
    assert db.get_flow_source("support", "v1") == "src"
    assert db.prune(timedelta(days=30)) == dict.fromkeys(counts, 0)


def test_ping_answers_with_the_round_trip_time(db):
    elapsed = db.ping(timeout_s=5.0)
    assert 0 <= elapsed < 5.0


def test_state_json_round_trips_through_call_state(db):
    insert_call(db, "S1")
    state = db.get_call("S1").call_state()
    assert isinstance(state, CallState)
    assert state.sensitive == frozenset({"pin"}) and state.path == (("start", "next"),)
