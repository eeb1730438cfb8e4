"""The provider misbehaves: it answers slower than the client's read timeout, answers
``error_internal_server_error`` (Hoiio's 500) or another retryable status, or drops the connection
before or after carrying the request out.

The engine runs under gunicorn (2 gthread workers x 4 threads) on PostgreSQL; the strict fake Hoiio
answers one request (or a few) with the injected fault. For every fault the caller either goes on as
if nothing happened (a retry succeeded, or the request was carried out and only its answer was lost)
or reaches the flow's error handler, and never hears a block twice; the audit checks the database
against what the fake carried out. While a slow provider request is pending, the server stays
responsive: ``/livez`` answers at once and other calls complete.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fault_support import ACME_MAIN, RECOVERY, Server, audit, describe, start_gunicorn, wait_until

from engine.fakes import CallerScript, FakeHoiio
from engine.storage import Database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CALL_TIMEOUT = 20.0
TRANSFERRED = ("play", "gather", "transfer")
VOICEMAIL = ("play", "gather", "record", "hangup")
TECHNICAL_PROBLEM = ("play", "hangup")  # the gather failed: the error handler's hangup


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake: FakeHoiio, pg_url: str, flows_dir: Path) -> Iterator[Server]:
    assert fake.base_url is not None
    server = start_gunicorn(tmp_path_factory.mktemp("logs"), api_url=fake.base_url, database_url=pg_url,
                            flows=flows_dir, name="gunicorn-provider", extra_env=RECOVERY)  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_faults_left(fake: FakeHoiio) -> Iterator[None]:
    fake.clear_faults()
    yield
    fake.clear_faults()


@dataclass(frozen=True)
class Case:
    endpoint: str
    fault: dict[str, Any]
    keys: tuple[str, ...]
    heard: tuple[str, ...]  # blocks the fake carried out, in order
    outcome: str  # the engine's record of how the call ended
    statuses: dict[str, str] = field(default_factory=dict)  # node -> block status in the outbox


CASES = {
    "500 once, the retry succeeds": Case(
        "ivr/middle/gather", {"status": "error_internal_server_error", "times": 1}, ("1",), TRANSFERRED,
        "transferred", {"main_menu": "sent"}),
    "500 on every attempt: error handler": Case(
        "ivr/middle/gather", {"status": "error_internal_server_error", "times": None}, ("1",), TECHNICAL_PROBLEM,
        "hung up by flow", {"main_menu": "failed", "technical_problem": "sent"}),
    "rate limited twice, then accepted": Case(
        "ivr/middle/play", {"status": "error_rate_limit_exceeded", "times": 2}, ("1",), TRANSFERRED,
        "transferred", {"welcome": "sent"}),
    "transfer carried out, answer lost": Case(
        "ivr/end/transfer", {"drop": True, "processed": True}, ("1",), TRANSFERRED, "transferred",
        {"sales": "unknown"}),
    "record carried out, answer lost": Case(
        "ivr/middle/record", {"drop": True, "processed": True}, ("0",), VOICEMAIL, "hung up by flow",
        {"voicemail": "unknown", "goodbye": "sent"}),
    "hangup dropped before it was carried out: resent": Case(
        "ivr/end/hangup", {"drop": True}, ("0",), VOICEMAIL, "hung up by flow", {"goodbye": "sent"}),
    "gather answered after the read timeout": Case(
        "ivr/middle/gather", {"delay": 5.5}, ("1",), TRANSFERRED, "transferred", {"main_menu": "unknown"}),
}  # fmt: skip


def _finish(fake: FakeHoiio, db: Database, sid: str) -> Any:
    try:
        return fake.wait_until_ended(sid, timeout=CALL_TIMEOUT)
    except TimeoutError:
        story = describe(db, fake, sid)
        fake.hangup_caller(sid)
        raise AssertionError(f"the call did not end:\n{story}") from None


@pytest.mark.parametrize("name", list(CASES))
def test_provider_fault(name: str, fake: FakeHoiio, server: Server, pg_db: Database) -> None:
    case = CASES[name]
    fake.inject(case.endpoint, times=case.fault.get("times", 1),
                **{k: v for k, v in case.fault.items() if k != "times"})  # fmt: skip
    sid = fake.incoming_call(f"{server.url}/hoiio/answer", to=ACME_MAIN, script=CallerScript(keys=case.keys))
    ended = _finish(fake, pg_db, sid)
    story = describe(pg_db, fake, sid)
    assert ended.block_names == case.heard, story
    row = pg_db.get_call(sid)
    assert row is not None and row.status == "ended" and row.outcome == case.outcome, story
    statuses = {b.node: b.status for b in pg_db.blocks_for(sid)}
    for node, status in case.statuses.items():
        assert statuses.get(node) == status, story
    report = audit(pg_db, fake, [sid], settle=2)
    assert not report.problems, f"{report}\n{story}"
    assert server.get("/livez", timeout=2).status_code == 200
    assert server.get("/readyz", timeout=5).status_code == 200


def test_slow_provider_leaves_the_workers_free(fake: FakeHoiio, server: Server, pg_db: Database) -> None:
    """Three calls' first play is answered after 5.5 s (the client gives up after 5 s and does not
    resend a play): while those three worker threads wait, /livez answers at once and three other
    calls go from start to end. The slow calls then go on (the plays were carried out)."""
    fake.inject("ivr/middle/play", delay=5.5, times=3)
    url = f"{server.url}/hoiio/answer"
    slow = [fake.incoming_call(url, caller=f"+659100000{i}", to=ACME_MAIN, script=CallerScript(keys=["1"]))
            for i in range(3)]  # fmt: skip
    # the three plays are being sent (claimed in the outbox) before anything else happens
    wait_until(lambda: all([b.status for b in pg_db.blocks_for(s)] == ["sending"] for s in slow), 10,
               "the three plays to be on their way")  # fmt: skip
    time.sleep(0.3)  # and with the fake, which took the three delays
    pending_since = time.monotonic()
    livez = []
    for _ in range(10):
        started = time.monotonic()
        response = server.get("/livez", timeout=5)
        livez.append((response.status_code, time.monotonic() - started))
        time.sleep(0.1)
    quick = [fake.incoming_call(url, caller=f"+659200000{i}", to=ACME_MAIN, script=CallerScript(keys=["1"]))
             for i in range(3)]  # fmt: skip
    for sid in quick:
        fake.wait_until_ended(sid, timeout=10)
    quick_done = time.monotonic() - pending_since
    assert all(code == 200 and seconds < 0.5 for code, seconds in livez), livez
    assert quick_done < 5.0, f"other calls waited for the slow provider requests ({quick_done:.1f} s)"
    assert all(not fake.sessions[s].ended for s in slow), "the slow calls should still be in their first play"

    for sid in slow:
        ended = _finish(fake, pg_db, sid)
        assert ended.block_names == TRANSFERRED, describe(pg_db, fake, sid)
        first = pg_db.blocks_for(sid)[0]
        assert (first.kind, first.status, first.provider_status, first.attempts) == ("play", "unknown",
                                                                                      "error_timeout", 1)
    report = audit(pg_db, fake, [*slow, *quick], settle=2)
    assert not report.problems, str(report)
    print(f"\n/livez worst {max(s for _, s in livez) * 1000:.0f} ms while 3 provider requests hung; "
          f"3 other calls done in {quick_done:.1f} s")  # fmt: skip
