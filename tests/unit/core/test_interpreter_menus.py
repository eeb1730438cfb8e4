"""Menus and digit collection: options, no-input / invalid retries, counters, validation, secrets."""

from __future__ import annotations

import pytest

from tests.unit.core.builders import begin, collect, feed, golden, http, make_flow, menu, notify, play, retry, say


def main_menu(**kw):
    kw.setdefault("no_input", retry("timeout_msg", tries=3, text="Sorry, I did not hear you."))
    kw.setdefault("invalid", retry("invalid_msg", tries=2, text="That is not an option."))
    return make_flow(
        menu("main", {"1": "sales", "2": "support", "*": "main"}, text="Press 1 or 2.", **kw),
        play("sales"),
        play("support"),
        play("timeout_msg"),
        play("invalid_msg"),
    )


@pytest.mark.parametrize(("digits", "exit_name", "target"), [("1", "key 1", "sales"), ("2", "key 2", "support")])
def test_each_option_follows_its_key_exit(digits, exit_name, target):
    flow = main_menu()
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits=digits))
    assert s.trace == (("main", exit_name),)
    assert s.actions[0].node == target
    assert s.state.call["digits"] == digits


def test_no_input_repeats_with_retry_say_and_repeat_prompt():
    flow = main_menu(repeat_prompt=say("Again: press 1 or 2."))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits=""))
    assert s.trace == (("main", "retry no input"),)
    assert golden(s) == [
        (
            "gather",
            (
                ("msg", "Sorry, I did not hear you. Again: press 1 or 2."),
                ("max_digits", "1"),
                ("timeout", "5"),
                ("attempts", "1"),
            ),
        )
    ]
    assert s.state.no_input == 1 and s.state.invalid == 0


def test_retry_without_repeat_prompt_repeats_the_prompt():
    flow = main_menu()
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="9"))
    assert s.trace == (("main", "retry invalid"),)
    assert s.actions[0].param("msg") == "That is not an option. Press 1 or 2."


def test_no_input_after_tries_goes_to_then():
    flow = main_menu()
    s = begin(flow)
    for _ in range(2):
        s = feed(flow, s.state, notify(s.state))  # digits None: nothing pressed
        assert s.actions[0].node == "main"
    s = feed(flow, s.state, notify(s.state, digits=""))
    assert s.trace == (("main", "no input"),)
    assert s.actions[0].node == "timeout_msg"
    assert s.state.no_input == 0  # left the menu


def test_counters_are_separate():
    flow = main_menu()
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="9"))  # invalid 1
    s = feed(flow, s.state, notify(s.state, digits=""))  # no input 1
    s = feed(flow, s.state, notify(s.state, digits=""))  # no input 2
    assert (s.state.no_input, s.state.invalid) == (2, 1)
    s = feed(flow, s.state, notify(s.state, digits="7"))  # invalid 2 = tries
    assert s.trace == (("main", "invalid"),)
    assert s.actions[0].node == "invalid_msg"


def test_counters_kept_when_an_option_leads_back_to_the_same_menu():
    flow = main_menu()
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="9"))
    s = feed(flow, s.state, notify(s.state, digits="*"))
    assert s.trace == (("main", "key *"),)
    assert s.state.invalid == 1


def test_counters_reset_when_entered_from_another_node():
    flow = make_flow(
        menu("main", {"1": "info"}, invalid=retry("bye", tries=2)),
        play("info", next="main"),
    )
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="5"))
    assert s.state.invalid == 1
    s = feed(flow, s.state, notify(s.state, digits="1"))
    s = feed(flow, s.state, notify(s.state))  # info played, back to main
    assert s.actions[0].node == "main" and s.state.invalid == 0
    s = feed(flow, s.state, notify(s.state, digits="5"))
    assert s.trace == (("main", "retry invalid"),)


def test_tries_one_leaves_on_the_first_failure():
    flow = make_flow(menu("m", {"1": "bye"}, no_input=retry("gone", tries=1)), play("gone"))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits=""))
    assert s.trace == (("m", "no input"),)


def account_flow(**kw):
    kw.setdefault("invalid", retry("bad", tries=2, text="Invalid."))
    return make_flow(
        collect("acct", var="account", next="thanks", min_length=4, max_length=6, **kw),
        play("thanks", "Account {{ account }} noted."),
        play("bad"),
    )


def test_collect_stores_digits_and_goes_next():
    flow = account_flow()
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="12345"))
    assert s.state.vars["account"] == "12345"
    assert s.trace == (("acct", "next"),)
    assert s.actions[0].param("msg") == "Account 12345 noted."


@pytest.mark.parametrize("digits", ["123", "1234567"])
def test_collect_rejects_wrong_length(digits):
    flow = account_flow()
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits=digits))
    assert s.trace == (("acct", "retry invalid"),)
    assert "account" not in s.state.vars
    assert s.actions[0].param("msg") == "Invalid. Enter it."


def test_collect_pattern_must_match_fully():
    flow = account_flow(pattern=r"9\d+")
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="19999"))
    assert s.trace == (("acct", "retry invalid"),)
    s = feed(flow, s.state, notify(s.state, digits="99999"))
    assert s.trace == (("acct", "next"),)


def test_collect_invalid_after_tries_and_no_input():
    flow = account_flow(no_input=retry("bye", tries=1))
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="1"))
    s = feed(flow, s.state, notify(s.state, digits="2"))
    assert s.trace == (("acct", "invalid"),) and s.actions[0].node == "bad"
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits=""))
    assert s.trace == (("acct", "no input"),) and s.actions[0].node == "bye"


def test_sensitive_collect_masks_logs_and_hides_digits():
    flow = make_flow(
        collect("pin", var="pin", next="confirm", min_length=4, max_length=4, sensitive=True,
                invalid=retry("bye", tries=3)),
        play("confirm", "You entered {{ pin }}."),
    )
    s = begin(flow)
    bad = feed(flow, s.state, notify(s.state, digits="98765"))
    assert not any("98765" in line for line in bad.log)
    good = feed(flow, bad.state, notify(bad.state, digits="4321"))
    assert good.state.vars["pin"] == "4321"
    assert good.state.sensitive == frozenset({"pin"})
    assert good.state.call["digits"] == ""  # the built-in never carries a secret
    assert good.actions[0].param("msg") == "You entered 4321."  # the block itself must carry it
    assert good.log and not any("4321" in line for line in good.log)
    assert any("***" in line for line in good.log)


def test_masking_replaces_whole_values_only():
    flow = make_flow(
        collect("pin", var="pin", next="api", min_length=4, max_length=4, sensitive=True),
        http("api", url="https://api.example.com/check?pin={{ pin }}&line=+6561234567", next="bye", failed="bye"),
    )
    s = begin(flow)
    s = feed(flow, s.state, notify(s.state, digits="1234"))
    assert s.actions[0].url == "https://api.example.com/check?pin=1234&line=+6561234567"
    assert s.log[-1] == "api: GET https://api.example.com/check?pin=***&line=+6561234567 (step 2)"
