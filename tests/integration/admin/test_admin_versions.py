"""The semantic diff between two versions of a flow (``engine.authoring.versions``)."""

from __future__ import annotations

import pytest

from engine.authoring.versions import VersionError, diff_sources, find_version

OLD = """\
description: Reception
numbers: ["+6560000001"]
start: welcome
on_error: bye
vars:
  company: Acme
nodes:
  welcome:
    type: play
    say: "Welcome to {{ company }}."
    next: menu
  menu:
    type: menu
    say: "Press 1 for sales, 2 for support, 3 for billing."
    options:
      "1": sales
      "2": support
      "3": sales
    no_input: {tries: 2, then: bye}
    invalid: {say: "Sorry.", then: bye}
  sales:
    type: transfer
    to: "+6561111111"
    ring_time: 20
  support:
    type: play
    say: "Support is closed."
    next: bye
  bye:
    type: hangup
    say: "Goodbye."
"""


def change(old: str = OLD, new: str = OLD) -> list[str]:
    return [c.text for c in diff_sources(old, new, "reception")]


def test_same_behaviour_is_no_change():
    relaid = OLD.replace('    no_input: {tries: 2, then: bye}\n', '    no_input:\n      tries: 2\n      then: bye\n')
    assert change(new=relaid + "# a comment\n") == []


def test_key_retargeted_and_prompt_changed():
    new = OLD.replace('"3": sales', '"3": billing').replace("Welcome to {{ company }}.", "Hello!")
    new += "  billing:\n    type: play\n    say: \"Billing.\"\n    next: bye\n"
    assert change(new=new) == [
        'the welcome prompt changed from "Welcome to {{ company }}." to "Hello!"',
        "menu: key 3 now goes to billing (was sales)",
        "node billing added (play, next to bye)",
    ]


def test_node_removed_and_option_removed():
    new = OLD.replace('      "2": support\n', "").replace(
        '  support:\n    type: play\n    say: "Support is closed."\n    next: bye\n', "")
    assert change(new=new) == ["menu: key 2 removed (went to support)", "node support removed (was a play)"]


def test_option_added_and_exit_retargeted():
    new = OLD.replace('"3": sales', '"3": sales\n      "9": bye').replace(
        "    say: \"Support is closed.\"\n    next: bye", "    say: \"Support is closed.\"\n    next: welcome")
    assert change(new=new) == ["menu: key 9 added, goes to bye", "support: exit 'next' now goes to welcome (was bye)"]


def test_retry_and_settings_and_flow_wide_changes():
    new = (OLD.replace("tries: 2, then: bye", "tries: 3, then: support")
           .replace('invalid: {say: "Sorry.", then: bye}', 'invalid: {say: "That is not an option.", then: bye}')
           .replace("ring_time: 20", "ring_time: 30")
           .replace('to: "+6561111111"', 'to: "+6562222222"')
           .replace('numbers: ["+6560000001"]', 'numbers: ["+6560000002"]')
           .replace("company: Acme", "company: Acme Corp")
           .replace("start: welcome", "start: menu"))
    assert change(new=new) == [
        "calls now start at menu (was welcome)",
        "number +6560000002 now runs this flow",
        "number +6560000001 no longer runs this flow",
        'variable company now starts as "Acme Corp" (was "Acme")',
        "menu: no input now goes to support (was bye)",
        "menu: no-input tries changed from 2 to 3",
        'the menu invalid-input message changed from "Sorry." to "That is not an option."',
        'sales: destination changed from "+6561111111" to "+6562222222"',
        "sales: ring time changed from 20 to 30",
    ]


def test_node_type_changed_and_prompt_added():
    new = OLD.replace('  support:\n    type: play\n    say: "Support is closed."\n    next: bye\n',
                      '  support:\n    type: goto\n    to: bye\n').replace(
        '  bye:\n    type: hangup\n    say: "Goodbye."\n', '  bye:\n    type: hangup\n')
    assert change(new=new) == [
        "node support is now a goto (was a play)",
        'the bye prompt was removed (was "Goodbye.")',
    ]


def test_long_prompts_are_shortened():
    long_text = "Thank you for calling. " * 10
    new = OLD.replace("Welcome to {{ company }}.", long_text.strip())
    [text] = change(new=new)
    assert text.startswith('the welcome prompt changed from "Welcome to {{ company }}." to "Thank you for calling.')
    assert text.endswith('…"') and len(text) < 200


def test_a_version_that_does_not_compile():
    with pytest.raises(VersionError, match="flow 'reception' does not compile"):
        diff_sources(OLD, "start: nowhere\nnodes: {}\n", "reception")


def test_find_version():
    entries = [{"version": "abc123def456"}, {"version": "abd999000111"}, {"version": "ffff00001111"}]
    assert find_version(entries, "latest") is entries[0]
    assert find_version(entries, "previous") is entries[1]
    assert find_version(entries, "ff") is entries[2]
    assert find_version(entries, "abc123def456") is entries[0]
    with pytest.raises(VersionError, match="names 2 versions"):
        find_version(entries, "ab")
    with pytest.raises(VersionError, match="no stored version '0000'"):
        find_version(entries, "0000")
    with pytest.raises(VersionError, match="no previous version"):
        find_version(entries[:1], "previous")


HOURS = """\
start: check
nodes:
  check:
    type: hours
    timezone: Asia/Singapore
    weekly:
      mon-fri: "09:00-18:00"
      sat: "09:00-12:00"
    holidays: ["2026-12-25"]
    open: hello
    closed: hello
  hello:
    type: hangup
    say: "Hello."
"""


def test_opening_hours_and_holidays():
    new = (HOURS.replace('mon-fri: "09:00-18:00"', 'mon-fri: "08:30-18:00"')
           .replace('sat: "09:00-12:00"', 'sun: "10:00-12:00"')
           .replace('["2026-12-25"]', '["2026-12-26"]'))
    assert change(HOURS, new) == [
        "check: hours on Monday-Friday changed from 09:00-18:00 to 08:30-18:00",
        "check: hours on Saturday changed from 09:00-12:00 to closed",
        "check: hours on Sunday changed from closed to 10:00-12:00",
        "check: holiday 2026-12-26 added",
        "check: holiday 2026-12-25 removed",
    ]
