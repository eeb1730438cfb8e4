"""Start-up: bad configuration or an invalid flow stops the server with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError, Settings, worker_connections

ROOT = Path(__file__).resolve().parents[2]


def _start_wsgi(env_overrides: dict[str, str], tmp_path: Path,
                code: str = "import engine.wsgi") -> subprocess.CompletedProcess:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOIIO_", "IVR_", "DATABASE_URL"))}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


GOOD = {"HOIIO_APP_ID": "a", "HOIIO_ACCESS_TOKEN": "t", "IVR_PUBLIC_URL": "https://ivr.example.com"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "HOIIO_APP_ID and HOIIO_ACCESS_TOKEN must be set"),
        ({"HOIIO_APP_ID": "a", "HOIIO_ACCESS_TOKEN": "t"}, "IVR_PUBLIC_URL must be set"),
        ({**GOOD, "IVR_PUBLIC_URL": "ivr.example.com"}, "IVR_PUBLIC_URL must be a full http:// or https:// URL"),
        ({**GOOD, "HOIIO_API_URL": "ftp://x"}, "HOIIO_API_URL must be a full http:// or https:// URL"),
        ({**GOOD, "IVR_VERIFY_SIGNATURES": "maybe"}, "IVR_VERIFY_SIGNATURES must be 1 or 0"),
        ({**GOOD, "IVR_FLOWS": "/nonexistent/flows"}, "the flows folder '/nonexistent/flows' does not exist"),
        ({**GOOD, "DATABASE_URL": "ivr.db"}, "DATABASE_URL must look like"),
    ],
)
def test_bad_configuration_is_one_line(env, expected, tmp_path):
    env = dict(env)
    if "IVR_FLOWS" not in env:
        env["IVR_FLOWS"] = str(ROOT / "flows")
    result = _start_wsgi(env, tmp_path)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ivr: cannot start: ") and expected in lines[0]


def test_invalid_flow_refuses_to_start_and_names_it(tmp_path):
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "support.yaml").write_text(
        "start: main\nnodes:\n  main:\n    type: play\n    say: hi\n    next: salse\n  sales:\n    type: hangup\n"
    )
    result = _start_wsgi({**GOOD, "IVR_FLOWS": str(flows), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}, tmp_path)
    assert result.returncode == 3
    line = result.stderr.strip()
    assert "\n" not in line
    assert "support.yaml:6:" in line and "salse" in line and "sales" in line


def test_valid_configuration_starts(tmp_path):
    result = _start_wsgi({**GOOD, "IVR_FLOWS": str(ROOT / "flows"), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
                          "IVR_RECOVERY_INTERVAL": "0"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.db").exists()


def test_the_worker_hides_the_app_from_full_garbage_collections(tmp_path):
    code = "import gc; import engine.wsgi; print(gc.get_freeze_count())"
    result = _start_wsgi({**GOOD, "IVR_FLOWS": str(ROOT / "flows"), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
                          "IVR_RECOVERY_INTERVAL": "0"}, tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip().splitlines()[-1]) > 10_000  # the app's objects, frozen once built


def test_settings_reject_bad_numbers():
    with pytest.raises(ConfigError, match="IVR_MAX_BODY_BYTES"):
        Settings.from_env({**GOOD, "IVR_FLOWS": str(ROOT / "flows"), "IVR_MAX_BODY_BYTES": "lots"})


@pytest.mark.parametrize(
    ("env", "size"),
    [({}, 5), ({"IVR_THREADS": "2"}, 5), ({"IVR_THREADS": "8"}, 9), ({"IVR_THREADS": "8", "IVR_DB_POOL_SIZE": "3"}, 3),
     ({"IVR_DB_POOL_SIZE": "12"}, 12)],
)
def test_the_database_pool_holds_a_connection_per_request_thread(env, size):
    assert Settings.from_env({**GOOD, "IVR_FLOWS": str(ROOT / "flows"), **env}).db_pool_size == size


@pytest.mark.parametrize(("env", "expected"), [({"IVR_DB_POOL_SIZE": "0"}, "IVR_DB_POOL_SIZE must be a number"),
                                               ({"IVR_DB_POOL_SIZE": "many"}, "IVR_DB_POOL_SIZE must be a number"),
                                               ({"IVR_THREADS": "-4"}, "IVR_THREADS must be a number")])
def test_settings_reject_bad_pool_sizes(env, expected):
    with pytest.raises(ConfigError, match=expected):
        Settings.from_env({**GOOD, "IVR_FLOWS": str(ROOT / "flows"), **env})


@pytest.mark.parametrize(("env", "threads", "expected"),
                         [({}, 4, 5), ({}, 8, 9), ({"IVR_WORKER_CONNECTIONS": "40"}, 4, 40)])
def test_a_worker_holds_a_connection_per_request_thread_and_one_kept_alive(env, threads, expected):
    assert worker_connections(env, threads) == expected


@pytest.mark.parametrize("value", ["0", "lots", "-3"])
def test_bad_worker_connections_are_refused_in_one_line(value):
    with pytest.raises(ConfigError, match=f"IVR_WORKER_CONNECTIONS must be a number of connections per worker, "
                                          f"1-100000 \\(got '{value}'\\)"):
        worker_connections({"IVR_WORKER_CONNECTIONS": value}, 4)


def test_eight_request_threads_on_postgres_reuse_their_connections():
    """A worker running 8 threads keeps 9 PostgreSQL connections open: with the pool's old fixed 5,
    every notification past the fifth at a time opened a connection (a server process) and closed it."""
    import random
    import threading

    import sqlalchemy as sa

    from engine.storage import Database
    from engine.web import create_app
    from tests.conftest import fresh_postgres_url

    url = fresh_postgres_url()
    Database.open(url, auto_migrate=True).close()  # `ivr db upgrade`
    settings = Settings.from_env({**GOOD, "IVR_FLOWS": str(ROOT / "flows"), "DATABASE_URL": url,
                                  "IVR_THREADS": "8", "IVR_RECOVERY_INTERVAL": "0"})
    db = create_app(settings).extensions["ivr"].db
    opened = []
    sa.event.listen(db.engine, "connect", lambda *_: opened.append(1))
    start = threading.Barrier(8)
    failures = []

    def thread(seed: int) -> None:
        rnd = random.Random(seed)  # noqa: S311 - pauses, not secrets
        try:
            start.wait()
            for _ in range(40):
                with db.transaction() as tx:
                    tx.get_call("nobody")
                threading.Event().wait(rnd.random() / 500)  # as a notification waits on the provider
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not failures
        assert len(opened) <= 8, f"{len(opened)} connections opened"  # one per thread, none closed and reopened
        assert db.engine.pool.size() == 9
    finally:
        db.close()


@pytest.mark.parametrize("hops", ["6", "-1", "one"])
def test_settings_reject_a_proxy_count_out_of_range(hops):
    with pytest.raises(ConfigError, match=r"IVR_PROXY_HOPS must be the number of proxies in front, 0-5 \(got "):
        Settings.from_env({**GOOD, "IVR_FLOWS": str(ROOT / "flows"), "IVR_PROXY_HOPS": hops})
    assert Settings.from_env({**GOOD, "IVR_FLOWS": str(ROOT / "flows"), "IVR_PROXY_HOPS": "1"}).proxy_hops == 1
