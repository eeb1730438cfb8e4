"""The IVR engine's benchmarks, in one command: ``python bench/run.py [--quick]``.

Starts everything on loopback: the real server under gunicorn (``deploy/gunicorn.conf.py``, 2
workers) on SQLite and on PostgreSQL, two references under the same gunicorn settings (a bare Flask
endpoint answering a constant: the ceiling of the stack; a hand-written Flask handler:
``bench/handwritten_app.py``), and the provider stub (``bench/stub.py``) in a process of its own,
which answers every block at once and posts the next notification as a caller would. Prints a table
(notifications per second, turnaround p50/p99/max measured at the stub, peak memory per worker,
CPU) and the ratios, and writes ``bench/RESULTS.md``. See ``bench/README.md``.

Scenarios: throughput (closed loop, ``--calls`` calls in progress); a fixed rate (``--rate``, 200
notifications per second) with 10, 100 and 1,000 calls in progress; 1 thousand against 1 million
stored past sessions (``--quick``: 100 thousand); a 10-node against a 2,000-node flow.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for entry in (str(ROOT), str(BENCH)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import flowgen  # noqa: E402
import seed as seeding  # noqa: E402

PY = sys.executable
BIN = Path(sys.executable).parent
TOKEN = "bench-token"  # noqa: S105 - the benchmark's own fake credentials
APP_ID = "bench-app"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
PG_DATABASES = ("ivr_bench", "ivr_bench_1k", "ivr_bench_large", "ivr_bench_flow10", "ivr_bench_flow2000")
AUTO_ATTENDANT_NUMBER = "+6531580000"
FLOW_NUMBERS = {10: "+6531589010", 2000: "+6531589200"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}", flush=True)


# ------------------------------------------------------------------------------------------ /proc
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


#: iterations of the loop ``loop_ms`` times: about 20 ms on these machines
SPEED_LOOPS = 500_000


def loop_ms(loops: int = SPEED_LOOPS, tries: int = 3) -> float:
    """The fastest of ``tries`` runs of a fixed pure-Python loop, in ms: how fast one core runs Python
    right now. On a shared virtual machine this moves by half within a run, with no trace in the load
    average or the CPU counters; timed before each scenario, it says which rows ran on a slower machine."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        total = 0
        for i in range(loops):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(p) for p in fh.read().split()]
        return found
    except OSError:
        pass
    for entry in os.listdir("/proc"):  # kernels without the children file
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


# ------------------------------------------------------------------------------------------ databases
def pg_admin(base: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def pg_version(base: str) -> str:
    import psycopg

    with psycopg.connect(f"{base}/postgres") as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def prepare_database(url: str, *, handwritten: bool = False) -> None:
    """Schema at the head revision (the engine's ``ivr db upgrade``), and the hand-written app's table."""
    from engine.storage.repository import Database

    Database.open(url, auto_migrate=True).close()
    if handwritten:
        env = {**os.environ, **base_env(url, 0, 0)}
        subprocess.run([PY, "-c", "import handwritten_app; handwritten_app.create_schema()"], cwd=BENCH, env=env,
                       check=True)


def flow_version(flows_dir: Path, name: str) -> str:
    from engine.registry import FlowRegistry

    return FlowRegistry.load(flows_dir).current[name].version


# ------------------------------------------------------------------------------------------ servers
def base_env(database_url: str, port: int, stub_port: int) -> dict[str, str]:
    return {
        "HOIIO_APP_ID": APP_ID,
        "HOIIO_ACCESS_TOKEN": TOKEN,
        "HOIIO_API_URL": f"http://127.0.0.1:{stub_port}/open",
        "IVR_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DATABASE_URL": database_url,
    }


APPS = {"engine": "engine.wsgi:app", "handwritten": "handwritten_app:app", "bare": "bare_app:app"}


class Server:
    """One gunicorn (deploy/gunicorn.conf.py, 2 workers) serving the engine or a reference."""

    def __init__(self, kind: str, work: Path, *, database_url: str = "", flows_dir: Path | None = None,
                 label: str = "", stub_port: int | None = None) -> None:
        self.kind = kind
        self.label = label or kind
        self.database_url = database_url
        self.flows_dir = flows_dir
        self.work = work
        self.port = free_port()
        self.stub_port = stub_port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = work / f"gunicorn-{self.label.replace(' ', '_')}-{self.port}.log"
        self.peak_kb: dict[int, int] = {}
        self.cpu_seen: dict[int, float] = {}
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **base_env(self.database_url, self.port, self.stub_port),
               "IVR_BIND": f"127.0.0.1:{self.port}", "IVR_WORKERS": "2",
               "PROMETHEUS_MULTIPROC_DIR": str(self.work / f"prometheus-{self.port}")}
        env.pop("IVR_THREADS", None)
        if self.flows_dir is not None:
            env["IVR_FLOWS"] = str(self.flows_dir)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "--pythonpath", str(BENCH),
                 APPS[self.kind]], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label}: gunicorn exited ({self.proc.returncode}):\n{self.tail()}")
            if self._healthy() and self._workers_idle():
                threading.Thread(target=self._sample, daemon=True).start()
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.label}: not ready after 90 s:\n{self.tail()}")

    def _healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def _workers_idle(self) -> bool:
        """Both workers forked and done loading the app (their CPU time stands still)."""
        pids = self.workers()
        if len(pids) < 2:
            return False
        before = [proc_cpu(p) or 0.0 for p in pids]
        time.sleep(0.3)
        after = [proc_cpu(p) or 0.0 for p in pids]
        return all(b - a < 0.02 for a, b in zip(before, after, strict=True))

    def workers(self) -> list[int]:
        return children(self.proc.pid) if self.proc is not None else []

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in self.workers():
                rss = proc_status_kb(pid, "VmHWM") or proc_status_kb(pid, "VmRSS")
                if rss:
                    self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), rss)
                cpu = proc_cpu(pid)
                if cpu is not None:
                    self.cpu_seen[pid] = cpu

    def workers_cpu(self) -> float:
        """CPU seconds of every worker seen so far (recycled workers keep their last reading)."""
        for pid in self.workers():
            cpu = proc_cpu(pid)
            if cpu is not None:
                self.cpu_seen[pid] = cpu
        return sum(self.cpu_seen.values())

    def peak_mb(self) -> float:
        return max(self.peak_kb.values(), default=0) / 1024

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        self._stop.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        workers = self.workers()
        self.proc.send_signal(signal.SIGINT)  # gunicorn: quick shutdown
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            for pid in [self.proc.pid, *workers]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(5)


# ------------------------------------------------------------------------------------------ running the stub
@dataclass
class Run:
    section: str
    label: str
    server: str  # engine | handwritten | bare | stub
    backend: str  # sqlite | postgresql | -
    mode: str  # closed | paced
    calls: int
    rate: float | None
    result: dict
    peak_mb: float = 0.0
    workers_cpu_pct: float = 0.0
    machine_busy_pct: float = 0.0
    load: float = 0.0
    loop_ms: float = 0.0  # ``loop_ms()`` just before the scenario
    extra: dict = field(default_factory=dict)

    @property
    def samples(self) -> list[float]:
        return self.result.get("samples_ms") or []


def run_stub(server: Server | list[Server] | None, *, section: str, label: str | list[str], mode: str, calls: int,
             cfg: argparse.Namespace, rate: float | None = None, target_kind: str = "blocks",
             to: str | list[str] = AUTO_ATTENDANT_NUMBER, target: str | None = None, stub_port: int | None = None,
             backend: str = "-", duration: float | None = None) -> Run | list[Run]:
    """Run the stub once against one server, or against two at the same time (lists of servers, labels
    and numbers: calls alternate between them); returns one ``Run`` per server."""
    servers = server if isinstance(server, list) else ([server] if server is not None else [])
    labels = label if isinstance(label, list) else [label]
    numbers = to if isinstance(to, list) else [to]
    # every call is answered once before measuring (at most 15 s of it)
    warmup = cfg.warmup + (min(15.0, calls / rate) if mode == "paced" and rate else 0.0)
    targets = [s.url for s in servers] if servers else [target]
    cmd = [PY, str(BENCH / "stub.py"), "--port", str(stub_port or servers[0].stub_port), "--mode", mode,
           "--calls", str(calls), "--warmup", f"{warmup:.2f}", "--duration", str(duration or cfg.duration),
           "--target-kind", target_kind, "--token", TOKEN, "--samples", "--linger", "1.5"]
    for url in targets:
        cmd += ["--target", url]
    for number in numbers:
        cmd += ["--to", number]
    if rate:
        cmd += ["--rate", str(rate)]
    speed = loop_ms()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks: dict[str, tuple] = {}
    result = None
    for line in proc.stdout:
        line = line.strip()
        if line in ("window-start", "window-end"):
            marks[line] = (time.monotonic(), machine_cpu(), [srv.workers_cpu() for srv in servers])
        elif line.startswith("{"):
            result = json.loads(line)
    proc.wait()
    if result is None:
        raise RuntimeError(f"{labels[0]}: the stub failed:\n{proc.stderr.read()[-3000:]}")
    runs = []
    for i, name in enumerate(labels):
        own = dict(result)
        if len(labels) > 1:
            own.update({k: v for k, v in result["per_target"][i].items() if k != "target"})
        srv = servers[i] if servers else None
        run = Run(section, name, srv.kind if srv else "stub", backend, mode, calls, rate, own,
                  load=os.getloadavg()[0], loop_ms=speed)
        if "window-start" in marks and "window-end" in marks:
            (t0, (busy0, total0), w0), (t1, (busy1, total1), w1) = marks["window-start"], marks["window-end"]
            if srv is not None:
                run.workers_cpu_pct = 100 * (w1[i] - w0[i]) / (t1 - t0)
            run.machine_busy_pct = 100 * (busy1 - busy0) / max(1, total1 - total0)
        if srv is not None:
            run.peak_mb = srv.peak_mb()
        errors = {k: v for k, v in result["errors"].items() if not k.startswith("stray")}
        turn = own["turnaround_ms"]
        log(f"  {name}: {own['throughput']:.0f} notif/s, turnaround p50 {fmt(turn['p50'])} p99 {fmt(turn['p99'])} "
            f"ms, workers {run.workers_cpu_pct:.0f}% CPU, stub {result['stub_cpu_pct']:.0f}%, "
            f"peak {run.peak_mb:.0f} MB/worker, speed loop {speed:.0f} ms{', errors ' + str(errors) if errors else ''}")
        runs.append(run)
    return runs if isinstance(server, list) else runs[0]


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------------ pooling
def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, -(-int(q * 1000) * len(ordered) // 1000) - 1))
    return ordered[index]


@dataclass
class Figure:
    """One scenario, pooled over repeats."""

    label: str
    runs: list[Run]

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def samples(self) -> list[float]:
        return [s for r in self.runs for s in r.samples]

    @property
    def throughput(self) -> float:
        return statistics.mean(r.result["throughput"] for r in self.runs)

    def p(self, q: float) -> float | None:
        return percentile(self.samples, q)

    @property
    def max(self) -> float | None:
        return max(self.samples, default=None)

    @property
    def final_p50(self) -> float | None:
        values = [r.result["final_ms"]["p50"] for r in self.runs if r.result["final_ms"]["p50"] is not None]
        return statistics.median(values) if values else None

    @property
    def peak_mb(self) -> float:
        return max(r.peak_mb for r in self.runs)

    def mean(self, name: str) -> float:
        return statistics.mean(getattr(r, name) for r in self.runs)

    @property
    def stub_cpu_pct(self) -> float:
        return statistics.mean(r.result["stub_cpu_pct"] for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(v for r in self.runs for k, v in r.result["errors"].items() if not k.startswith("stray"))

    @property
    def lateness_p99(self) -> float | None:
        values = [r.result["lateness_ms"]["p99"] for r in self.runs if r.result["lateness_ms"]["p99"] is not None]
        return max(values) if values else None


# ------------------------------------------------------------------------------------------ the benchmark
class Bench:
    def __init__(self, cfg: argparse.Namespace) -> None:
        self.cfg = cfg
        self.work = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
        self.runs: dict[str, list[Run]] = {}
        self.order: list[str] = []
        self.seed_seconds: dict[str, float] = {}
        self.started = time.monotonic()
        self.loads: list[float] = []
        self.profiles: dict[str, str] = {}
        self.rates: dict[str, float] = {}

    def keep(self, key: str, run: Run) -> Run:
        if key not in self.runs:
            self.order.append(key)
        self.runs.setdefault(key, []).append(run)
        self.loads.append(run.load)
        return run

    def figure(self, key: str) -> Figure | None:
        runs = self.runs.get(key)
        return Figure(key, runs) if runs else None

    # -------------------------------------------------------------- set-up
    def url(self, backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{self.work / (name + '.sqlite3')}"
        return f"{self.cfg.pg_url}/{name}"

    def database(self, backend: str, name: str, *, handwritten: bool = False, sessions: int = 0) -> str:
        url = self.url(backend, name)
        if backend == "postgresql":
            pg_admin(self.cfg.pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
        prepare_database(url, handwritten=handwritten)
        if sessions:
            log(f"storing {sessions:,} past sessions in {backend} {name} ...")
            seconds = seeding.seed(url, sessions, self.aa_version)
            self.seed_seconds[f"{backend} {sessions:,}"] = seconds
            log(f"  done in {seconds:.0f} s")
        return url

    def flows(self, name: str, files: dict[str, str]) -> Path:
        folder = self.work / name
        folder.mkdir(exist_ok=True)
        for filename, text in files.items():
            (folder / filename).write_text(text)
        return folder

    @contextlib.contextmanager
    def server(self, kind: str, **kwargs):
        srv = Server(kind, self.work, **kwargs)
        log(f"starting {srv.label} (gunicorn, 2 workers) ...")
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()

    # -------------------------------------------------------------- scenarios
    def main(self) -> None:
        cfg = self.cfg
        aa = (ROOT / "flows" / "auto_attendant.yaml").read_text()
        self.flows_aa = self.flows("flows-auto-attendant", {"auto_attendant.yaml": aa})
        self.aa_version = flow_version(self.flows_aa, "auto_attendant")
        self.flows_by_size = {n: self.flows(f"flows-{n}", {f"flow_{n}.yaml": flowgen.generate(n, FLOW_NUMBERS[n])})
                              for n in FLOW_NUMBERS}
        self.stub_ceiling()
        self.references_and_engine()
        if "stored" not in cfg.skip:
            self.stored_sessions()
        if "flows" not in cfg.skip:
            self.flow_size()
        if cfg.profile:
            self.profile()

    def stub_ceiling(self) -> None:
        """The stub against a raw-socket mirror that plays the engine's part as cheaply as possible."""
        log("stub ceiling (closed loop against a raw-socket mirror of the engine) ...")
        port, stub_port = free_port(), free_port()
        mirror = subprocess.Popen([PY, str(BENCH / "stub.py"), "--serve-mirror", str(port), "--api",
                                   f"http://127.0.0.1:{stub_port}/open"], stdout=subprocess.PIPE, text=True)
        try:
            mirror.stdout.readline()
            run = run_stub(None, section="ceiling", label="stub ceiling (mirror)", mode="closed",
                           calls=self.cfg.calls, cfg=self.cfg, target=f"http://127.0.0.1:{port}", stub_port=stub_port)
            self.keep("stub ceiling", run)
        finally:
            mirror.terminate()
            mirror.wait(5)

    def closed(self, srv: Server, name: str, backend: str) -> None:
        cfg = self.cfg
        where = f"{name} {backend}" if backend != "-" else name
        self.keep(f"{name} {backend} closed", run_stub(
            srv, section="main", label=f"{where}: closed loop, {cfg.calls} calls", mode="closed",
            calls=cfg.calls, cfg=cfg, target_kind="echo" if srv.kind == "bare" else "blocks", backend=backend))

    def target(self, srv: Server, name: str, backend: str) -> None:
        cfg = self.cfg
        where = f"{name} {backend}" if backend != "-" else name
        self.keep(f"{name} {backend} target", run_stub(
            srv, section="main", label=f"{where}: {cfg.rate:.0f}/s, 100 calls", mode="paced", calls=100,
            rate=cfg.rate, cfg=cfg, target_kind="echo" if srv.kind == "bare" else "blocks", backend=backend))

    def references_and_engine(self) -> None:
        with self.server("bare") as srv:
            self.closed(srv, "bare Flask", "-")
            self.target(srv, "bare Flask", "-")
        for backend in self.cfg.backends:
            url = self.database(backend, "ivr_bench", handwritten=True)
            with self.pair(f"hand-written and engine on {backend}",
                           {"kind": "handwritten", "database_url": url, "label": f"handwritten {backend}"},
                           {"kind": "engine", "database_url": url, "flows_dir": self.flows_aa,
                            "label": f"engine {backend}"}) as (hand, engine):
                # measured one at a time (the other one idles), alternating A B, B A, ... and pooled: the
                # closed loop twice per repeat (one server's throughput moved by a third between runs a
                # minute apart), the fixed rate once per repeat (its samples pooled for the percentiles)
                both = ((hand, "hand-written"), (engine, "engine"))
                for rep in range(2 * self.cfg.repeats):
                    for srv, name in both[:: 1 if rep % 2 == 0 else -1]:
                        self.closed(srv, name, backend)
                for rep in range(self.cfg.repeats):
                    for srv, name in both[:: 1 if rep % 2 == 0 else -1]:
                        self.target(srv, name, backend)
                if "calls" not in self.cfg.skip:
                    # one after the other on the warm engine server, in alternating order with --repeats
                    rate = self.scale_rate(backend)
                    for rep in range(self.cfg.repeats):
                        for calls in (10, 100, 1000)[:: 1 if rep % 2 == 0 else -1]:
                            self.keep(f"engine {backend} paced {calls}", run_stub(
                                engine, section="calls", label=f"engine {backend}: {rate:.0f}/s, {calls} calls",
                                mode="paced", calls=calls, rate=rate, cfg=self.cfg, backend=backend))

    def scale_rate(self, backend: str) -> float:
        """The rate of the scale curves: half the engine's closed-loop throughput on this backend (at
        most ``--rate``), so that they compare turnaround under a load the server sustains rather than
        the growth of a queue."""
        if self.cfg.scale_rate:
            self.rates[backend] = self.cfg.scale_rate
            return self.cfg.scale_rate
        if backend not in self.rates:
            runs = self.runs.get(f"engine {backend} closed")
            if not runs:
                raise RuntimeError("the scale rate comes from the engine's closed-loop throughput: run it first")
            best = statistics.mean(r.result["throughput"] for r in runs)
            self.rates[backend] = float(max(10, min(self.cfg.rate, 5 * round(best / 2 / 5))))
            log(f"scale curves on {backend} at {self.rates[backend]:.0f} notifications/s "
                f"(half the engine's closed-loop throughput of {best:.0f}/s)")
        return self.rates[backend]

    @contextlib.contextmanager
    def pair(self, label: str, a: dict, b: dict):
        """Two servers side by side (2 workers each), both sending their blocks to the same stub port."""
        stub_port = free_port()
        servers = [Server(options.pop("kind", "engine"), self.work, stub_port=stub_port, **options)
                   for options in (dict(a), dict(b))]
        log(f"starting {label}: two servers side by side (gunicorn, 2 workers each) ...")
        starters = [threading.Thread(target=srv.start) for srv in servers]
        try:
            for thread in starters:
                thread.start()
            for thread in starters:
                thread.join()
            for srv in servers:
                if srv.proc is None or srv.proc.poll() is not None or not srv.workers():
                    raise RuntimeError(f"{srv.label} did not start:\n{srv.tail()}")
            yield servers
        finally:
            for srv in servers:
                srv.stop()

    def compare(self, servers: list[Server], keys: list[str], labels: list[str], numbers: list[str],
                backend: str, section: str) -> None:
        for _ in range(self.cfg.repeats):
            # each side gets half the rate, so twice the time gives each as many samples as a single run
            runs = run_stub(servers, section=section, label=labels, mode="paced", calls=100,
                            rate=self.scale_rate(backend), cfg=self.cfg, to=numbers, backend=backend,
                            duration=2 * self.cfg.duration)
            for key, run in zip(keys, runs, strict=True):
                self.keep(key, run)

    def stored_sessions(self) -> None:
        big = self.cfg.sessions
        for backend in self.cfg.backends:
            small_url = self.database(backend, "ivr_bench_1k", sessions=1000)
            large_url = self.database(backend, "ivr_bench_large", sessions=big)
            with self.pair(f"{backend} 1,000 vs {big:,} stored sessions",
                           {"database_url": small_url, "flows_dir": self.flows_aa, "label": f"{backend} 1k stored"},
                           {"database_url": large_url, "flows_dir": self.flows_aa,
                            "label": f"{backend} {big} stored"}) as servers:
                self.compare(servers, [f"stored {backend} 1000", f"stored {backend} {big}"],
                             [f"engine {backend}: 1,000 stored sessions", f"engine {backend}: {big:,} stored sessions"],
                             [AUTO_ATTENDANT_NUMBER, AUTO_ATTENDANT_NUMBER], backend, "stored")
            # the large database is removed at the end (cleanup), not here: deleting gigabytes of files
            # can stall the disk under the next scenario

    def flow_size(self) -> None:
        small, large = sorted(FLOW_NUMBERS)
        for backend in self.cfg.backends:
            urls = {n: self.database(backend, f"ivr_bench_flow{n}") for n in (small, large)}
            with self.pair(f"{backend} {small}- vs {large}-node flow",
                           *({"database_url": urls[n], "flows_dir": self.flows_by_size[n],
                              "label": f"{backend} {n}-node flow"} for n in (small, large))) as servers:
                self.compare(servers, [f"flow {backend} {n}" for n in (small, large)],
                             [f"engine {backend}: {n}-node flow" for n in (small, large)],
                             [FLOW_NUMBERS[n] for n in (small, large)], backend, "flows")

    def profile(self) -> None:
        import io

        import profile_engine

        for backend in self.cfg.backends:
            log(f"profiling the engine's request path on {backend} (in process, cProfile) ...")
            url = self.url(backend, "ivr_bench")
            out = io.StringIO()
            profile_engine.profile(url, calls=self.cfg.profile_calls, top=15, out=out)
            self.profiles[backend] = out.getvalue().strip()
            print(self.profiles[backend], flush=True)

    def cleanup(self) -> None:
        if "postgresql" in self.cfg.backends:
            with contextlib.suppress(Exception):
                pg_admin(self.cfg.pg_url, *(f"DROP DATABASE IF EXISTS {n} WITH (FORCE)" for n in PG_DATABASES))
        if self.cfg.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# ------------------------------------------------------------------------------------------ report
def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def machine_description(cfg: argparse.Namespace) -> list[str]:
    from importlib.metadata import version

    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    with open("/proc/meminfo") as fh:
        mem_gb = int(fh.readline().split()[1]) / 1024 / 1024
    import sqlite3

    lines = [
        f"* CPU: {os.cpu_count()} cores ({model}), {mem_gb:.0f} GB RAM, {platform.system()} {platform.release()}",
        f"* Python {platform.python_version()}, gunicorn {version('gunicorn')}, Flask {version('flask')}, "
        f"SQLAlchemy {version('sqlalchemy')}, psycopg {version('psycopg')}, requests {version('requests')}, "
        f"SQLite {sqlite3.sqlite_version}",
    ]
    if "postgresql" in cfg.backends:
        lines.append(f"* PostgreSQL {pg_version(cfg.pg_url)} on the same machine (loopback), default settings "
                     "(fsync and synchronous_commit on)")
    if damon_pageout():
        lines.append("* The kernel pages out memory left untouched for a few seconds (DAMON `pageout`), the page "
                     "cache included: the parts of a large database not used lately are read from disk again")
    return lines


def damon_pageout(root: Path = Path("/sys/kernel/mm/damon/admin/kdamonds")) -> bool:
    """Whether a running DAMON scheme pages out cold memory (as some virtual machines' kernels do)."""
    for kdamond in root.glob("*/state"):
        with contextlib.suppress(OSError):
            if kdamond.read_text().strip() == "on" and any(
                    action.read_text().strip() == "pageout"
                    for action in kdamond.parent.glob("contexts/*/schemes/*/action")):
                return True
    return False


def report(bench: Bench, elapsed: float) -> str:
    cfg = bench.cfg
    out: list[str] = []
    f = bench.figure

    loop_times = [r.loop_ms for runs in bench.runs.values() for r in runs if r.loop_ms]
    fastest = min(loop_times, default=0.0)

    def speed(fig: Figure) -> str:
        """How fast the machine ran before the scenario's runs, against its fastest in this run."""
        return fmt(fastest / fig.mean("loop_ms"), 2) if fastest else "-"

    def row(key: str, label: str | None = None) -> str:
        fig = f(key)
        if fig is None:
            return ""
        r = fig.first
        return (f"| {label or r.label} | {fig.throughput:.0f} | {fmt(fig.p(0.5))} | {fmt(fig.p(0.99))} | "
                f"{fmt(fig.max)} | {fmt(fig.final_p50)} | {fig.errors} | "
                f"{fmt(fig.peak_mb, 0) if r.server != 'stub' else '-'} | {fig.mean('workers_cpu_pct'):.0f} | "
                f"{fig.stub_cpu_pct:.0f} | {fig.mean('machine_busy_pct'):.0f} | {fig.mean('load'):.1f} | "
                f"{speed(fig)} |")

    header = ("| scenario | notif/s | turnaround p50 ms | p99 ms | max ms | final p50 ms | errors | "
              "peak RSS/worker MB | workers CPU % | stub CPU % | machine busy % | load 1 min | speed |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out.append(header)
    for key in bench.order:
        out.append(row(key))
    table = "\n".join(line for line in out if line)

    ratios: list[str] = []
    targets: list[str] = []

    def pair(a: Figure, b: Figure) -> str:
        return f"p50 x{fmt(ratio(a.p(0.5), b.p(0.5)), 2)}, p99 x{fmt(ratio(a.p(0.99), b.p(0.99)), 2)}"

    def target(name: str, ok: bool | None, detail: str) -> None:
        mark = "n/a" if ok is None else ("met" if ok else "NOT met")
        targets.append(f"| {name} | {detail} | **{mark}** |")

    for backend in cfg.backends:
        engine, hand = f(f"engine {backend} closed"), f(f"hand-written {backend} closed")
        bare = f("bare Flask - closed")
        if engine and hand:
            value = ratio(engine.throughput, hand.throughput)
            ratios.append(f"| engine / hand-written throughput, {backend} | {fmt(value, 2)} |")
            pairs = sorted(ratio(e.result["throughput"], h.result["throughput"]) or 0.0
                           for e, h in zip(engine.runs, hand.runs, strict=False))
            spread = f"; pair by pair x{fmt(pairs[0], 2)} to x{fmt(pairs[-1], 2)}" if len(pairs) > 1 else ""
            target(f"engine throughput >= hand-written, {backend}", value is not None and value >= 1.0,
                   f"{engine.throughput:.0f} vs {hand.throughput:.0f} notif/s (x{fmt(value, 2)}{spread})")
        if engine and bare:
            value = ratio(engine.throughput, bare.throughput)
            ratios.append(f"| engine {backend} / bare Flask throughput | {fmt(value, 2)} |")
        if hand and bare:
            ratios.append(f"| hand-written {backend} / bare Flask throughput | "
                          f"{fmt(ratio(hand.throughput, bare.throughput), 2)} |")
    for backend in cfg.backends:
        paced = f(f"engine {backend} target")
        if paced:
            p99 = paced.p(0.99)
            achieved = paced.throughput
            # how hard the rate drove the engine: near its closed-loop throughput, the turnaround is
            # mostly queueing, whatever the code does
            closed = f(f"engine {backend} closed")
            share = (f", {100 * achieved / closed.throughput:.0f}% of its closed-loop throughput "
                     f"({closed.throughput:.0f})" if closed and closed.throughput else "")
            target(f"turnaround p99 < 25 ms at {cfg.rate:.0f}/s, {backend}", p99 is not None and p99 < 25,
                   f"p99 {fmt(p99)} ms (p50 {fmt(paced.p(0.5))}) at {achieved:.0f} notif/s achieved{share}, "
                   f"speed {speed(paced)}")
    scale_pairs = (  # (small key, large key, ratio row, target), per backend
        ("stored {} 1000", f"stored {{}} {cfg.sessions}", f"turnaround {cfg.sessions:,} / 1,000 stored sessions, {{}}",
         f"turnaround changes < 10% from 1k to {cfg.sessions:,} stored sessions, {{}} (p50)"),
        ("flow {} 10", "flow {} 2000", "turnaround 2,000-node / 10-node flow, {}",
         "turnaround changes < 10% from a 10- to a 2,000-node flow, {} (p50)"),
    )
    for small_key, large_key, row, goal in scale_pairs:
        for backend in cfg.backends:
            small, large = f(small_key.format(backend)), f(large_key.format(backend))
            if small and large:
                r50, r99 = ratio(large.p(0.5), small.p(0.5)), ratio(large.p(0.99), small.p(0.99))
                ratios.append(f"| {row.format(backend)} | {pair(large, small)} |")
                target(goal.format(backend), r50 is not None and abs(r50 - 1) < 0.10,
                       f"p50 {fmt(small.p(0.5))} -> {fmt(large.p(0.5))} ms (x{fmt(r50, 2)}); "
                       f"p99 {fmt(small.p(0.99))} -> {fmt(large.p(0.99))} ms (x{fmt(r99, 2)})")
    for backend in cfg.backends:
        c10, c100, c1000 = (f(f"engine {backend} paced {n}") for n in (10, 100, 1000))
        if c10 and c100 and c1000:
            ratios.append(f"| turnaround at 100 / 10 calls in progress, {backend} | {pair(c100, c10)} |")
            ratios.append(f"| turnaround at 1,000 / 10 calls in progress, {backend} | {pair(c1000, c10)} |")
    engine_peaks = [fig.peak_mb for key in bench.order if (fig := f(key)) and fig.first.server == "engine"]
    if engine_peaks:
        peak = max(engine_peaks)
        target("memory per engine worker < 100 MB", peak < 100, f"peak RSS {peak:.0f} MB (highest of every engine run)")

    notes = []
    for backend in cfg.backends:
        paced = f(f"engine {backend} target")
        if paced and paced.throughput < 0.95 * cfg.rate:
            notes.append(f"* The engine on {backend} sustained {paced.throughput:.0f} of the {cfg.rate:.0f} "
                         "notifications/s asked on this machine: in that row the turnaround is mostly time spent "
                         "queueing. The scale-curve rows show the turnaround at a rate the server sustains.")
    loads = bench.loads or [0.0]
    lines = [
        "# Benchmark results",
        "",
        f"Run on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with `{' '.join(['python', *sys.argv])}` "
        f"({'quick' if cfg.quick else 'full'} run, {elapsed / 60:.1f} minutes). Figures are from this one run. "
        "The stored-session and flow-size ratios compare two servers measured at the same moment; the other "
        "ratios compare runs made a few minutes apart on the same machine.",
        "",
        "## Machine",
        "",
        *machine_description(cfg),
        f"* Load during the run (1-minute load average, sampled at the end of each scenario): "
        f"{min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores; before the run: "
        f"{bench.initial_load:.1f}, machine {bench.initial_busy:.0f}% busy with other work. "
        "The stub, the two gunicorn workers and the database share these cores.",
        *([f"* Speed: a fixed Python loop (`loop_ms`, {SPEED_LOOPS:,} iterations on one core), timed before each "
           f"scenario, took {fastest:.0f} to {max(loop_times):.0f} ms. "
           "The *speed* column is the fastest time over the scenario's own (pooled runs: their mean): 1.00 is the "
           "machine at its fastest in this run, 0.50 half as fast."] if fastest else []),
        "",
        "## Reproduce",
        "",
        "```sh",
        "make install                        # the project's .venv",
        ".venv/bin/python bench/run.py --quick   # about 5 minutes: 100,000 stored sessions, 1 repeat",
        ".venv/bin/python bench/run.py           # 1,000,000 stored sessions, 2 repeats",
        ".venv/bin/python bench/profile_engine.py --db sqlite     # where the time goes (also --db postgresql)",
        "```",
        "",
        f"Settings of this run: gunicorn `deploy/gunicorn.conf.py` (2 workers, {os.environ.get('IVR_THREADS', 4)} "
        f"threads each), closed loop with {cfg.calls} calls in progress, fixed rate {cfg.rate:.0f} notifications/s, "
        f"warm-up {cfg.warmup:g} s, measured for {cfg.duration:g} s per scenario (twice as long for the side-by-side "
        f"comparisons), {cfg.repeats} repeat(s) (hand-written and engine alternate {2 * cfg.repeats} times in the "
        f"closed loop and {cfg.repeats} at the fixed rate), "
        f"{cfg.sessions:,} stored sessions for the large database"
        + (" (--quick: 100,000 instead of 1,000,000)" if cfg.quick and cfg.sessions == 100_000 else "") + ". "
        + ("Scale curves (stored sessions, flow size, calls in progress) at "
           + ", ".join(f"{rate:.0f} notifications/s on {backend}" for backend, rate in bench.rates.items())
           + (" (fixed with --scale-rate)." if cfg.scale_rate else
              " (half the engine's closed-loop throughput on each backend, at most the fixed rate: a load the "
              "server sustains, so that the curves compare turnaround and not the growth of a queue).")
           if bench.rates else ""),
        "",
        "## Figures",
        "",
        table,
        "",
        "Turnaround: from the stub starting to post a notification to the stub having read the block it "
        "causes (for the bare endpoint: its HTTP response). *final*: the response time of a call's last "
        "notification (`ended`, no block follows). Peak RSS: highest resident set of any gunicorn worker "
        "(VmHWM from /proc, sampled every 0.2 s). CPU: over the measured window; 100% is one core.",
        "",
        "## Ratios",
        "",
        "| ratio | value |",
        "|---|---:|",
        *ratios,
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *targets,
        "",
    ]
    if bench.seed_seconds:
        notes.append("* Stored sessions were loaded in: " + ", ".join(f"{k}: {v:.0f} s" for k, v in
                                                                   bench.seed_seconds.items()) + ".")
    if notes:
        lines += ["## Notes", "", *notes, ""]
    if bench.profiles:
        lines += ["## Where the engine's time goes (cProfile, in process)", "",
                  "`bench/profile_engine.py`: the application in process, driven through Flask's test client, "
                  "the real Hoiio client posting to a sink; CPU time; see bench/README.md for the reading.", ""]
        for backend, text in bench.profiles.items():
            lines += [f"### {backend}", "", "```", text, "```", ""]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ main
def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 stored sessions, shorter scenarios, 1 repeat")
    parser.add_argument("--sessions", type=int, help="stored past sessions in the large database (default 1,000,000)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (default 3; quick 2)")
    parser.add_argument("--duration", type=float, help="seconds measured per scenario (default 12; quick 4)")
    parser.add_argument("--repeats", type=int, help="runs of each comparison, alternating order (default 2; quick 1)")
    parser.add_argument("--calls", type=int, default=32, help="calls in progress in the closed loop (default 32)")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed rate, notifications/s (default 200)")
    parser.add_argument("--scale-rate", type=float, help="rate of the scale curves (default: half the engine's "
                        "closed-loop throughput on each backend, at most --rate)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server without a database name "
                        f"(databases {', '.join(PG_DATABASES)} are created there and dropped)")
    parser.add_argument("--skip", default="", help="comma-separated: stored,flows,calls")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="profile the engine in process at the end (default: on, off with --quick)")
    parser.add_argument("--profile-calls", type=int, default=150)
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help="where to write the results")
    parser.add_argument("--no-results", action="store_true", help="do not write the results file")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, SQLite files)")
    cfg = parser.parse_args(argv)
    quick = cfg.quick
    cfg.sessions = cfg.sessions or (100_000 if quick else 1_000_000)
    cfg.warmup = cfg.warmup if cfg.warmup is not None else (2.0 if quick else 3.0)
    cfg.duration = cfg.duration if cfg.duration is not None else (4.0 if quick else 12.0)
    cfg.repeats = cfg.repeats or (1 if quick else 2)
    cfg.profile = (not quick) if cfg.profile is None else cfg.profile
    cfg.backends = [b.strip() for b in cfg.backends.split(",") if b.strip()]
    cfg.skip = {s.strip() for s in cfg.skip.split(",") if s.strip()}
    cfg.pg_url = cfg.pg_url.rstrip("/")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    bench = Bench(cfg)
    busy0 = machine_cpu()
    time.sleep(1.0)
    busy1 = machine_cpu()
    bench.initial_busy = 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    bench.initial_load = os.getloadavg()[0]
    log(f"work folder {bench.work}; machine {bench.initial_busy:.0f}% busy before starting")
    try:
        bench.main()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.cleanup()
    elapsed = time.monotonic() - bench.started
    text = report(bench, elapsed)
    print("\n" + text)
    if not cfg.no_results:
        cfg.results.write_text(text)
        log(f"wrote {cfg.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
