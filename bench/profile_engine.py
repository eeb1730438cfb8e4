"""Where the engine's time goes on the request path: notifications handled in process, profiled.

Runs the real application (``create_app``: Flask routes, the service, the storage layer and the
real Hoiio client, which POSTs every block over HTTP to a sink that answers ``success_ok`` in a
process of its own) on SQLite or PostgreSQL, and drives auto-attendant calls through Flask's test
client (no gunicorn and no socket on the way in). Prints:

* milliseconds per notification without the profiler;
* SQL statements, transactions and connection checkouts per notification;
* exclusive time by package (database layers, HTTP client, JSON, logging, metrics, Flask, the
  interpreter, the rest of the engine), from cProfile;
* inclusive time of the engine's steps (record, claim and lock, interpreter, send, finish, log);
* the functions with the most exclusive time.

``python bench/profile_engine.py [--db sqlite|postgresql] [--calls 300] [--top 25]``
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import hashlib
import hmac
import io
import os
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for entry in (str(ROOT), str(BENCH)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from stub import billing_fields, caller_notification  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - the benchmark's own fake credentials
APP_ID = "bench-app"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/"

#: (label, test on "file:function" of a profiler entry), first match wins.
CATEGORIES = (
    ("database: SQLAlchemy", lambda f: "/sqlalchemy/" in f),
    ("database: driver (psycopg / sqlite3)", lambda f: "/psycopg" in f or "sqlite3" in f),
    ("HTTP to the provider (requests, urllib3, http.client, sockets)",
     lambda f: any(k in f for k in ("/requests/", "/urllib3/", "/http/client.py", "socket", "/ssl.py",
                                    "selectors.py", "'poll'", "/email/", "idna", "charset_normalizer"))),
    ("JSON", lambda f: "/json/" in f or "'json" in f),
    ("logging", lambda f: "/logging/" in f or "engine/observability.py" in f),
    ("metrics (prometheus_client)", lambda f: "/prometheus_client/" in f),
    ("Flask / Werkzeug", lambda f: "/flask/" in f or "/werkzeug/" in f),
    ("interpreter (engine.core)", lambda f: "/engine/core/" in f),
    ("engine storage layer (engine.storage)", lambda f: "/engine/storage/" in f),
    ("engine: templating / flow files", lambda f: "/engine/flowfile/" in f or "/jinja2/" in f),
    ("engine: service, web, providers", lambda f: "/engine/" in f),
)
#: Inclusive time of these (file suffix, function) pairs.
STEPS = (
    ("whole request (Flask test client)", "werkzeug/test.py", "open"),
    ("CallService.handle", "engine/service.py", "handle"),
    ("  a later notification: main transaction, then sending (_advance)", "engine/service.py", "_advance"),
    ("  an answer: main transaction, then sending (_answer)", "engine/service.py", "_answer"),
    ("    interpreter.step / start", "engine/core/interpreter.py", "step"),
    ("    interpreter.start", "engine/core/interpreter.py", "start"),
    ("    send a block (HTTP; the result is stored by _settle)", "engine/service.py", "_send"),
    ("      HoiioClient.send_block (HTTP)", "engine/providers/hoiio/client.py", "send_block"),
    ("  _settle: the blocks' results and the outcome, one transaction", "engine/service.py", "_settle"),
    ("  log line + metrics (_observe)", "engine/service.py", "_observe"),
    ("  parse_form + wire.parse_notification", "engine/providers/hoiio/wire.py", "parse_notification"),
    ("jsonify of the answer", "flask/json/__init__.py", "jsonify"),
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sign(body: bytes) -> str:
    return hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()


class Driver:
    """Plays auto-attendant calls against the app through its test client."""

    def __init__(self, app) -> None:
        self.client = app.test_client()
        self.billing = billing_fields()
        self.count = 0
        self.run = os.urandom(3).hex()

    def call(self) -> int:
        self.count += 1
        session = f"F{self.run}{self.count:07d}"
        base = [("session", session), ("txn_ref", f"AA-{session}"), ("from", "+6591234567"),
                ("to", "+6531580000")]
        fields = [("ivr_block", "answer"), *base, ("call_state", "ringing")]
        path = "/hoiio/answer"
        notifications = 0
        while True:
            body = urlencode(fields).encode()
            reply = self.client.post(path, data=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Hoiio-Signature": _sign(body)})
            notifications += 1
            if reply.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {reply.status_code}: {reply.get_data(as_text=True)[:300]}")
            blocks = reply.get_json()["blocks"]
            if not blocks:
                return notifications
            params = blocks[-1]["params"]
            kind = blocks[-1]["endpoint"].rsplit("/", 1)[-1]
            notify = urlsplit(params["notify_url"])
            path = f"{notify.path}?{notify.query}"
            fields, _final = caller_notification(kind, [("ivr_block", kind), *base], params.get("tag", ""),
                                                 digits="1", billing=self.billing, record_url="http://x/r.mp3")


def _is_stdlib(key: tuple) -> bool:
    filename = key[0]
    if filename == "~" or filename.startswith("<"):
        return "sqlite3" not in key[2]  # the sqlite3 driver is C code: keep it as the driver
    return filename.startswith(sys.base_prefix) and "site-packages" not in filename


def _attribute(raw: dict) -> collections.Counter:
    """Exclusive time by category; the time of builtins and standard-library functions goes to the
    nearest caller that is not (socket waits to the HTTP client, isinstance to SQLAlchemy, ...)."""
    totals: collections.Counter = collections.Counter()

    def give(key: tuple, amount: float, depth: int) -> None:
        callers = raw[key][4] if key in raw else {}
        if depth > 12 or not _is_stdlib(key) or not callers:
            totals[_category(key)] += amount
            return
        weight = sum(edge[2] for edge in callers.values()) or float(len(callers))
        for caller, edge in callers.items():
            share = (edge[2] if weight else 1.0) / weight
            give(caller, amount * share, depth + 1)

    for key, value in raw.items():
        if value[2]:
            give(key, value[2], 0)
    return totals


def _category(key: tuple) -> str:
    filename, _line, name = key
    text = f"{filename}:{name}"
    for label, test in CATEGORIES:
        if test(text):
            return label
    return "other (stdlib, builtins)"


def profile(database_url: str, *, calls: int = 300, warmup: int = 30, top: int = 25,
            out=sys.stdout, dump: str | None = None, clock: str = "cpu") -> dict:
    """Profile ``calls`` auto-attendant calls on ``database_url`` (schema created here); returns a summary."""
    import sqlalchemy as sa

    from engine.config import Settings
    from engine.providers.hoiio.client import HoiioClient
    from engine.registry import FlowRegistry
    from engine.storage.repository import Database
    from engine.web import create_app

    work = Path(tempfile.mkdtemp(prefix="ivr-profile-"))
    flows = work / "flows"
    flows.mkdir()
    shutil.copy(ROOT / "flows" / "auto_attendant.yaml", flows)
    port = _free_port()
    sink = subprocess.Popen([sys.executable, str(BENCH / "stub.py"), "--serve-sink", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        sink.stdout.readline()  # "ready"
        settings = Settings(hoiio_app_id=APP_ID, hoiio_access_token=TOKEN, hoiio_api_url=f"http://127.0.0.1:{port}/open",
                            database_url=database_url, flows_dir=flows, public_url="http://127.0.0.1:8000",
                            recovery_interval=0)
        db = Database.open(database_url, auto_migrate=True)
        registry = FlowRegistry.load(flows, stored=db.flow_versions)
        client = HoiioClient(settings.hoiio_api_url, APP_ID, TOKEN)
        app = create_app(settings, db=db, flows=registry, client=client)
        import logging

        # the service logs one JSON line per notification on stderr: keep it (a real cost), out of sight
        handler_streams = []
        for handler in logging.getLogger("engine").handlers:
            if isinstance(handler, logging.StreamHandler):
                handler_streams.append((handler, handler.stream))
                handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - closed below
        driver = Driver(app)
        for _ in range(warmup):
            driver.call()

        started, cpu_started = time.perf_counter(), time.process_time()
        notifications = sum(driver.call() for _ in range(calls))
        plain_ms = (time.perf_counter() - started) * 1000 / notifications
        cpu_ms = (time.process_time() - cpu_started) * 1000 / notifications

        counts: collections.Counter = collections.Counter()  # during the profiled pass only

        def on_execute(_conn, _cursor, statement, _params, _context, _many):
            counts["statements"] += 1
            counts[statement.split(None, 1)[0].upper()] += 1

        for engine in {db.engine, db.sent_engine}:  # the second writes results behind on PostgreSQL
            sa.event.listen(engine, "before_cursor_execute", on_execute)
            sa.event.listen(engine, "commit", lambda _conn: counts.update(["commits"]))
            sa.event.listen(engine.pool, "checkout", lambda *_a: counts.update(["checkouts"]))
        profiler = cProfile.Profile(time.process_time if clock == "cpu" else time.perf_counter)
        profiler.enable()
        profiled = sum(driver.call() for _ in range(calls))
        profiler.disable()
        per = {k: v / profiled for k, v in counts.items()}
        if dump:
            profiler.dump_stats(dump)
        for handler, stream in handler_streams:
            handler.setStream(stream).close()
        stats = pstats.Stats(profiler)
        total = sum(v[2] for v in stats.stats.values())  # exclusive times add up to the whole
        by_category = _attribute(stats.stats)
        steps = []
        for label, suffix, name in STEPS:
            inclusive = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(suffix) and k[2] == name)
            if inclusive:
                steps.append((label, inclusive / total))

        backend = db.backend
        print(f"\n== engine request path on {backend}: {notifications} notifications ({calls} calls) ==", file=out)
        print(f"{plain_ms:.2f} ms per notification in process without the profiler, of which {cpu_ms:.2f} ms "
              "CPU of this process (the rest: waiting for the database and the sink)", file=out)
        shown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
        print(f"per notification: {shown}", file=out)
        what = "CPU time" if clock == "cpu" else "wall-clock time"
        print(f"\nexclusive {what} by package (cProfile; builtins and stdlib counted with their caller):", file=out)
        for label, seconds in by_category.most_common():
            print(f"  {100 * seconds / total:5.1f} %  {label}", file=out)
        print(f"\ninclusive {what} of the engine's steps (share of all profiled time):", file=out)
        for label, share in steps:
            print(f"  {100 * share:5.1f} %  {label}", file=out)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        lines = [line for line in text.getvalue().splitlines() if line.strip()]
        start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
        print(f"\ntop {top} functions by exclusive time ({profiled} notifications profiled):", file=out)
        for line in lines[start:]:
            print("  " + line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", ""), file=out)
        db.close()
        return {
            "backend": backend,
            "ms_per_notification": plain_ms,
            "cpu_ms_per_notification": cpu_ms,
            "per_notification": per,
            "by_category": {k: v / total for k, v in by_category.most_common()},
            "steps": steps,
        }
    finally:
        sink.terminate()
        sink.wait(5)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server (a database ivr_bench_profile "
                        "is created there and dropped)")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="what the profiler measures: CPU time of this process (default) or wall-clock time")
    parser.add_argument("--dump", metavar="FILE", help="also write the raw cProfile stats (for pstats, snakeviz)")
    args = parser.parse_args(argv)
    options = {"calls": args.calls, "top": args.top, "dump": args.dump, "clock": args.clock}
    if args.db == "sqlite":
        folder = tempfile.mkdtemp(prefix="ivr-profile-db-")
        try:
            profile(f"sqlite:///{folder}/profile.sqlite3", **options)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return 0
    import psycopg

    admin = args.pg_url.rstrip("/") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS ivr_bench_profile")
        conn.execute("CREATE DATABASE ivr_bench_profile")
    try:
        profile(args.pg_url.rstrip("/") + "/ivr_bench_profile", **options)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS ivr_bench_profile WITH (FORCE)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
