"""Process helpers for the end-to-end tests: free ports, child processes that always go away, the
real server under gunicorn (or ``ivr serve``), the fake Hoiio as its own process, and small HTTP
utilities.

Every child is started in its own process group with a parent-death signal, is tracked in
``_LIVE`` and is stopped (SIGTERM, then SIGKILL of its group) by ``Proc.stop`` — called from fixture
teardown, and once more at interpreter exit for anything a crashed test left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import requests

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "flows"
SINGAPORE = ZoneInfo("Asia/Singapore")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
VENV_BIN = ROOT / ".venv" / "bin"
GUNICORN = str(VENV_BIN / "gunicorn")
IVR = str(VENV_BIN / "ivr")
HOST = "127.0.0.1"

APP_ID = "e2e-app"
TOKEN = "e2e-token-5f1c"  # noqa: S105 - the fake account's token

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_LIVE: set[Proc] = set()
_LIVE_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _with_parent_death_signal(argv: list[str], death_signal: str = "TERM") -> list[str]:
    """``setpriv --pdeathsig TERM``: the child gets SIGTERM (or ``death_signal``) if the test process
    dies (even by SIGKILL). Done with util-linux rather than a ``preexec_fn``, which is unsafe (and
    deprecated) in a process that runs threads."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", death_signal, *argv] if setpriv else argv


class Proc:
    """A child process with its own process group whose output goes to a log file; ``death_signal``
    is the signal it gets if the test process dies."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: Path,
        death_signal: str = "TERM",
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            _with_parent_death_signal(self.argv, death_signal),
            env=dict(env),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, limit: int = 6000) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    def terminate(self) -> None:
        """SIGTERM to the group (gunicorn stops its workers); ``stop`` waits for it."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM to the group (gunicorn stops its workers), SIGKILL to the group if it lingers."""
        try:
            if self.popen.poll() is None:
                self.terminate()
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait(5)
            if _group_members(self.popen.pid):  # workers left behind by a master that died first
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
            return self.popen.returncode
        finally:
            with contextlib.suppress(OSError):
                self._log_file.close()
            with _LIVE_LOCK:
                _LIVE.discard(self)


def _group_members(pgid: int) -> list[int]:
    """Processes still in the process group ``pgid`` (read from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


def stop_all(procs: Sequence[Proc]) -> None:
    """Stop several processes at once: SIGTERM to all, then wait for each."""
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in procs:
        proc.stop()


@atexit.register
def _stop_leftovers() -> None:
    stop_all(list(_LIVE))


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_recorded(db: Any, session: str, timeout: float = 10) -> None:
    """Wait until the server has stored the outcome of every notification of ``session``: a sent
    block's result and its notification's outcome are written moments after the answer
    (``Database.record_sent`` writes them behind)."""
    wait_until(lambda: all(n.outcome is not None for n in db.recent_notifications(500, session=session)),
               timeout, f"the outcomes of the notifications of {session}")


def _ready(url: str, proc: Proc) -> bool:
    if not proc.alive():
        raise ProcessExited(proc)
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


class ProcessExited(AssertionError):
    def __init__(self, proc: Proc) -> None:
        super().__init__(f"{proc.name} exited with {proc.popen.returncode} before it was ready:\n{proc.output()}")
        self.proc = proc


@dataclass
class Server:
    """A running engine server (gunicorn or ``ivr serve``)."""

    url: str
    proc: Proc
    env: dict[str, str]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.post(self.url + path, **kwargs)

    def healthy(self) -> bool:
        return self.get("/healthz").status_code == 200

    def stop(self) -> None:
        self.proc.stop()


def server_env(
    *,
    api_url: str,
    database_url: str,
    flows: Path,
    public_url: str,
    verify_signatures: bool = True,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "HOIIO_", "DATABASE_URL"))}
    env.update(
        HOIIO_APP_ID=APP_ID,
        HOIIO_ACCESS_TOKEN=TOKEN,
        HOIIO_API_URL=api_url,
        IVR_PUBLIC_URL=public_url,
        DATABASE_URL=database_url,
        IVR_FLOWS=str(flows),
        IVR_VERIFY_SIGNATURES="1" if verify_signatures else "0",
        PYTHONUNBUFFERED="1",
        IVR_RECOVERY_INTERVAL="0.5",  # look for blocks with no news often, so faults resolve quickly
        IVR_RECOVERY_AFTER="1.5",
    )
    env.update(extra or {})
    return env


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
    """``gunicorn -w 2 -k gthread --threads 4 -b 127.0.0.1:PORT engine.wsgi:app``, ready (/readyz 200)."""
    [server] = start_gunicorns(tmp, [name], api_url=api_url, database_url=database_url, flows=flows,
                               workers=workers, threads=threads, extra_env=extra_env)
    return server


def start_gunicorns(
    tmp: Path,
    names: Sequence[str],
    *,
    api_url: str,
    database_url: str,
    flows: Path,
    workers: int = 2,
    threads: int = 4,
    extra_env: Mapping[str, str] | None = None,
    attempts: int = 3,
) -> list[Server]:
    """Several gunicorn servers started side by side (all spawned first, then waited for).

    Spawned from the calling thread on purpose: the parent-death signal fires when the *thread*
    that started a child ends. ``--no-control-socket``: gunicorn 27 otherwise puts one control
    socket per user in ~/.gunicorn, which servers started side by side would fight over. A server
    that exits before it is ready (its port was taken meanwhile) is started again on another port."""

    def spawn(name: str, attempt: int) -> tuple[Proc, str, dict[str, str]]:
        port = free_port()
        url = f"http://{HOST}:{port}"
        env = server_env(api_url=api_url, database_url=database_url, flows=flows, public_url=url, extra=extra_env)
        argv = [
            GUNICORN, "-w", str(workers), "-k", "gthread", "--threads", str(threads), "-b", f"{HOST}:{port}",
            "--no-control-socket", "--graceful-timeout", "5", "--timeout", "60", "engine.wsgi:app",
        ]  # fmt: skip
        return Proc(f"{name}:{port}", argv, env=env, cwd=ROOT, log=tmp / f"{name}-{port}-{attempt}.log"), url, env

    pending = {name: spawn(name, 0) for name in names}
    ready: dict[str, Server] = {}
    try:
        for name in names:
            for attempt in range(1, attempts + 1):
                proc, url, env = pending[name]
                try:
                    wait_until(lambda p=proc, u=url: _ready(u + "/readyz", p), START_TIMEOUT, f"{name} /readyz")
                    ready[name] = Server(url, proc, env)
                    break
                except ProcessExited as exc:
                    proc.stop()
                    if attempt == attempts:
                        raise AssertionError(f"{name} did not start after {attempts} attempts") from exc
                    pending[name] = spawn(name, attempt)
    except BaseException:
        stop_all([proc for proc, _url, _env in pending.values()])
        raise
    return [ready[name] for name in names]


ServerT = TypeVar("ServerT", bound=Server)


def start_until_ready(name: str, spawn: Callable[[int, int], ServerT], *, attempts: int = 3) -> ServerT:
    """``spawn(port, attempt)`` starts a server on a free port; returned once it is ready (/readyz
    200). A server that exits before it is ready (its port was taken meanwhile) is started again on
    another port; one that fails otherwise is stopped."""
    last: Exception | None = None
    for attempt in range(attempts):
        server = spawn(free_port(), attempt)
        try:
            wait_until(lambda s=server: _ready(s.url + "/readyz", s.proc), START_TIMEOUT, f"{name} /readyz")
            return server
        except ProcessExited as exc:
            last = exc
            server.proc.stop()
        except BaseException:
            server.proc.stop()
            raise
    raise AssertionError(f"{name} did not start after {attempts} attempts") from last


def start_ivr_serve(tmp: Path, *, env: Mapping[str, str], cwd: Path, attempts: int = 3) -> Server:
    """``ivr serve --port PORT`` (the development server), ready (/readyz 200)."""

    def spawn(port: int, attempt: int) -> Server:
        proc = Proc(f"ivr-serve:{port}", [IVR, "serve", "--port", str(port)], env=env, cwd=cwd,
                    log=tmp / f"ivr-serve-{port}-{attempt}.log")
        return Server(f"http://{HOST}:{port}", proc, dict(env))

    return start_until_ready("ivr serve", spawn, attempts=attempts)


@dataclass
class FakeProcess:
    """``ivr fake-hoiio`` running as its own process."""

    api_url: str  # http://127.0.0.1:P/open
    root_url: str
    proc: Proc

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.request(method, self.root_url + path, **kwargs)

    def stop(self) -> None:
        self.proc.stop()


def start_fake_process(tmp: Path, *, app_id: str = APP_ID, token: str = TOKEN, name: str = "fake-hoiio") -> FakeProcess:
    """``ivr fake-hoiio --port 0``: the port it got is read from the ``HOIIO_API_URL=`` line it prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "HOIIO_"))}
    env["PYTHONUNBUFFERED"] = "1"
    log = tmp / f"{name}.log"
    argv = [IVR, "fake-hoiio", "--host", HOST, "--port", "0", "--app-id", app_id, "--access-token", token,
            "--call-limit", "100"]
    proc = Proc(name, argv, env=env, cwd=ROOT, log=log)
    try:

        def api_url() -> str | None:
            if not proc.alive():
                raise ProcessExited(proc)
            for line in proc.output(20000).splitlines():
                if line.startswith("HOIIO_API_URL="):
                    return line.split("=", 1)[1].strip()
            return None

        url = wait_until(api_url, START_TIMEOUT, "ivr fake-hoiio to print HOIIO_API_URL")
        root = url.removesuffix("/open")
        wait_until(lambda: _ready(root + "/_fake/sessions", proc), START_TIMEOUT, "the fake's control API")
        return FakeProcess(url, root, proc)
    except BaseException:
        proc.stop()
        raise


def run_cli(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60) -> str:
    """Run an ``ivr`` sub-command to completion; its output, or an assertion error with it."""
    result = subprocess.run(
        [IVR, *argv], env=dict(env or os.environ), cwd=str(ROOT), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"ivr {' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Hit:
    """One request a ``RecordingServer`` received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingServer:
    """A small threaded HTTP server in this process: records every request and answers with
    ``respond(hit) -> (http status, JSON payload)``."""

    def __init__(self, respond: Callable[[Hit], tuple[int, Any]]) -> None:
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                hit = Hit(self.command, self.path, dict(self.headers), self.rfile.read(length))
                with owner.lock:
                    owner.hits.append(hit)
                status, payload = respond(hit)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://{HOST}:{self.server.server_address[1]}"

    def snapshot(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def signed(fields: Sequence[tuple[str, str]] | Mapping[str, str], token: str = TOKEN) -> tuple[bytes, dict[str, str]]:
    """A notification body as Hoiio posts it, and its headers with ``X-Hoiio-Signature``."""
    from urllib.parse import urlencode

    from engine.providers.hoiio.signature import SIGNATURE_HEADER, sign_body

    body = urlencode(list(fields.items()) if isinstance(fields, Mapping) else list(fields)).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: sign_body(body, token)}
    return body, headers


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")
