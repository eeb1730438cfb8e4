"""The docs/deploy.md path on this machine: `ivr db upgrade`, gunicorn with deploy/gunicorn.conf.py on
PostgreSQL, /readyz green, a test call counted by /metrics across workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from engine.fakes.hoiio import FakeHoiio
from engine.fakes.hoiio_calls import CallerScript
from tests.conftest import fresh_postgres_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _conf() -> dict:
    """deploy/gunicorn.conf.py's names (settings and hooks), as gunicorn reads the file."""
    namespace: dict = {"__file__": str(ROOT / "deploy" / "gunicorn.conf.py")}
    exec(compile((ROOT / "deploy" / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)  # noqa: S102
    return namespace


def _clean_env(**extra: str) -> dict:
    """This process's environment without the server's own settings, with ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("HOIIO_", "IVR_", "PROMETHEUS"))}, **extra}


def test_gunicorn_on_postgres_ready_and_counting(tmp_path):
    db_url = fresh_postgres_url()
    port = _free_port()
    fake = FakeHoiio(app_id="deploy-app", access_token="deploy-token")  # noqa: S106
    api_url = fake.start("127.0.0.1", 0)
    env = {
        **_clean_env(),
        "HOIIO_APP_ID": "deploy-app", "HOIIO_ACCESS_TOKEN": "deploy-token", "HOIIO_API_URL": api_url,
        "IVR_PUBLIC_URL": f"http://127.0.0.1:{port}", "DATABASE_URL": db_url, "IVR_FLOWS": str(ROOT / "flows"),
        "IVR_BIND": f"127.0.0.1:{port}", "IVR_WORKERS": "2", "IVR_THREADS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    upgrade = subprocess.run([BIN / "ivr", "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60)
    assert upgrade.returncode == 0, upgrade.stderr
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen([BIN / "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py"), "engine.wsgi:app"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = requests.get(f"{base}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, (tmp_path / "gunicorn.log").read_text()[-2000:]
        checks = ready.json()["checks"]
        assert checks["database"] == "ok" and checks["migrations"] == "at head"
        assert "auto_attendant" in checks["flows"]

        session = fake.incoming_call(f"{base}/hoiio/answer", caller="+6591234567", to="+6531580000",
                                     script=CallerScript(keys=["9"], hangup_after=2))
        fake.wait_until_ended(session, timeout=20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = requests.get(f"{base}/metrics", timeout=2).text
            if _metric(text, "ivr_notifications_total", block="answer", outcome="accepted") >= 1:
                break
            time.sleep(0.2)
        assert _metric(text, "ivr_notifications_total", block="answer", outcome="accepted") == 1
        assert _metric(text, "ivr_notifications_total") >= 3
        assert _metric(text, "ivr_provider_request_seconds_count") >= 2
        # no caller numbers or session ids in metric labels
        assert "+6591234567" not in text and session not in text
        # SIGTERM: graceful stop within the configured grace period
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert "Shutting down: Master" in (tmp_path / "gunicorn.log").read_text()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
        fake.stop()


def test_gunicorn_settings_recycle_workers_and_log_accesses_only_when_asked(monkeypatch):
    """A recycled worker reloads the app while callers wait: off unless IVR_MAX_REQUESTS is set. The
    access log doubles the engine's own line per notification: off unless IVR_ACCESS_LOG is set."""
    from gunicorn.config import Config

    def loaded() -> Config:
        cfg = Config()
        namespace = _conf()
        for name in ("max_requests", "max_requests_jitter", "threads", "worker_class", "accesslog"):
            cfg.set(name, namespace[name])
        return cfg

    monkeypatch.delenv("IVR_MAX_REQUESTS", raising=False)
    monkeypatch.delenv("IVR_ACCESS_LOG", raising=False)
    default = loaded()
    assert (default.max_requests, default.max_requests_jitter) == (0, 0)  # gunicorn: 0 is never
    assert default.worker_class_str == "gthread" and default.threads == 4
    assert default.accesslog is None  # the engine's own line per notification is the log
    monkeypatch.setenv("IVR_MAX_REQUESTS", "20000")
    monkeypatch.setenv("IVR_ACCESS_LOG", "-")
    asked = loaded()
    assert (asked.max_requests, asked.max_requests_jitter) == (20000, 2000)
    assert asked.accesslog == "-"


def test_each_worker_sizes_its_database_pool_from_the_threads_it_runs(monkeypatch):
    """``--threads 8`` on gunicorn's command line overrides IVR_THREADS=4: the worker's settings must
    see 8, or its pool keeps 5 connections for 8 threads."""
    from types import SimpleNamespace

    from engine.config import Settings

    namespace = _conf()
    monkeypatch.setenv("IVR_THREADS", "4")
    namespace["post_fork"](None, SimpleNamespace(cfg=SimpleNamespace(threads=8)))
    settings = Settings.from_env({"HOIIO_APP_ID": "a", "HOIIO_ACCESS_TOKEN": "t", "IVR_PUBLIC_URL": "https://x.example",
                                  "IVR_FLOWS": str(ROOT / "flows"), "IVR_THREADS": os.environ["IVR_THREADS"]})
    assert settings.db_pool_size == 9


def test_gunicorn_warns_when_postgres_would_refuse_the_workers_connections(monkeypatch):
    from types import SimpleNamespace

    namespace = _conf()
    monkeypatch.setenv("DATABASE_URL", fresh_postgres_url())
    monkeypatch.delenv("IVR_DB_POOL_SIZE", raising=False)
    warnings: list[str] = []
    log = SimpleNamespace(warning=lambda message, *args: warnings.append(message % args if args else message))
    namespace["when_ready"](SimpleNamespace(cfg=SimpleNamespace(workers=2, threads=4), log=log))
    assert warnings == []  # 2 x (5 + 10 + 2) = 34
    import sqlalchemy as sa

    engine = sa.create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as conn:
        limit = int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
    engine.dispose()
    workers = limit // 21 + 1  # 8 threads: 9 in each pool, 10 more at a burst, 2 for results
    namespace["when_ready"](SimpleNamespace(cfg=SimpleNamespace(workers=workers, threads=8), log=log))
    assert len(warnings) == 1 and f"{workers} workers may open {workers * 21} at a burst" in warnings[0]


def test_each_worker_takes_connections_for_the_threads_it_runs(monkeypatch):
    """gunicorn's default of 1000 lets a busy worker queue notifications behind its own threads; the
    hooks size it from the threads (``--threads`` on the command line included), unless
    IVR_WORKER_CONNECTIONS or ``--worker-connections`` says otherwise."""
    from types import SimpleNamespace

    from gunicorn.config import Config

    hooks = _conf()
    monkeypatch.delenv("IVR_WORKER_CONNECTIONS", raising=False)
    cfg = Config()
    cfg.set("threads", 8)
    hooks["size_worker_connections"](SimpleNamespace(cfg=cfg))
    assert cfg.worker_connections == 9
    reloaded = Config()  # a reload (HUP) reads the settings again, gunicorn's default included
    hooks["on_reload"](SimpleNamespace(cfg=reloaded))
    assert reloaded.worker_connections == reloaded.threads + 1
    monkeypatch.setenv("IVR_WORKER_CONNECTIONS", "30")
    asked = Config()
    hooks["size_worker_connections"](SimpleNamespace(cfg=asked))
    assert asked.worker_connections == 30
    given = Config()
    given.set("worker_connections", 50)  # --worker-connections 50
    hooks["size_worker_connections"](SimpleNamespace(cfg=given))
    assert given.worker_connections == 50


def test_a_bad_worker_connections_setting_stops_gunicorn_with_one_line(tmp_path):
    port = _free_port()
    env = _clean_env(IVR_BIND=f"127.0.0.1:{port}", IVR_WORKER_CONNECTIONS="lots")
    started = subprocess.run([BIN / "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py"), "engine.wsgi:app"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 1
    errors = [line for line in started.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and errors[0].endswith(
        "IVR_WORKER_CONNECTIONS must be a number of connections per worker, 1-100000 (got 'lots')")
    assert "Traceback" not in started.stderr


SLOW_APP = '''
import os, time


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.5)  # long enough that neither worker frees its thread before all four are taken
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''


def test_a_worker_with_every_thread_busy_leaves_new_connections_to_the_other(tmp_path):
    """Two workers of one thread each: four slow requests at once go two to each worker (at most a
    thread's request and one more in each), not three or four queued in whichever accepted first."""
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "slowapp.py").write_text(SLOW_APP)
    port = _free_port()
    env = _clean_env(IVR_BIND=f"127.0.0.1:{port}", IVR_WORKERS="2", IVR_THREADS="1")
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen([BIN / "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py"), "--pythonpath",
                               str(tmp_path), "slowapp:app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        pids: set[str] = set()
        while len(pids) < 2 and time.monotonic() < deadline:  # both workers booted and answering
            try:
                pids.add(requests.get(f"{base}/", timeout=1).text)
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        assert len(pids) == 2, (tmp_path / "gunicorn.log").read_text()[-2000:]
        time.sleep(0.3)  # both back in their accept loops
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: requests.get(f"{base}/slow", timeout=10).text, range(4)))
        assert sorted(answers.count(pid) for pid in set(answers)) == [2, 2], answers
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
