"""``ivr check``: exit codes, text and JSON output, the default folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.cli.check import command

ROOT = Path(__file__).resolve().parents[3]
GOOD = "start: a\nnodes:\n  a: {type: hangup}\n"
WARNS = "start: a\nnodes:\n  a: {type: hangup}\n  b: {type: hangup}\n"
BAD = "start: a\nnodes:\n  a: {type: play, say: hi, next: nowhere}\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "warns.yaml").write_text(WARNS, encoding="utf-8")
    return tmp_path


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["check", *args], env=env, catch_exceptions=False)


def test_the_command_is_registered_as_check() -> None:
    assert main.commands["check"] is command


def test_clean_and_warning_only_flows_exit_zero(folder: Path) -> None:
    result = run(str(folder))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{folder}/warns.yaml:4:3: warning: hangup 'b' can never be reached: nothing leads to it from the start or "
        "from on_error; remove it or send a call to it",
        "2 flows checked: 0 errors, 1 warning",
    ]


def test_errors_exit_one_with_one_line_each_and_a_summary(folder: Path) -> None:
    (folder / "bad.yaml").write_text(BAD, encoding="utf-8")
    result = run(str(folder / "bad.yaml"), str(folder / "good.yaml"), str(folder / "warns.yaml"))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == (f"{folder}/bad.yaml:3:34: error: play 'a' goes next to 'nowhere', which does not exist")
    assert lines[1].startswith(f"{folder}/warns.yaml:4:3: warning: ")
    assert lines[-1] == "3 flows checked: 1 error, 1 warning"
    assert len(lines) == 3


def test_json_output_is_a_list_of_findings(folder: Path) -> None:
    (folder / "bad.yaml").write_text(BAD, encoding="utf-8")
    result = run("--format", "json", str(folder))
    assert result.exit_code == 1
    findings = json.loads(result.output)
    assert findings == [
        {"file": f"{folder}/bad.yaml", "line": 3, "col": 34, "severity": "error",
         "message": "play 'a' goes next to 'nowhere', which does not exist", "node": "a", "code": "missing-target"},
        {"file": f"{folder}/warns.yaml", "line": 4, "col": 3, "severity": "warning",
         "message": "hangup 'b' can never be reached: nothing leads to it from the start or from on_error; remove "
                    "it or send a call to it", "node": "b", "code": "unreachable"},
    ]


def test_json_output_of_clean_flows_is_an_empty_list(folder: Path) -> None:
    result = run("--format", "json", str(folder / "good.yaml"))
    assert result.exit_code == 0
    assert json.loads(result.output) == []


def test_without_a_path_the_folder_in_ivr_flows_is_checked(folder: Path) -> None:
    (folder / "bad.yaml").write_text(BAD, encoding="utf-8")
    result = run(env={"IVR_FLOWS": str(folder)})
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "3 flows checked: 1 error, 1 warning"


def test_without_a_path_or_ivr_flows_the_flows_folder_is_checked(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    monkeypatch.chdir(tmp_path)
    result = run(env={"IVR_FLOWS": ""})
    assert result.exit_code == 0
    count = len(list((ROOT / "flows").glob("*.yaml")))
    assert result.output.splitlines() == [f"{count} flows checked: 0 errors, 0 warnings"]


def test_a_missing_file_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    result = run(missing)
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"{missing}: error: no such file", "0 flows checked: 1 error, 0 warnings"]


def test_every_bad_flow_gives_findings_and_never_a_traceback() -> None:
    result = run(str(ROOT / "tests" / "flows_bad"))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert all(": error: " in line or ": warning: " in line for line in lines[:-1])
    assert lines[-1].startswith(f"{len(list((ROOT / 'tests' / 'flows_bad').glob('*.yaml')))} flows checked: ")


def test_an_unknown_format_is_refused() -> None:
    result = CliRunner().invoke(main, ["check", "--format", "xml"])
    assert result.exit_code == 2
    assert "Invalid value for '--format'" in result.output
