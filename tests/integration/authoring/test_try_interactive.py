"""``ivr try`` at a terminal (pexpect): what the screen shows, key presses, the transfer question,
hanging up with Ctrl-C or h, and the summary."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[3]
IVR = str(Path(sys.executable).parent / "ivr")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.skipif(not Path(IVR).exists(), reason="the ivr command is not installed in this venv")


def spawn(*args: str, color: bool = False) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm"
    if not color:
        env["NO_COLOR"] = "1"
    # Ctrl-C reaches ``ivr try`` as at a terminal even when this test run ignores SIGINT (a shell
    # starts background jobs so, and the child would inherit it)
    child = pexpect.spawn(IVR, ["try", *args], cwd=str(ROOT), env=env, encoding="utf-8", timeout=20,
                          dimensions=(50, 220), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return child


def finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before


def test_walk_the_auto_attendant_by_key_presses():
    child = spawn("flows/auto_attendant.yaml")
    child.expect_exact("Call from +6591234567 to +6531580000 (Ctrl-C or h hangs up)")
    child.expect_exact("welcome (play)")
    child.expect_exact('"Thank you for calling Acme."  en-US female')
    child.expect_exact("main_menu (menu)")
    child.expect_exact('"For sales, press 1. For support, press 2. For accounts, press 3. To leave a message, '
                       'press 0."')
    child.expect_exact("Choices: 1 sales · 2 support · 3 accounts · 0 voicemail")
    child.expect_exact("keys (Enter alone = no input, h = hang up)> ")
    child.sendline("5")  # not an option
    child.expect_exact("main_menu: '5' is not an option")
    child.expect_exact('"Sorry, that is not one of the options."')
    child.expect_exact('"Press 1 for sales, 2 for support, 3 for accounts, or 0 to leave a message."')
    child.expect_exact("keys (Enter alone = no input, h = hang up)> ")
    child.sendline("")  # silence
    child.expect_exact("(no input: the caller says nothing for 6 s)")
    child.expect_exact('"Sorry, I didn\'t hear anything."')
    child.expect_exact("keys (Enter alone = no input, h = hang up)> ")
    child.sendline("1")
    child.expect_exact("sales (transfer to +6531580001)")
    child.expect_exact('"Connecting you to sales."')
    child.expect_exact("Ringing +6531580001 for up to 25 s.")
    child.expect_exact("How does it end? [a]nswered, [b]usy, [n]o answer, [f]ailed, h = hang up (Enter = answered)> ")
    child.sendline("b")
    child.expect_exact("Busy: the transfer fails")
    child.expect_exact('"Sorry, everyone in that team is busy right now."')
    child.expect_exact("Recording the caller (up to 120 s)")
    child.expect_exact('"Thank you. We will call you back as soon as we can. Goodbye."')
    child.expect_exact("The flow hangs up")
    child.expect_exact("─── Summary ───")
    rest = finish(child)
    assert ("Path:      welcome → [next] → main_menu → [retry invalid] → main_menu → [retry no input] → main_menu → "
            "[key 1] → sales → [failed] → nobody_free → [next] → voicemail → [next] → goodbye") in rest
    assert "Visited:   welcome, main_menu, sales, nobody_free, voicemail, goodbye  (6 of 9 nodes)" in rest
    assert "Variables: company = Acme" in rest and "voicemail_url = http://" in rest
    assert "transfer_status busy" in rest
    assert "Outcome:   hung up by flow" in rest


def test_ctrl_c_at_the_menu_hangs_up():
    child = spawn("auto_attendant", "--caller", "+6588887777")
    child.expect_exact("Call from +6588887777")
    child.expect_exact("keys (Enter alone = no input, h = hang up)> ")
    child.sendintr()
    child.expect_exact("Ctrl-C: the caller hangs up")
    rest = finish(child)
    assert "Path:      welcome → [next] → main_menu → [hang-up]" in rest
    assert "Outcome:   caller hung up" in rest
    assert "Traceback" not in rest


def test_h_at_the_transfer_question_hangs_up_while_it_rings():
    child = spawn("auto_attendant")
    child.expect_exact("keys (")
    child.sendline("3")
    child.expect_exact("How does it end?")
    child.sendline("h")
    child.expect_exact("The caller hangs up")
    rest = finish(child)
    assert "Path:      welcome → [next] → main_menu → [key 3] → accounts" in rest
    assert "Outcome:   caller hung up" in rest


def test_colours_on_a_terminal_and_a_typo_is_asked_again():
    child = spawn("conference_incoming", color=True)
    child.expect_exact("keys (")
    child.sendline("2")
    child.expect_exact("How does it end?")
    child.sendline("maybe")
    child.expect_exact("Answer a, b, n or f (or h to hang up)")
    child.sendline("")  # Enter: answered
    child.expect_exact("Answered: the caller is connected")
    rest = ANSI.sub("", finish(child))
    assert "Path:      welcome → [key 2] → team_room" in rest
    assert "Outcome:   transferred" in rest
    assert "\x1b[" in child.before  # the terminal got colours
