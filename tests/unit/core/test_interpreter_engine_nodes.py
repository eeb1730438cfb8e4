"""Engine nodes: set, branch, goto, hours, http, conference."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.unit.core.builders import (
    begin,
    branch,
    conference,
    feed,
    goto,
    hours,
    http,
    http_result,
    make_flow,
    play,
    set_,
    side_result,
)


def test_set_renders_in_order_and_later_values_see_earlier_ones():
    flow = make_flow(
        set_("s", next="say", first="{{ caller }}", second="{{ first }}!"),
        play("say", "{{ second }}"),
    )
    s = begin(flow)
    assert s.state.vars == {"first": "+6591234567", "second": "+6591234567!"}
    assert s.trace == (("s", "next"),)
    assert s.actions[0].param("msg") == "+6591234567!"


def test_flow_vars_and_inputs():
    flow = make_flow(play("hi", "{{ greeting }} {{ company }}"), vars={"company": "Acme", "greeting": "Hi {{ name }}"})
    s = begin(flow, vars={"name": "Tan", "company": "Override"})
    assert s.state.vars == {"company": "Override", "greeting": "Hi Tan", "name": "Tan"}
    assert s.actions[0].param("msg") == "Hi Tan Override"


@pytest.mark.parametrize(
    ("balance", "exit_name", "target"),
    [(500, "case 1", "rich"), (50, "case 2", "ok"), (-1, "otherwise", "poor")],
)
def test_branch_first_true_case_wins(balance, exit_name, target):
    flow = make_flow(
        branch("b", [("balance > 100", "rich"), ("balance >= 0", "ok")], otherwise="poor"),
        play("rich"),
        play("ok"),
        play("poor"),
    )
    s = begin(flow, vars={"balance": balance})
    assert s.trace == (("b", exit_name),)
    assert s.actions[0].node == target


def test_goto_follows_next():
    flow = make_flow(goto("g", "hi"), play("hi"))
    s = begin(flow)
    assert s.trace == (("g", "next"),) and s.actions[0].node == "hi"


OFFICE = {0: [("09:00", "18:00")], 1: [("09:00", "18:00")], 2: [("09:00", "12:00"), ("14:00", "18:00")],
          3: [("09:00", "18:00")], 4: [("09:00", "18:00")], 5: [("10:00", "24:00")]}


def hours_flow(**kw):
    return make_flow(hours("h", OFFICE, **kw), play("open_msg"), play("closed_msg"), play("holiday_msg"))


@pytest.mark.parametrize(
    ("utc", "timezone", "expected"),
    [
        (datetime(2026, 3, 4, 2, 0, tzinfo=UTC), "Asia/Singapore", "open"),  # Wed 10:00 SGT
        (datetime(2026, 3, 4, 4, 30, tzinfo=UTC), "Asia/Singapore", "closed"),  # Wed 12:30 lunch
        (datetime(2026, 3, 4, 6, 0, tzinfo=UTC), "Asia/Singapore", "open"),  # Wed 14:00 start inclusive
        (datetime(2026, 3, 4, 10, 0, tzinfo=UTC), "Asia/Singapore", "closed"),  # Wed 18:00 end exclusive
        (datetime(2026, 3, 4, 2, 0, tzinfo=UTC), "America/New_York", "closed"),  # Tue 21:00 EST
        (datetime(2026, 3, 3, 14, 0, tzinfo=UTC), "America/New_York", "open"),  # Tue 09:00 EST
        (datetime(2026, 7, 7, 13, 0, tzinfo=UTC), "America/New_York", "open"),  # Tue 09:00 EDT
        (datetime(2026, 7, 7, 12, 59, tzinfo=UTC), "America/New_York", "closed"),  # Tue 08:59 EDT
        (datetime(2026, 3, 7, 15, 59, 59, tzinfo=UTC), "Asia/Singapore", "open"),  # Sat 23:59:59, open to 24:00
        (datetime(2026, 3, 7, 16, 0, tzinfo=UTC), "Asia/Singapore", "closed"),  # Sunday: no hours
    ],
)
def test_hours_in_time_zones(utc, timezone, expected):
    flow = hours_flow(timezone=timezone)
    s = begin(flow, now=utc)
    assert s.trace == (("h", expected),)


def test_holiday_uses_local_date_and_holiday_exit():
    # 2026-12-24 20:00 UTC is already 25 December in Singapore.
    now = datetime(2026, 12, 24, 20, 0, tzinfo=UTC)
    with_exit = hours_flow(holidays=("2026-12-25",), holiday="holiday_msg")
    assert begin(with_exit, now=now).trace == (("h", "holiday"),)
    without_exit = hours_flow(holidays=("2026-12-25",))
    assert begin(without_exit, now=now).trace == (("h", "closed"),)
    in_new_york = hours_flow(holidays=("2026-12-25",), holiday="holiday_msg", timezone="America/New_York")
    assert begin(in_new_york, now=now).trace == (("h", "open"),)  # Thu 15:00 on the 24th


def test_unknown_timezone_is_a_runtime_error():
    s = begin(hours_flow(timezone="Mars/Olympus"))
    assert s.trace == (("h", "error"),)
    assert s.outcome == "error handled"


def test_http_success_saves_dotted_paths():
    flow = make_flow(
        http("api", save={"time": "booking.time", "first": "items.0.id"}, next="say", failed="oops"),
        play("say", "At {{ time }} ({{ first }})"),
        play("oops"),
    )
    s = begin(flow)
    s = feed(flow, s.state, http_result(s.state, 200, {"booking": {"time": "10am"}, "items": [{"id": 7}]}))
    assert s.state.vars["time"] == "10am" and s.state.vars["first"] == 7
    assert s.trace == (("api", "next"),)
    assert s.actions[0].param("msg") == "At 10am (7)"


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, {"booking": {"time": "x"}}), (None, None), (404, None), (200, {"booking": {}}), (200, None), (301, {})],
)
def test_http_failures_follow_failed(status, body):
    flow = make_flow(http("api", save={"time": "booking.time"}, next="bye", failed="oops"), play("oops"))
    s = begin(flow)
    s = feed(flow, s.state, http_result(s.state, status, body, error="timed out" if status is None else None))
    assert s.trace == (("api", "failed"),)
    assert "time" not in s.state.vars


def test_http_2xx_without_save_needs_no_body():
    flow = make_flow(http("api", next="bye", failed="oops"), play("oops"))
    s = begin(flow)
    s = feed(flow, s.state, http_result(s.state, 204))
    assert s.trace == (("api", "next"),)


def test_conference_ok_and_failed():
    flow = make_flow(conference("c", ["+6561111111"], next="bye", failed="oops"), play("oops"))
    s = begin(flow)
    assert feed(flow, s.state, side_result(s.state)).trace == (("c", "next"),)
    assert feed(flow, s.state, side_result(s.state, ok=False, status="error_dest_invalid")).trace == (("c", "failed"),)


def test_conference_failure_without_failed_exit_goes_to_error_handler():
    flow = make_flow(conference("c", ["+6561111111"]), play("sorry"), on_error="sorry")
    s = begin(flow)
    s = feed(flow, s.state, side_result(s.state, ok=False, status="error_insufficient_credit"))
    assert s.trace == (("c", "error"),)
    assert s.actions[0].node == "sorry"


@pytest.mark.parametrize(("numbers", "room"), [(["6561111111"], "R1"), (["+6561111111"], "bad room!")])
def test_conference_bad_numbers_or_room_are_runtime_errors(numbers, room):
    s = begin(make_flow(conference("c", numbers, room=room)))
    assert s.trace == (("c", "error"),)


# ---- conference numbers given as one text ------------------------------------------------------


def _dest(s) -> str:
    [side] = s.actions
    assert side.api == "conference/call"
    return dict(side.params)["dest"]


@pytest.mark.parametrize(
    ("people", "dest"),
    [
        ("+6561000001", "+6561000001"),
        ("+6561000001, +6561000002", "+6561000001,+6561000002"),
        ("+6561000001,+6561000002", "+6561000001,+6561000002"),
        ("+6561000001 +6561000002\n+6561000003", "+6561000001,+6561000002,+6561000003"),
        (" ,+6561000001,, +6561000002 ,\t", "+6561000001,+6561000002"),  # empty items are dropped
        (", ".join(f"+656100000{i}" for i in range(1, 9)), ",".join(f"+656100000{i}" for i in range(1, 9))),
    ],
)
def test_conference_numbers_from_one_text_are_split_at_commas_and_whitespace(people, dest):
    flow = make_flow(conference("c", "{{ people }}", failed="oops"), play("oops"))
    s = begin(flow, vars={"people": people})
    assert _dest(s) == dest
    assert s.state.waiting == "side"
    assert f"c: conference/call {dest.count(',') + 1} number(s) into room 'R1' (step 1)" in s.log
    assert feed(flow, s.state, side_result(s.state)).trace == (("c", "next"),)


def test_conference_text_may_mix_fixed_numbers_and_variables():
    s = begin(make_flow(conference("c", "+6561000001, {{ people }}")), vars={"people": "+6561000002 +6561000003"})
    assert _dest(s) == "+6561000001,+6561000002,+6561000003"


@pytest.mark.parametrize(
    ("people", "why"),
    [
        ("", "no numbers to dial (1 to 8 are needed)"),
        (" , ,", "no numbers to dial (1 to 8 are needed)"),
        ("+6561000001, 61000002", "'61000002' is not a phone number: expected + and 8-15 digits"),
        ("+6561000001; +6561000002", "'+6561000001;' is not a phone number: expected + and 8-15 digits"),
        ("+65 6100 0001", "'+65' is not a phone number: expected + and 8-15 digits"),
        (", ".join(f"+656100000{i}" for i in range(1, 10)), "9 numbers, but Hoiio dials at most 8 into a room"),
        ("+6561000001, +6561000002, +6561000001", "'+6561000001' is listed twice"),
    ],
)
def test_conference_numbers_hoiio_would_refuse_take_the_failed_exit(people, why):
    flow = make_flow(conference("c", "{{ people }}", failed="oops"), play("oops"))
    s = begin(flow, vars={"people": people})
    assert s.trace == (("c", "failed"),)
    assert s.state.path == (("c", "failed"),)
    assert [(a.kind, a.node) for a in s.actions] == [("play", "oops")]  # no conference/call is made
    assert f"c: cannot dial into a conference: {why}; nobody was dialled" in s.log
    assert s.state.errors == 0


def test_conference_numbers_hoiio_would_refuse_without_a_failed_exit_go_to_the_error_handler():
    flow = make_flow(conference("c", "{{ people }}"), play("sorry"), on_error="sorry")
    s = begin(flow, vars={"people": "+6561000001, 6561000002"})
    assert s.trace == (("c", "error"),)
    assert [(a.kind, a.node) for a in s.actions] == [("play", "sorry")]
    assert ("c: error: cannot dial into a conference: '6561000002' is not a phone number: expected + and 8-15 "
            "digits, and the node has no failed exit") in s.log
    assert s.state.errors == 1


@pytest.mark.parametrize(
    ("numbers", "given", "why"),
    [
        (["+6561000001", "{{ people }}"], {"people": "+6561000002, +6561000003"},
         "'+6561000002, +6561000003' is not a phone number"),  # a list item is never split
        (["+6561000001", "{{ people | default('') }}"], {}, "'' is not a phone number"),
        (["{{ people }}", "+6561000001"], {"people": " +6561000001 "}, "'+6561000001' is listed twice"),
    ],
)
def test_conference_list_items_are_one_number_each(numbers, given, why):
    flow = make_flow(conference("c", numbers, failed="oops"), play("oops"))
    s = begin(flow, vars=given)
    assert s.trace == (("c", "failed"),)
    assert any(why in line for line in s.log), s.log


def test_conference_room_and_template_errors_still_go_to_the_error_handler():
    bad_room = make_flow(conference("c", "{{ people }}", room="bad room!", failed="oops"), play("oops"))
    assert begin(bad_room, vars={"people": "+6561000001"}).trace == (("c", "error"),)
    unset = make_flow(conference("c", "{{ nobody }}", failed="oops"), play("oops"))
    assert begin(unset).trace == (("c", "error"),)
