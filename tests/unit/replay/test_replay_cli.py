"""``ivr replay`` and ``ivr export`` from the command line: output and exit status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.replay import Replayer, load_case

ROOT = Path(__file__).resolve().parents[3]
FLOWS = ROOT / "flows"
CASES = ROOT / "tests" / "replays"
SALES = CASES / "auto_attendant" / "sales_answered.yaml"


def ivr(*args: str):
    return CliRunner().invoke(main, [*args], catch_exceptions=False)


@pytest.fixture
def case_copy(tmp_path) -> Path:
    target = tmp_path / "sales.yaml"
    shutil.copy(SALES, target)
    return target


def test_passing_case_exits_0(case_copy):
    result = ivr("replay", str(case_copy), "--flows", str(FLOWS))
    assert result.exit_code == 0, result.output
    assert f"PASS {case_copy} (4 steps, transferred)" in result.output
    assert result.output.rstrip().endswith("1 case: 1 pass")


def test_mismatch_exits_1_with_a_diff_and_update_fixes_it(case_copy):
    case_copy.write_text(case_copy.read_text().replace("ring_time: '25'", "ring_time: '30'"))
    result = ivr("replay", str(case_copy), "--flows", str(FLOWS))
    assert result.exit_code == 1
    assert f"FAIL {case_copy}" in result.output
    assert "-      ring_time: '30'" in result.output and "+      ring_time: '25'" in result.output

    result = ivr("replay", str(case_copy), "--flows", str(FLOWS), "--update")
    assert result.exit_code == 0 and f"UPDATED {case_copy}" in result.output
    assert case_copy.read_text() == SALES.read_text()  # rewritten in place, comments and all
    assert ivr("replay", str(case_copy), "--flows", str(FLOWS)).exit_code == 0


def test_flow_option_replays_against_a_changed_flow(case_copy, tmp_path):
    changed = tmp_path / "auto_attendant.yaml"
    changed.write_text((FLOWS / "auto_attendant.yaml").read_text().replace("Connecting you to sales.",
                                                                           "Connecting you to our sales team."))
    result = ivr("replay", str(case_copy), "--flows", str(FLOWS), "--flow", str(changed))
    assert result.exit_code == 1
    assert f"replaying against {changed} in place of flow 'auto_attendant'" in result.output
    assert "+      msg: <speech language=\"en-US\" gender=\"female\">Connecting you to our sales team.</speech>" \
        in result.output
    # a file named differently stands in for the only flow the cases use
    other = tmp_path / "draft.yaml"
    shutil.copy(FLOWS / "auto_attendant.yaml", other)
    assert ivr("replay", str(case_copy), "--flows", str(FLOWS), "--flow", str(other)).exit_code == 0


def test_broken_flow_file_and_unreadable_case(case_copy, tmp_path):
    broken = tmp_path / "auto_attendant.yaml"
    broken.write_text("start: nowhere\nnodes: {}\n")
    result = ivr("replay", str(case_copy), "--flows", str(FLOWS), "--flow", str(broken))
    assert result.exit_code == 1 and "--flow" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: auto_attendant\nnow: 2026-01-01\nsteps:\n  - notify: {digits: 5}\n")
    result = ivr("replay", str(bad), str(case_copy), "--flows", str(FLOWS))
    assert result.exit_code == 1
    assert f"ERROR {bad}" in result.output and f"{bad}:4: step 1: digits must be text" in result.output
    assert "1 pass, 1 error" in result.output


def test_usage_errors_exit_2(tmp_path):
    assert ivr("replay", str(SALES), "--flows", str(tmp_path / "missing")).exit_code == 2
    assert ivr("replay", str(tmp_path), "--flows", str(FLOWS)).exit_code == 2  # no case files in it
    assert ivr("replay").exit_code == 2


def test_coverage_gate_and_json(case_copy):
    result = ivr("replay", str(case_copy), "--flows", str(FLOWS), "--coverage")
    assert result.exit_code == 1  # one call cannot exercise every exit of every example flow
    assert "auto_attendant (" in result.output and "MISSING" in result.output
    assert "coverage: not every node and exit exercised in auto_attendant" in result.output

    result = ivr("replay", str(case_copy), "--flows", str(FLOWS), "--coverage", "--format", "json")
    data = json.loads(result.output)
    assert result.exit_code == 1 and data["ok"] is False and data["coverage_complete"] is False
    assert data["summary"]["pass"] == 1
    table = data["coverage"]["auto_attendant"]
    assert table["exits"]["exercised"] == 2 and ["main_menu", "key 1"] not in table["exits"]["missing"]
    assert {"node": "main_menu", "type": "menu", "exit": "key 1", "target": "sales", "times": 1} in table["table"]
    assert data["cases"][0]["steps"][2]["actual"][0]["params"]["dest"] == "+6531580001"


def test_full_suite_coverage_exits_0():
    result = ivr("replay", str(CASES), "--flows", str(FLOWS), "--coverage", "--format", "json")
    data = json.loads(result.output)
    assert result.exit_code == 0, [c["case"] for c in data["cases"] if not c["passed"]]
    assert data["coverage_complete"] is True
    assert set(data["coverage"]) == {p.stem for p in FLOWS.glob("*.yaml")}


def test_export_command(tmp_path):
    with Replayer(FLOWS) as replayer:
        app = replayer.open_app()
        try:
            app.play(load_case(SALES))
            url = str(app.db.url)
            result = ivr("export", "S1000", "--database-url", url)
            assert result.exit_code == 0, result.output
            assert "flow: auto_attendant" in result.output and "digits: '1'" in result.output
            out = tmp_path / "exported.yaml"
            assert ivr("export", "S1000", "--database-url", url, "-o", str(out)).exit_code == 0
            assert out.read_text() == result.output
            missing = ivr("export", "nope", "--database-url", url)
            assert missing.exit_code == 1 and "no call with session 'nope'" in missing.output
        finally:
            app.close()
    replayed = ivr("replay", str(out), "--flows", str(FLOWS))
    assert replayed.exit_code == 0, replayed.output
    nothing = ivr("export", "S1", "--database-url", f"sqlite:///{tmp_path / 'none.sqlite3'}")
    assert nothing.exit_code == 1 and "there is no database at" in nothing.output
    assert not (tmp_path / "none.sqlite3").exists()
