"""PostgreSQL stops (``pg_ctl stop -m fast``) while calls are running, and starts again.

The engine runs under gunicorn (2 gthread workers) on a PostgreSQL cluster of this test's own (a
fresh ``initdb`` on a free port), so stopping it takes nothing away from other test processes. The
cluster is started again in a ``finally`` whatever happens.

During the outage:

* a notification is refused fast and clearly: HTTP 503 with a JSON body within a couple of
  seconds, nothing half-done (the provider may post it again);
* the workers are not hung: ``/livez`` answers 200 at once, ``/readyz`` says 503;

after it, without restarting anything:

* ``/readyz`` is 200 again, the notifications refused meanwhile are accepted when posted again,
  interrupted sends are finished by the recovery pass, and new calls go through;
* the same gunicorn master and workers are serving (nobody crashed), and the audit is clean.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fault_support import (
    ACME_MAIN,
    CALLER,
    RECOVERY,
    PrivatePostgres,
    Redeliverer,
    Server,
    audit,
    describe,
    is_json,
    new_fake,
    signed,
    start_gunicorn,
    wait_until,
)

from engine.fakes import CallerScript, FakeHoiio
from engine.storage import Database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OUTAGE = 4.0  # seconds the database is down
FAST = 3.0  # a refusal during the outage comes within this many seconds


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def outage_fake() -> Iterator[FakeHoiio]:
    fake = new_fake(notify_delay=0.15)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def db(cluster: PrivatePostgres) -> Iterator[Database]:
    db = Database.open(cluster.url, auto_migrate=True)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, outage_fake: FakeHoiio, cluster: PrivatePostgres, db: Database,
           flows_dir: Path) -> Iterator[Server]:  # fmt: skip
    assert outage_fake.base_url is not None
    server = start_gunicorn(tmp_path_factory.mktemp("logs"), api_url=outage_fake.base_url, database_url=cluster.url,
                            flows=flows_dir, name="gunicorn-pg-outage", extra_env=RECOVERY)  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


def _timed(fn, *args, **kwargs) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = fn(*args, **kwargs)
    return response, time.monotonic() - started


def _answer(server: Server, session: str) -> tuple[requests.Response, float]:
    body, headers = signed({"ivr_block": "answer", "session": session, "txn_ref": f"AA-{session}", "from": CALLER,
                            "to": ACME_MAIN, "call_state": "ringing"})  # fmt: skip
    return _timed(server.post, "/hoiio/answer", data=body, headers=headers, timeout=15)


def test_database_outage_under_load(server: Server, outage_fake: FakeHoiio, cluster: PrivatePostgres,
                                    db: Database) -> None:  # fmt: skip
    fake = outage_fake
    master, workers = server.proc.pid, server.worker_pids()
    url = f"{server.url}/hoiio/answer"
    # warm up: a call goes through
    first = fake.incoming_call(url, to=ACME_MAIN, script=CallerScript(keys=["1"]))
    fake.wait_until_ended(first, timeout=15)

    # load: callers keep ringing (and pressing keys) for the whole test
    sessions: list[str] = [first]
    stop_load = threading.Event()

    def ring() -> None:
        i = 0
        while not stop_load.is_set() and i < 40:
            sessions.append(fake.incoming_call(url, caller=f"+65912345{i:02d}", to=ACME_MAIN,
                                               script=CallerScript(keys=["7", "0" if i % 2 else "2"])))  # fmt: skip
            i += 1
            stop_load.wait(0.25)

    loader = threading.Thread(target=ring, name="ring", daemon=True)
    during: dict[str, list] = {"answers": [], "livez": [], "readyz": []}
    with Redeliverer(fake, sessions, after=1.0, attempts=8) as again:
        loader.start()
        try:
            time.sleep(1.5)
            outage_started = time.monotonic()
            cluster.stop("fast")
            try:
                n = 0
                while time.monotonic() - outage_started < OUTAGE:
                    during["livez"].append(_timed(server.get, "/livez", timeout=5))
                    during["answers"].append(_answer(server, f"OUT{n}"))
                    during["readyz"].append(_timed(server.get, "/readyz", timeout=5))
                    n += 1
                # refused before the database is needed: the refusal is still JSON, not a crash page
                body, headers = signed({"ivr_block": "play", "session": "OUT", "pad": "x" * 70_000})
                during["oversized"] = [_timed(server.post, "/hoiio/notify?step=1&sig=0", data=body, headers=headers)]
            finally:
                cluster.start()
            outage = time.monotonic() - outage_started
            # by itself: ready again, and a fresh call goes through
            wait_until(lambda: server.get("/readyz", timeout=5).status_code == 200, 20, "/readyz 200 after the outage")
            after = fake.incoming_call(url, caller="+6591239999", to=ACME_MAIN, script=CallerScript(keys=["1"]))
            sessions.append(after)
            fake.wait_until_ended(after, timeout=15)
        finally:
            stop_load.set()
            loader.join(15)

        def all_ended() -> bool:
            return all(fake.sessions[s].ended and (row := db.get_call(s)) is not None and row.status == "ended"
                       for s in list(sessions))  # fmt: skip

        try:
            wait_until(all_ended, 40, "every call to end", interval=0.25)
        except AssertionError:
            stuck = [s for s in sessions
                     if not fake.sessions[s].ended or (db.get_call(s) or {}).get("status") != "ended"]  # fmt: skip
            raise AssertionError("calls not ended:\n" + "\n".join(describe(db, fake, s) for s in stuck)) from None

    # During the outage: clear, fast refusals; the workers kept answering.
    assert during["answers"], "no request was made during the outage"
    for response, seconds in during["answers"]:
        assert response.status_code == 503, (response.status_code, response.text[:300])
        assert is_json(response) and response.json()["status"] == "error", response.text[:300]
        assert seconds < FAST, f"a refusal took {seconds:.2f} s"
    for response, seconds in during["oversized"]:
        assert response.status_code == 413 and is_json(response) and seconds < FAST, (response.status_code, seconds)
    for response, seconds in during["livez"]:
        assert response.status_code == 200 and seconds < 1.0, (response.status_code, seconds)
    for response, seconds in during["readyz"]:
        assert response.status_code == 503 and seconds < FAST, (response.status_code, seconds)
        assert "unreachable" in response.json()["checks"]["database"]
    # The refused answers were not half-done: nothing of them is in the database.
    for n in range(len(during["answers"])):
        assert db.get_call(f"OUT{n}") is None
    # Notifications the fake could not deliver meanwhile were accepted when posted again.
    assert not again.unresolved(), again.results
    # Nobody crashed or was restarted.
    assert server.proc.alive() and server.proc.pid == master
    assert server.worker_pids() == workers

    report = audit(db, fake, sessions, settle=15)
    assert not report.problems, str(report)
    print(f"\noutage {outage:.1f} s, {len(during['answers'])} refused during it, {len(sessions)} calls, "
          f"{len(again.results)} redeliveries, slowest refusal "
          f"{max(s for _, s in during['answers']):.2f} s")  # fmt: skip
