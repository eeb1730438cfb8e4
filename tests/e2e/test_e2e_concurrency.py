"""Two real server processes on one database, racing notifications: every call advances exactly once
per step.

Two gunicorn servers (2 gthread workers each) share one database (PostgreSQL; SQLite too) and send
their blocks to a recording stub of the Hoiio API that answers ``success_ok`` to everything. For each
of many calls, every notification is fired at both servers at the same moment (threads released by
a barrier): identical copies (Hoiio redelivering) and, at some steps, different notifications for
the same step (a digit pressed twice, two recordings). The notifications are signed with the access
token and posted to the ``notify_url`` (``step``/``sig``) the engine put on its last block.

Audit: every response is 200 (``ok`` for the one that advanced the call, ``ignored`` for the rest),
the stub received exactly one block per (session, step), the steps are contiguous, and the database
agrees.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
from e2e_support import (
    FLOWS,
    RecordingServer,
    Server,
    path_and_query,
    query_of,
    run_cli,
    signed,
    start_gunicorns,
    stop_all,
)

from engine.storage import Database
from tests.conftest import fresh_postgres_url

pytestmark = pytest.mark.slow

SESSIONS = {"postgres": 30, "sqlite": 30}
PARALLEL_CALLS = 6
CALLER, NUMBER = "+6591234567", "+6531580000"  # auto_attendant
BILLING = {"date": "2026-11-23 10:00:00", "duration": "1", "currency": "SGD", "rate": "0.010", "debit": "0.010"}

#: What the engine sends for each step of this script, and the notifications fired for it: one
#: notification (fired as identical copies) or two different ones for the same step.
SCRIPT: tuple[tuple[str, tuple[dict[str, str], ...]], ...] = (
    ("play", ({"ivr_block": "play", "call_state": "ongoing"},)),
    ("gather", ({"ivr_block": "gather", "call_state": "ongoing", "digits": "9"},
                {"ivr_block": "gather", "call_state": "ongoing", "digits": "8"})),  # both invalid: ask again
    ("gather", ({"ivr_block": "gather", "call_state": "ongoing", "digits": ""},
                {"ivr_block": "gather", "call_state": "ongoing", "digits": "5"})),  # no input / invalid: again
    ("gather", ({"ivr_block": "gather", "call_state": "ongoing", "digits": "0"},)),  # voicemail
    ("record", ({"ivr_block": "record", "call_state": "ongoing", "record_url": "https://rec.example.com/a.wav"},
                {"ivr_block": "record", "call_state": "ongoing", "record_url": "https://rec.example.com/b.wav"})),
    ("hangup", ({"ivr_block": "hangup", "call_state": "ended", **BILLING},)),
)  # fmt: skip
STEPS = len(SCRIPT)
NODES = ("welcome", "main_menu", "main_menu", "main_menu", "voicemail", "goodbye")


# ------------------------------------------------------------------------------------------ the stub


@dataclass(frozen=True)
class Received:
    endpoint: str
    params: dict[str, str]

    @property
    def session(self) -> str:
        return self.params.get("session", "")

    @property
    def step(self) -> int:
        return int(query_of(self.params["notify_url"])["step"])


class StubHoiio(RecordingServer):
    """Answers ``success_ok`` to every API request and records what it received."""

    def __init__(self) -> None:
        super().__init__(lambda hit: (200, {"status": "success_ok"}))
        self.api_url = f"{self.url}/open"

    @property
    def received(self) -> list[Received]:
        return [Received(hit.path.removeprefix("/open/"), hit.form()) for hit in self.snapshot()]

    def for_session(self, session: str) -> list[Received]:
        return [r for r in self.received if r.session == session]


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class Cluster:
    backend: str
    servers: tuple[Server, Server]
    stub: StubHoiio
    db: Database


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def cluster(request, tmp_path_factory) -> Iterator[Cluster]:
    backend = request.param
    logs = tmp_path_factory.mktemp(f"cluster-{backend}")
    if backend == "postgres":
        url = fresh_postgres_url()  # fails (never skips) when PostgreSQL is down
    else:
        url = f"sqlite:///{logs / 'shared.sqlite3'}"
    run_cli(["db", "upgrade", "--database-url", url])
    stub = StubHoiio()
    started: list[Server] = []
    db: Database | None = None
    try:
        started = start_gunicorns(logs, [f"gunicorn-{backend}-a", f"gunicorn-{backend}-b"], api_url=stub.api_url,
                                  database_url=url, flows=FLOWS)
        db = Database.open(url)
        yield Cluster(backend, (started[0], started[1]), stub, db)
    finally:
        if db is not None:
            db.close()
        stop_all([server.proc for server in started])
        stub.stop()


# ------------------------------------------------------------------------------------------ racing


@dataclass
class Shot:
    server: Server
    path: str
    body: bytes
    headers: dict[str, str]


def fire_together(shots: list[Shot]) -> list[requests.Response]:
    """Post every shot at the same moment, one thread each released by a barrier."""
    barrier = threading.Barrier(len(shots))
    results: list[requests.Response | BaseException | None] = [None] * len(shots)

    def go(index: int, shot: Shot) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = requests.post(shot.server.url + shot.path, data=shot.body, headers=shot.headers,
                                           timeout=60)
        except BaseException as exc:  # reported by the caller, never left in a thread
            results[index] = exc

    threads = [threading.Thread(target=go, args=(i, s), daemon=True) for i, s in enumerate(shots)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    for index, result in enumerate(results):
        if not isinstance(result, requests.Response):
            raise AssertionError(f"request {index} to {shots[index].server.url}{shots[index].path}: {result!r}")
    return results  # type: ignore[return-value]


def notification(session: str, extra: dict[str, str]) -> list[tuple[str, str]]:
    fields = {"session": session, "txn_ref": f"AA-{session}", "from": CALLER, "to": NUMBER, "tag": ""}
    return [("ivr_block", extra["ivr_block"]), *fields.items(), *((k, v) for k, v in extra.items() if k != "ivr_block")]


def race(cluster: Cluster, path: str, variants: tuple[list[tuple[str, str]], ...]) -> list[requests.Response]:
    """Each variant to both servers (identical copies race each other); with two variants, the
    different notifications for one step race too: A gets v1 and v2, B gets v2 and v1."""
    a, b = cluster.servers
    bodies = [signed(v) for v in variants]
    if len(bodies) == 1:
        plan = [(a, bodies[0]), (b, bodies[0]), (a, bodies[0]), (b, bodies[0])]
    else:
        plan = [(a, bodies[0]), (b, bodies[1]), (a, bodies[1]), (b, bodies[0])]
    return fire_together([Shot(server, path, body, headers) for server, (body, headers) in plan])


@dataclass
class Audit:
    session: str
    statuses: list[int]
    outcomes: Counter


def drive_call(cluster: Cluster, session: str) -> Audit:
    statuses: list[int] = []
    outcomes: Counter = Counter()

    def settle(responses: list[requests.Response], expect_step: int | None) -> dict:
        statuses.extend(r.status_code for r in responses)
        assert [r.status_code for r in responses] == [200] * len(responses), [
            (r.status_code, r.text[:300]) for r in responses
        ]
        bodies = [r.json() for r in responses]
        outcomes.update(body["status"] for body in bodies)
        winners = [body for body in bodies if body["status"] == "ok"]
        assert len(winners) == 1, (session, expect_step, bodies)
        assert all(body["status"] == "ignored" and body["blocks"] == [] for body in bodies if body is not winners[0])
        winner = winners[0]
        if expect_step is None:
            assert winner["blocks"] == [] and winner["call_status"] == "ended", winner
        else:
            assert winner["step"] == expect_step and len(winner["blocks"]) == 1, winner
        return winner

    answer = [("ivr_block", "answer"), ("session", session), ("txn_ref", f"AA-{session}"), ("from", CALLER),
              ("to", NUMBER), ("call_state", "ringing")]
    winner = settle(race(cluster, "/hoiio/answer", (answer,)), expect_step=1)

    for step, (kind, variants) in enumerate(SCRIPT, start=1):
        received = cluster.stub.for_session(session)
        assert [r.step for r in received] == list(range(1, step + 1)), (session, [r.step for r in received])
        last = received[-1]
        assert last.endpoint.endswith("/" + kind), (session, step, last.endpoint)
        notify = last.params["notify_url"]
        assert query_of(notify)["step"] == str(step)
        # the block the winning server reported is the one the provider received
        assert winner["blocks"][0]["endpoint"] == last.endpoint
        assert winner["blocks"][0]["params"]["notify_url"] == notify
        fired = tuple(notification(session, v) for v in variants)
        next_step = step + 1 if step < STEPS else None
        winner = settle(race(cluster, path_and_query(notify), fired), expect_step=next_step)
    return Audit(session, statuses, outcomes)


# ------------------------------------------------------------------------------------------ the test


def test_racing_notifications_advance_each_call_exactly_once_per_step(cluster: Cluster) -> None:
    assert all(server.healthy() for server in cluster.servers)
    run = uuid.uuid4().hex[:8]
    sessions = [f"R{run}-{i:02d}" for i in range(SESSIONS[cluster.backend])]
    with ThreadPoolExecutor(max_workers=PARALLEL_CALLS) as pool:
        audits = list(pool.map(lambda s: drive_call(cluster, s), sessions, timeout=180))

    # every response was 200: one "ok" per step (answer included), the other copies "ignored"
    races = STEPS + 1
    for audit in audits:
        assert set(audit.statuses) == {200}
        assert audit.outcomes == Counter({"ok": races, "ignored": races * 3}), audit
    recorded: Counter = Counter()

    # the provider received exactly one block per (session, step), steps contiguous, nothing else
    per_key = Counter((r.session, r.step) for r in cluster.stub.received)
    assert {k: n for k, n in per_key.items() if n != 1} == {}
    assert set(per_key) == {(s, step) for s in sessions for step in range(1, STEPS + 1)}
    by_session: dict[str, list[Received]] = defaultdict(list)
    for r in cluster.stub.received:
        by_session[r.session].append(r)
    for session in sessions:
        got = by_session[session]
        assert [r.step for r in got] == list(range(1, STEPS + 1))
        assert [r.endpoint.rsplit("/", 1)[1] for r in got] == [kind for kind, _ in SCRIPT]

    # the database agrees: one block row per step, all sent; the call ended where the stub says
    for session in sessions:
        call = cluster.db.get_call(session)
        assert call is not None and call.status == "ended", session
        assert call.step == STEPS and call.outcome == "hung up by flow"
        assert call.state["invalid"] == 0 and call.state["no_input"] == 0
        blocks = cluster.db.blocks_for(session)
        assert [(b.step, b.node, b.status) for b in blocks] == [
            (step, node, "sent") for step, node in enumerate(NODES, start=1)
        ]
        path = [tuple(p) for p in call.state["path"]]
        assert path == [("welcome", "next"), ("main_menu", "retry invalid"), path[2], ("main_menu", "key 0"),
                        ("voicemail", "next")]
        assert path[2] in (("main_menu", "retry no input"), ("main_menu", "retry invalid"))
        assert call.state["vars"]["voicemail_url"] in ("https://rec.example.com/a.wav", "https://rec.example.com/b.wav")
        notes = cluster.db.recent_notifications(100, session=session)
        outcomes = Counter(n.outcome for n in notes)
        assert outcomes["accepted"] == races, (session, outcomes)
        assert sum(outcomes.values()) == races * 4
        assert set(outcomes) <= {"accepted", "duplicate", "stale"}, outcomes
        recorded.update(outcomes)
    # both kinds of race happened: identical copies (duplicate) and different notifications (stale)
    assert recorded["duplicate"] > 0 and recorded["stale"] > 0, recorded

    assert all(server.healthy() for server in cluster.servers)
