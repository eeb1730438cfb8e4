"""kill -9 of gunicorn workers in the middle of a burst of calls.

The engine runs under gunicorn (deploy/gunicorn.conf.py: 2 gthread workers) on PostgreSQL, with
``IVR_RECOVERY_INTERVAL=1`` so that every worker looks for interrupted blocks every second. Twenty
scripted callers ring at once; every provider request takes 0.2 s (so a worker is very likely to be
killed between commit and send, or mid-send). Two workers are killed with SIGKILL during the burst,
one after the other; gunicorn starts new ones.

A notification the dying worker did not answer is posted once more, as an at-least-once sender
would (Hoiio itself documents "more than 1 notification" may arrive): either the first delivery had
committed (the copy is a duplicate) or it had not (the copy does the work).

Then: every call the fake started exists and ended, both on the fake and in the database; nothing
was advanced twice (audit: one block per (session, step), steps 1..n, each carried out by the
provider at most once, one accepted notification per step); no block is left ``pending``/``sending``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import (
    ACME_MAIN,
    RECOVERY,
    Redeliverer,
    Server,
    audit,
    describe,
    new_fake,
    start_gunicorn,
    wait_until,
)

from engine.fakes import CallerScript, FakeHoiio
from engine.storage import Database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CALLS = 20
#: (script, blocks the call takes, how the fake ends it, the engine's outcome)
SCRIPTS = (
    (CallerScript(keys=["1"]), 3, "transferred", "transferred"),
    (CallerScript(keys=["0"]), 4, "hangup", "hung up by flow"),
    (CallerScript(keys=["7", "2"]), 4, "transferred", "transferred"),
    (CallerScript(keys=["3"], hangup_after=1), 2, "caller_hangup", "caller hung up"),
)


@pytest.fixture
def killer_fake() -> Iterator[FakeHoiio]:
    fake = new_fake(notify_delay=0.05)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def server(tmp_path: Path, killer_fake: FakeHoiio, pg_url: str, flows_dir: Path) -> Iterator[Server]:
    assert killer_fake.base_url is not None
    server = start_gunicorn(tmp_path, api_url=killer_fake.base_url, database_url=pg_url, flows=flows_dir,
                            name="gunicorn-kill", extra_env=RECOVERY)  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


def test_kill_9_workers_mid_burst(server: Server, killer_fake: FakeHoiio, pg_db: Database) -> None:
    fake = killer_fake
    fake.inject("*", delay=0.2, times=None)  # every provider request keeps a worker thread busy
    expected_requests = sum(SCRIPTS[i % len(SCRIPTS)][1] for i in range(CALLS))
    started = time.monotonic()
    sessions = [
        fake.incoming_call(f"{server.url}/hoiio/answer", caller=f"+65912300{i:02d}", to=ACME_MAIN,
                           script=SCRIPTS[i % len(SCRIPTS)][0])
        for i in range(CALLS)
    ]  # fmt: skip

    original = server.worker_pids()
    assert len(original) == 2, original
    killed: list[int] = []

    def all_ended() -> bool:
        return all(fake.sessions[s].ended for s in sessions) and all(
            (row := pg_db.get_call(s)) is not None and row.status == "ended" for s in sessions
        )

    # What a killed worker never answered is posted again (at least once delivery) meanwhile;
    # interrupted sends are finished by the recovery pass (blocks untouched for 10 s or more).
    with Redeliverer(fake, sessions, after=0.5) as again:
        for share, victim in ((0.25, original[0]), (0.6, original[1])):
            wait_until(lambda share=share: len(fake.log) >= share * expected_requests, 30,
                       f"{share:.0%} of the burst's provider requests")  # fmt: skip
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        replaced = server.wait_workers(timeout=30, exclude=killed)
        assert server.proc.alive(), server.proc.output()
        assert not set(replaced) & set(killed)
        try:
            wait_until(all_ended, 45, "every call to end", interval=0.25)
        except AssertionError:
            stuck = [s for s in sessions
                     if not fake.sessions[s].ended or (pg_db.get_call(s) or {}).get("status") != "ended"]  # fmt: skip
            raise AssertionError("calls not ended:\n" + "\n".join(describe(pg_db, fake, s) for s in stuck)) from None
    elapsed = time.monotonic() - started
    assert again.results, "the kills interrupted no request: nothing was tested"
    assert not again.unresolved(), again.results

    report = audit(pg_db, fake, sessions, settle=15)
    assert not report.problems, str(report) + "\n" + "\n".join(describe(pg_db, fake, s) for s in sessions)
    for i, sid in enumerate(sessions):
        _script, blocks, end_reason, outcome = SCRIPTS[i % len(SCRIPTS)]
        snapshot = fake.sessions[sid]
        row = report.calls[sid]
        story = describe(pg_db, fake, sid)
        # same path as an undisturbed call: nothing skipped, nothing repeated
        assert len(report.blocks[sid]) == blocks, story
        assert len(snapshot.blocks) == blocks, story
        assert snapshot.end_reason == end_reason, story
        assert row.outcome == outcome, story
    recovered = [b for s in sessions for b in report.blocks[s]
                 if b.status == "unknown" or (b.status == "sent" and b.attempts > 1)]  # fmt: skip
    print(f"\n{CALLS} calls, {len(killed)} workers killed, {len(again.results)} notifications redelivered, "
          f"{len(recovered)} blocks interrupted mid-send, {elapsed:.1f} s")  # fmt: skip
