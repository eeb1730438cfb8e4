"""``ivr versions FLOW [--diff OLD NEW] [--database-url URL]``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from engine.cli import main
from engine.flowfile.api import flow_version
from engine.storage import Database
from tests.integration.conftest import FLOWS

V1 = (FLOWS / "everything.yaml").read_text()
V2 = V1.replace('"3": voicemail', '"3": account').replace("Welcome to {{ company }}.", "Hi from {{ company }}.")
V3 = V2 + "\n# only a comment\n"


def stored(tmp_path, sources=(V1, V2, V3)) -> tuple[str, list[str]]:
    url = f"sqlite:///{tmp_path / 'v.sqlite3'}"
    clock = {"now": datetime(2026, 11, 1, 9, 0, tzinfo=UTC)}
    db = Database.open(url, clock=lambda: clock["now"])
    versions = []
    try:
        for source in sources:
            version = flow_version(source.encode())
            db.record_flow_version("everything", version, source)
            versions.append(version)
            clock["now"] += timedelta(days=1)
    finally:
        db.close()
    return url, versions


def run(*args: str):
    return CliRunner().invoke(main, ["versions", *args])


def test_lists_versions_newest_first_with_change_counts(tmp_path):
    url, (v1, v2, v3) = stored(tmp_path)
    result = run("everything", "--database-url", url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Versions of flow everything, newest first:"
    assert lines[1].split()[0] == v3 and "latest" in lines[1] and f"same behaviour as {v2}" in lines[1]
    assert lines[2].split()[0] == v2 and f"2 change(s) since {v1}" in lines[2]
    assert lines[3].split()[0] == v1 and "2026-11-01 09:00:00 UTC" in lines[3]
    assert lines[-1] == f"Compare two: ivr versions everything --diff {v2} {v3}"


def test_diff_in_words(tmp_path):
    url, (v1, v2, _v3) = stored(tmp_path)
    result = run("everything", "--diff", v1[:7], v2, "--database-url", url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"Flow everything: {v1} (2026-11-01 09:00:00 UTC) -> {v2} (2026-11-02 09:00:00 UTC)",
        '  - the welcome prompt changed from "Welcome to {{ company }}." to "Hi from {{ company }}."',
        "  - menu: key 3 now goes to account (was voicemail)",
    ]
    same = run("everything", "--diff", "previous", "latest", "--database-url", url)
    assert same.exit_code == 0 and "no change in behaviour" in same.output


def test_database_url_from_the_environment(tmp_path, monkeypatch):
    url, (v1, v2, _v3) = stored(tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    result = run("everything.yaml", "--diff", v2, v1)
    assert result.exit_code == 0, result.output
    assert "menu: key 3 now goes to voicemail (was account)" in result.output


def test_errors_are_one_line(tmp_path):
    url, (v1, _v2, _v3) = stored(tmp_path)
    unknown_flow = run("nope", "--database-url", url)
    assert unknown_flow.exit_code == 1 and "no stored versions of flow 'nope'" in unknown_flow.output
    unknown_version = run("everything", "--diff", "0000", v1, "--database-url", url)
    assert unknown_version.exit_code == 1 and "no stored version '0000'" in unknown_version.output
    no_db = run("everything", "--database-url", f"sqlite:///{tmp_path / 'missing.sqlite3'}")
    assert no_db.exit_code == 1 and "there is no database at" in no_db.output
    assert "Traceback" not in unknown_flow.output + unknown_version.output + no_db.output


def test_registered_in_ivr_help():
    result = CliRunner().invoke(main, ["--help"])
    assert "versions" in result.output
    help_text = CliRunner().invoke(main, ["versions", "--help"]).output
    assert "--diff OLD NEW" in help_text and "--database-url URL" in help_text
