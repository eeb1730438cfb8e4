"""Start-up: bad configuration or an invalid flow stops the server with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError, Settings

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
