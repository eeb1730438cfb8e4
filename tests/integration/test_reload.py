"""Flow changes without restarts: ``ivr reload`` / SIGHUP, bad flows never replace good ones, and calls
in progress finish on the version they started with."""

from __future__ import annotations

import os
import shutil
import signal
import time

from click.testing import CliRunner

from engine.cli import main
from tests.integration.conftest import FLOWS, make_app


def _copy_flows(tmp_path):
    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder)
    return folder


def _touch_reload(folder):
    result = CliRunner().invoke(main, ["reload", "--flows", str(folder)])
    # give the stamp a distinct mtime even on coarse filesystems
    later = time.time() + 5
    os.utime(folder / ".reload", (later, later))
    return result


def test_reload_swaps_in_a_good_change_and_keeps_calls_on_their_version(tmp_path):
    folder = _copy_flows(tmp_path)
    h = make_app(f"sqlite:///{tmp_path / 'r.sqlite3'}", flows_dir=folder)
    try:
        h.answer("V1")  # starts on the original version
        original = h.db.get_call("V1").flow_version
        path = folder / "everything.yaml"
        path.write_text(path.read_text().replace("Welcome to {{ company }}.", "Hello from {{ company }}."))
        result = _touch_reload(folder)
        assert result.exit_code == 0, result.output
        h.client.get("/healthz")  # any request lets the worker notice the stamp
        h.answer("V2")
        assert h.hoiio.last()[1]["msg"] == "Hello from Acme."
        assert h.db.get_call("V2").flow_version != original
        # the call in progress continues on the version it started with
        h.reply("V1", "play")
        assert h.hoiio.last()[1]["msg"].startswith("Press 1 for your account")
        assert h.db.get_call("V1").flow_version == original
        metrics = h.client.get("/metrics").get_data(as_text=True)
        assert 'ivr_flow_reloads_total{result="ok"}' in metrics
    finally:
        h.db.dispose()


def test_a_broken_flow_never_replaces_the_running_version(tmp_path):
    folder = _copy_flows(tmp_path)
    h = make_app(f"sqlite:///{tmp_path / 'r.sqlite3'}", flows_dir=folder)
    try:
        path = folder / "everything.yaml"
        path.write_text(path.read_text().replace("next: menu", "next: menuu"))
        result = _touch_reload(folder)
        assert result.exit_code == 1 and "menuu" in result.output
        h.client.get("/healthz")
        h.answer("B1")
        assert h.hoiio.last()[1]["msg"] == "Welcome to Acme."  # still the good version
        ready = h.client.get("/readyz").get_json()
        assert any("menuu" in e for e in ready["checks"]["flow_errors"])
        assert 'ivr_flow_reloads_total{result="failed"}' in h.client.get("/metrics").get_data(as_text=True)
    finally:
        h.db.dispose()


def test_sighup_reloads(tmp_path):
    folder = _copy_flows(tmp_path)
    h = make_app(f"sqlite:///{tmp_path / 'r.sqlite3'}", flows_dir=folder)
    try:
        path = folder / "direct.yaml"
        path.write_text(path.read_text().replace("Hello {{ caller }}.", "Hi {{ caller }}."))
        os.kill(os.getpid(), signal.SIGHUP)
        h.answer("H1", path="/hoiio/answer/direct")
        assert h.hoiio.last()[1]["msg"] == "Hi +6591234567."
    finally:
        h.db.dispose()


def test_restart_after_a_bad_edit_serves_the_last_good_version(tmp_path):
    folder = _copy_flows(tmp_path)
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    first = make_app(url, flows_dir=folder)  # records the good versions
    first.db.dispose()
    path = folder / "everything.yaml"
    path.write_text(path.read_text().replace("next: menu", "next: menuu"))
    again = make_app(url, flows_dir=folder)  # must not refuse to start: a good version is stored
    try:
        again.answer("G1")
        assert again.hoiio.last()[1]["msg"] == "Welcome to Acme."
        assert again.client.get("/readyz").get_json()["checks"]["flow_errors"]
    finally:
        again.db.dispose()
