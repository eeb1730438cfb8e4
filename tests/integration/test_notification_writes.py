"""What one notification writes, and in how many transactions (SQLite and PostgreSQL).

The request path stores the raw notification, the claim of its dedupe key, the call's new state
and the outbox in one transaction, and the provider's answers with the outcome in a second one,
written behind (none when nothing was sent; under load one commit carries many). Whatever
happens, the notification ends up stored exactly once, with its outcome: these tests count commits
and read back the rows.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine.core import interpreter


class Commits:
    """Counts committed write transactions (read-only ones, ``db.reading()``, are not counted),
    and statements committed on their own, which count as one each."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self._engine = engine
        sa.event.listen(engine, "commit", self._on_commit)
        sa.event.listen(engine, "before_cursor_execute", self._on_statement)

    def _on_commit(self, conn) -> None:
        if conn.get_execution_options().get("ivr_write", True):
            self.count += 1

    def _on_statement(self, conn, *_args) -> None:
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            self.count += 1

    def close(self) -> None:
        sa.event.remove(self._engine, "commit", self._on_commit)
        sa.event.remove(self._engine, "before_cursor_execute", self._on_statement)


@pytest.fixture
def commits(harness):
    counter = Commits(harness.db.engine)
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


def test_a_decision_taken_on_a_snapshot_that_went_stale_is_taken_again_under_the_lock(harness, monkeypatch):
    """On SQLite the interpreter runs first on a snapshot read before the write turn; if the call
    changed in between, the snapshot's decision is dropped and the step is decided again on the
    locked row."""
    harness.answer("W6")
    stale = harness.db.get_call("W6")
    harness.reply("W6", "play")  # the call moves on to the menu (gather)
    real_get_call = harness.db.get_call
    monkeypatch.setattr(harness.db, "get_call",
                        lambda session, **kw: stale if session == "W6" else real_get_call(session, **kw))
    response = harness.reply("W6", "gather", digits="1")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"
    assert harness.hoiio.last()[1]["msg"] == "Enter your four digit PIN."
