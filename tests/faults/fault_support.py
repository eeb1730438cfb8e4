"""Helpers of the fault-tolerance tests: child processes that always go away, the engine under
gunicorn, a private PostgreSQL cluster that a test may stop, signed notifications, and the audit that
compares the database with what the fake Hoiio received.

The process helpers (``Proc``, free ports, ``wait_until``, readiness) are those of
``tests/e2e/e2e_support.py``: every child runs in its own process group with a parent-death signal
(``setpriv --pdeathsig``) and is tracked, so a test that fails (or a test process that dies) leaves
nothing running: fixtures stop their processes in ``finally``/teardown, and whatever is left is
stopped once more at exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from engine.fakes import FakeHoiio, NotificationRecord, RequestRecord
from engine.providers.hoiio.signature import SIGNATURE_HEADER
from engine.storage import Database
from tests.e2e import e2e_support
from tests.e2e.e2e_support import (
    FLOWS,
    HOST,
    ROOT,
    VENV_BIN,
    Proc,
    free_port,
    query_of,
    start_until_ready,
    wait_until,
)

APP_ID = "faults-app"
TOKEN = "faults-token-7d2e"  # noqa: S105 - the fake account's token
FORM = "application/x-www-form-urlencoded"

ACME_MAIN = "+6531580000"  # flows/auto_attendant.yaml
CALLER = "+6591234567"
#: Every worker looks for interrupted sends every second (blocks untouched for 10 s or more).
RECOVERY = {"IVR_RECOVERY_INTERVAL": "1"}


# ------------------------------------------------------------------------------------------ processes


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn workers of a master), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


# ------------------------------------------------------------------------------------------ the server


@dataclass
class Server(e2e_support.Server):
    """The engine under gunicorn, with its number of workers."""

    workers: int = 2

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid)

    def wait_workers(self, timeout: float = 20.0, exclude: Collection[int] = ()) -> list[int]:
        """Wait until the master has its full set of workers, none of them in ``exclude``."""

        def full() -> list[int] | None:
            pids = [p for p in self.worker_pids() if p not in exclude]
            return pids if len(pids) >= self.workers else None

        return wait_until(full, timeout, f"{self.workers} gunicorn workers")


def start_gunicorn(
    tmp: Path,
    *,
    api_url: str,
    database_url: str,
    flows: Path,
    name: str = "gunicorn",
    workers: int = 2,
    threads: int = 4,
    extra_env: Mapping[str, str] | None = None,
) -> Server:
    """The engine under gunicorn as docs/deploy.md runs it (``-c deploy/gunicorn.conf.py``), bound to
    a free loopback port, ready (/readyz 200). ``--no-control-socket``: several servers side by side."""

    def spawn(port: int, attempt: int) -> Server:
        url = f"http://{HOST}:{port}"
        ours = ("IVR_", "HOIIO_", "DATABASE_URL", "PROMETHEUS")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        metrics = tmp / f"metrics-{port}"
        env.update(
            HOIIO_APP_ID=APP_ID, HOIIO_ACCESS_TOKEN=TOKEN, HOIIO_API_URL=api_url, IVR_PUBLIC_URL=url,
            DATABASE_URL=database_url, IVR_FLOWS=str(flows), IVR_BIND=f"{HOST}:{port}", IVR_WORKERS=str(workers),
            IVR_THREADS=str(threads), IVR_GRACEFUL_TIMEOUT="3", PROMETHEUS_MULTIPROC_DIR=str(metrics),
            PYTHONUNBUFFERED="1",
        )  # fmt: skip
        env.update(extra_env or {})
        argv = [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "--no-control-socket",
                "--access-logfile", "/dev/null", "engine.wsgi:app"]  # fmt: skip
        proc = Proc(f"{name}:{port}", argv, env=env, cwd=ROOT, log=tmp / f"{name}-{port}-{attempt}.log",
                    death_signal="KILL")  # fmt: skip
        return Server(url, proc, env, workers)

    server = start_until_ready(name, spawn)
    try:
        server.wait_workers()
    except BaseException:
        server.stop()
        raise
    return server


def copy_flows(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(FLOWS.glob("*.yaml")):
        shutil.copy(path, folder / path.name)
    return folder


def new_fake(**kwargs: Any) -> FakeHoiio:
    kwargs.setdefault("call_limit", 10_000)
    fake = FakeHoiio(APP_ID, TOKEN, **kwargs)
    fake.start(HOST, 0)
    return fake


# ------------------------------------------------------------------------------------------ PostgreSQL


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, a free port), so that
    stopping it takes nothing away from other test processes using the shared server."""

    def __init__(self) -> None:
        bindir = Path("/usr/lib/postgresql")
        versions = sorted((p for p in bindir.glob("*/bin/pg_ctl")), key=lambda p: int(p.parts[-3]))
        if not versions:
            raise AssertionError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = versions[-1].parent
        # Not under pytest's temporary folders: those are private to the user running the tests, and
        # the server runs as the postgres user when that is root.
        folder = Path(tempfile.mkdtemp(prefix="ivr-faults-pg-"))
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            user = pwd.getpwnam("postgres")
            os.chown(folder, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        try:
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                       "--no-sync", "-E", "UTF8"], timeout=60)  # fmt: skip
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.url = f"postgresql+psycopg://postgres@{HOST}:{self.port}/postgres"

    def _run(self, argv: list[str], timeout: float = 30) -> None:
        result = subprocess.run([*self._as_user, *argv], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses={HOST} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=60")  # fmt: skip
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "pg.log"),
                   "-w", "-t", "30", "start"])  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"])

    def running(self) -> bool:
        result = subprocess.run([*self._as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
                                capture_output=True, timeout=10)  # fmt: skip
        return result.returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------ requests


def signed(fields: Sequence[tuple[str, str]] | Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    """A notification body signed with this account's token, and its headers."""
    return e2e_support.signed(fields, TOKEN)


def step_of(url: str | None) -> int | None:
    if not url:
        return None
    raw = query_of(url).get("step")
    return int(raw) if raw and raw.isdigit() else None


def redeliver(notification: NotificationRecord, timeout: float = 15) -> requests.Response:
    """Post a notification again exactly as the provider did (same URL, body and signature)."""
    headers = {"Content-Type": FORM, SIGNATURE_HEADER: notification.signature, "User-Agent": "fake-hoiio"}
    return requests.post(notification.url, data=notification.body.encode(), headers=headers, timeout=timeout,
                         allow_redirects=False)  # fmt: skip


def undelivered(fake: FakeHoiio, sessions: Collection[str]) -> list[NotificationRecord]:
    """Notifications the fake posted that got no 2xx answer (connection lost, 5xx): Hoiio would not
    post them again, an at-least-once sender would."""
    return [n for n in fake.notifications
            if n.session in sessions and n.done and not (n.http_status and 200 <= n.http_status < 300)]  # fmt: skip


class Redeliverer:
    """An at-least-once sender in front of the fake: a notification the fake posted that got no 2xx
    answer (the worker died, the database was down) is posted again after ``after`` seconds, up to
    ``attempts`` times, from a background thread. ``results`` holds (session, block, status code)."""

    def __init__(self, fake: FakeHoiio, sessions: Collection[str], *, after: float = 0.5, attempts: int = 6) -> None:
        self.fake = fake
        self.sessions = sessions
        self.after = after
        self.attempts = attempts
        self.results: list[tuple[str | None, str | None, int | None]] = []
        self.final: dict[int, int | None] = {}
        self._seen: dict[int, float] = {}
        self._tries: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="redeliverer", daemon=True)

    def __enter__(self) -> Redeliverer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def unresolved(self) -> dict[int, int | None]:
        """Notifications whose last redelivery was not answered 200: index -> last status code."""
        return {i: code for i, code in self.final.items() if code != 200}

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.pass_once()

    def pass_once(self, *, now: bool = False) -> int:
        """Redeliver what is due; returns how many were posted. ``now``: do not wait ``after``."""
        posted = 0
        for index, n in enumerate(self.fake.notifications):
            if n.session not in self.sessions or not n.done or (n.http_status and 200 <= n.http_status < 300):
                continue
            if self._tries[index] >= self.attempts or self._tries[index] < 0:
                continue
            first = self._seen.setdefault(index, time.monotonic())
            if not now and time.monotonic() - first < self.after * (1 + self._tries[index]):
                continue
            self._tries[index] += 1
            try:
                code: int | None = redeliver(n).status_code
            except requests.RequestException:
                code = None
            self.results.append((n.session, n.fields.get("ivr_block"), code))
            self.final[index] = code
            posted += 1
            if code is not None and code < 500:
                self._tries[index] = -1  # answered: done (a 4xx would not get better either)
        return posted


def is_json(response: requests.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return response.headers.get("Content-Type", "").startswith("application/json")


# ------------------------------------------------------------------------------------------ the audit


def carried_out(record: RequestRecord) -> bool:
    """Whether the fake carried the request out (a fault may have refused it before, or only
    replaced or lost the answer after)."""
    if record.fault is None or record.fault.startswith("delayed"):
        return record.status == "success_ok"
    return record.fault.endswith("after success_ok")


@dataclass
class Audit:
    """What ``audit`` found, per session; ``problems`` is empty when everything agrees."""

    problems: list[str] = field(default_factory=list)
    blocks: dict[str, list[Any]] = field(default_factory=dict)
    calls: dict[str, Any] = field(default_factory=dict)
    carried: dict[str, Counter] = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.problems.append(text)

    def __str__(self) -> str:
        return "\n".join(self.problems) if self.problems else "audit clean"


def audit(db: Database, fake: FakeHoiio, sessions: Iterable[str], *, settle: float = 0.0) -> Audit:
    """Compare the database with the fake's request log for ``sessions``:

    * each (session, step) block is in the blocks table at most once, steps are 1..n without gaps,
      and the call's step is the last block's step;
    * the fake carried out each (session, step) at most once, and everything it carried out (or
      was asked to do) is a block of that step and endpoint in the table; a block recorded ``sent``
      was carried out exactly once;
    * no block is left ``pending``/``sending`` (half-sent) once recovery had time to run;
    * at most one notification was accepted per (session, step), and an ended call got no block
      after it ended.

    ``settle``: seconds to wait for ``pending``/``sending`` blocks to be resolved before judging.
    """
    sessions = list(dict.fromkeys(sessions))
    result = Audit()
    deadline = time.monotonic() + settle
    while True:
        half = [b for s in sessions for b in db.blocks_for(s) if b.status in ("pending", "sending")]
        if not half or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    asked: dict[str, list[tuple[int | None, str, bool]]] = defaultdict(list)
    for record in fake.log:
        sid = record.params.get("session")
        if sid in sessions:
            asked[sid].append((step_of(record.params.get("notify_url")), record.endpoint, carried_out(record)))
    for sid in sessions:
        call = db.get_call(sid)
        blocks = db.blocks_for(sid)
        result.calls[sid] = call
        result.blocks[sid] = blocks
        if call is None:
            result.add(f"{sid}: no call row")
            continue
        steps = [b.step for b in blocks]
        if len(steps) != len(set(steps)):
            result.add(f"{sid}: duplicate steps in the blocks table: {steps}")
        if sorted(steps) != list(range(1, len(steps) + 1)):
            result.add(f"{sid}: steps are not contiguous from 1: {sorted(steps)}")
        if steps and call.step != max(steps):
            result.add(f"{sid}: call is at step {call.step}, its last block has step {max(steps)}")
        for b in blocks:
            if b.status in ("pending", "sending"):
                result.add(f"{sid}: block step {b.step} ({b.kind}) left {b.status!r}")
            if call.ended_at is not None and b.created_at > call.ended_at:
                result.add(f"{sid}: block step {b.step} ({b.kind}) created after the call ended")
        by_step = {b.step: b for b in blocks}
        carried: Counter = Counter()
        for step, endpoint, done in asked[sid]:
            block = by_step.get(step) if step is not None else None
            if step is None:
                if not any(b.endpoint == endpoint for b in blocks):
                    result.add(f"{sid}: the fake received {endpoint} without a step, no such block recorded")
            elif block is None or block.endpoint != endpoint:
                result.add(f"{sid}: the fake received {endpoint} for step {step}, not in the blocks table")
            if done:
                carried[step] += 1
        result.carried[sid] = carried
        for step, count in carried.items():
            if step is not None and count > 1:
                result.add(f"{sid}: step {step} was carried out {count} times by the provider")
        for b in blocks:
            if b.status == "sent" and carried[b.step] != 1:
                result.add(f"{sid}: block step {b.step} recorded sent, the provider carried it out {carried[b.step]}x")
        accepted: Counter = Counter()
        for n in db.recent_notifications(1000, session=sid, outcome="accepted"):
            if n.route.endswith("/hoiio/notify"):
                accepted[step_of("?" + n.query_string)] += 1
        for step, count in accepted.items():
            if count > 1:
                result.add(f"{sid}: {count} notifications accepted for step {step}")
    return result


def describe(db: Database, fake: FakeHoiio, sid: str) -> str:
    """One call's story for assertion messages."""
    call = db.get_call(sid)
    lines = [f"call {sid}: " + (f"{call.status} at {call.node} step {call.step} ({call.outcome})" if call else "none")]
    for b in db.blocks_for(sid):
        lines.append(f"  block {b.step} {b.kind} {b.status} {b.provider_status} attempts={b.attempts}")
    for r in fake.log:
        if r.params.get("session") == sid:
            lines.append(f"  fake got {r.endpoint} step={step_of(r.params.get('notify_url'))} -> {r.status} {r.fault}")
    for n in fake.notifications:
        if n.session == sid:
            lines.append(f"  fake posted {n.fields.get('ivr_block')}/{n.fields.get('call_state')} -> "
                         f"{n.http_status} {n.error or ''}")  # fmt: skip
    snapshot = fake.sessions.get(sid)
    if snapshot is not None:
        lines.append(f"  fake session {snapshot.state} {snapshot.end_reason} blocks={snapshot.block_names}")
    return "\n".join(lines)
