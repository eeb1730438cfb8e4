"""docs/tutorial.md runs as written: each command it shows is run (in a scratch folder laid out like the
repository) and must print exactly what the tutorial shows. The diagrams in the docs match the flows.

To refresh the tutorial after a change to the output, run its commands again and paste the results.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pexpect
import pytest
from click.testing import CliRunner

from engine.cli import main

ROOT = Path(__file__).resolve().parents[3]
TUTORIAL = ROOT / "docs" / "tutorial.md"
IVR = str(Path(sys.executable).parent / "ivr")
PORT = re.compile(r"127\.0\.0\.1:\d+")


def blocks(text: str, language: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)]


def same(actual: str, shown: str) -> None:
    """Equal but for the fake Hoiio's port (different on every run) and trailing spaces."""

    def norm(text: str) -> list[str]:
        return [line.rstrip() for line in PORT.sub("127.0.0.1:PORT", text).strip("\n").split("\n")]

    assert norm(actual) == norm(shown)


@pytest.fixture
def tutorial_dir(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IVR_FLOWS", raising=False)
    return tmp_path


def ivr(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_the_tutorial_as_written(tutorial_dir):
    doc = TUTORIAL.read_text()
    commands = "\n".join(blocks(doc, "sh"))
    listing, fix = blocks(doc, "yaml")[:2]
    check_error, check_ok, interactive, scripted = blocks(doc, "text")[:4]
    diagram = blocks(doc, "mermaid")[0]

    # 2. copy an example, 3. make it yours (the editor's work: the file becomes the listing)
    assert "mkdir -p my_flows\ncp flows/auto_attendant.yaml my_flows/bakery.yaml" in commands
    (tutorial_dir / "my_flows").mkdir()
    shutil.copy(tutorial_dir / "flows/auto_attendant.yaml", tutorial_dir / "my_flows/bakery.yaml")
    flow = tutorial_dir / "my_flows/bakery.yaml"
    flow.write_text(listing)

    # 4. check: the error, the fix, no error
    assert ".venv/bin/ivr check my_flows/bakery.yaml" in commands
    code, out = ivr("check", "my_flows/bakery.yaml")
    assert code == 1
    same(out, check_error)
    assert fix.strip() == '"2": cake_orders'
    flow.write_text(listing.replace('      "2": order\n', '      "2": cake_orders\n'))
    code, out = ivr("check", "my_flows/bakery.yaml")
    assert code == 0
    same(out, check_ok)

    # 5. try it: at a terminal, typing what the transcript shows ...
    assert ".venv/bin/ivr try my_flows/bakery.yaml\n" in commands
    typed = re.findall(r"^  (?:keys \(.*?\)|How does it end\?.*?)> (.*)$", interactive, re.MULTILINE)
    assert typed == ["1", "2", ""]
    env = dict(os.environ, NO_COLOR="1", TERM="xterm")
    child = pexpect.spawn(IVR, ["try", "my_flows/bakery.yaml"], cwd=str(tutorial_dir), env=env, encoding="utf-8",
                          timeout=20, dimensions=(50, 220))
    child.logfile_read = io.StringIO()  # the whole screen, typed keys included (the terminal echoes them)
    for answer in typed:
        child.expect(r"(keys \(.*?\)|How does it end\?.*?)> ")
        child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    same(child.logfile_read.getvalue().replace("\r\n", "\n"), interactive)

    # ... and with the keys given in advance
    assert ".venv/bin/ivr try my_flows/bakery.yaml --keys 2 --transfer busy" in commands
    code, out = ivr("try", "my_flows/bakery.yaml", "--keys", "2", "--transfer", "busy")
    assert code == 0
    same(out, scripted)

    # 6. draw it
    assert ".venv/bin/ivr graph my_flows/bakery.yaml\n" in commands
    code, out = ivr("graph", "my_flows/bakery.yaml")
    assert code == 0
    same(out, diagram)
    assert ".venv/bin/ivr graph my_flows/bakery.yaml -o bakery.svg" in commands
    code, out = ivr("graph", "my_flows/bakery.yaml", "-o", "bakery.svg")
    assert code == 0 and "<svg" in (tutorial_dir / "bakery.svg").read_text()

    # 7. next
    code, out = ivr("try", "small_business", "--at", "2026-12-25 10:00", "--keys", "")
    assert code == 0 and "check_hours → [holiday] → holiday_message" in out


def test_the_readme_commands_run(tutorial_dir):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Trying and drawing flows"):]
    section = section[: section.index("\n## ", 1)]
    commands = re.findall(r"^\.venv/bin/ivr ((?:try|graph) .*?)(?:\s+#.*)?$", section, re.MULTILINE)
    assert len(commands) >= 4
    for command in commands:
        args = shlex.split(command)
        # without --keys the caller is asked at the terminal; here standard input is empty: a hang-up
        result = CliRunner().invoke(main, args, input="", catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)
        assert ("Outcome:" in result.output) if args[0] == "try" else ("flowchart TD" in result.output)


def test_docs_show_the_current_diagram_of_auto_attendant():
    code, mermaid = ivr("graph", str(ROOT / "flows/auto_attendant.yaml"))
    assert code == 0
    flows_doc = (ROOT / "docs/flows.md").read_text()
    assert mermaid.strip() in [block.strip() for block in blocks(flows_doc, "mermaid")], (
        "docs/flows.md shows an old diagram: paste the output of `ivr graph flows/auto_attendant.yaml`")
    svg = (ROOT / "docs/img/auto_attendant.svg").read_text()
    for node in ("welcome", "main_menu", "sales", "support", "accounts", "nobody_free", "voicemail", "goodbye",
                 "technical_problem"):
        assert f">{node}<" in svg, ("docs/img/auto_attendant.svg is out of date: run "
                                    "`ivr graph flows/auto_attendant.yaml -o docs/img/auto_attendant.svg`")
    assert "docs/img/auto_attendant.svg" in (ROOT / "README.md").read_text()
