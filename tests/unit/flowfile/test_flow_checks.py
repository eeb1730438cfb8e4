"""Semantic checks: targets, the graph, variables, templates, Hoiio's limits, values."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.flowfile import check_paths, compile_source, load_flows
from engine.flowfile.checks import message_length
from engine.flowfile.limits import LANGUAGES

END = "  end: {type: hangup}\n"


def found(nodes: str, head: str = "start: first\n") -> list[str]:
    """Findings (without the file name) for a flow made of ``head`` and ``nodes``."""
    _, findings = compile_source(head + "nodes:\n" + nodes, "f.yaml")
    return [str(x).removeprefix("f.yaml:") for x in findings]


# ---- targets -----------------------------------------------------------------------------------


def test_every_kind_of_exit_to_a_missing_node_is_named() -> None:
    nodes = (
        "  first: {type: play, say: hi, next: secnd}\n"
        "  second:\n    type: menu\n    say: hi\n    options: {'1': end, '2': ned}\n"
        "    no_input: {then: nowhere}\n    invalid: {then: end}\n"
        "  third: {type: branch, cases: [{when: 'true', then: x1}], otherwise: x2}\n"
        "  fourth: {type: transfer, to: '+6561234567', on_failure: continue, failed: x3}\n"
        "  fifth: {type: hours, timezone: UTC, weekly: {mon: '09:00-10:00'}, open: x4, closed: x5, holiday: x6}\n"
        "  sixth: {type: goto, to: x7}\n" + END
    )
    assert found(nodes, "start: first\non_error: sorry\n") == [
        "2:11: error: on_error sends errors to 'sorry', which does not exist",
        "4:38: error: play 'first' goes next to 'secnd', which does not exist — did you mean 'second'?",
        "8:30: error: menu 'second' sends key 2 to 'ned', which does not exist — did you mean 'end'?",
        "9:22: error: menu 'second' sends no input to 'nowhere', which does not exist",
        "11:54: error: branch 'third' sends case 1 to 'x1', which does not exist",
        "11:71: error: branch 'third' sends everything else to 'x2', which does not exist",
        "12:77: error: transfer 'fourth' sends failures to 'x3', which does not exist",
        "13:75: error: hours 'fifth' sends open hours to 'x4', which does not exist",
        "13:87: error: hours 'fifth' sends closed hours to 'x5', which does not exist",
        "13:100: error: hours 'fifth' sends holidays to 'x6', which does not exist",
        "13:100: warning: hours 'fifth' has a 'holiday' exit but no holidays listed, so it is never used",
        "14:27: error: goto 'sixth' goes to 'x7', which does not exist",
    ]


def test_a_missing_start_node_suggests_one() -> None:
    assert found("  welcome: {type: hangup}\n", "start: welcom\n") == [
        "1:8: error: the flow starts at 'welcom', which does not exist — did you mean 'welcome'?"
    ]


def test_targets_of_a_node_with_other_problems_are_still_checked() -> None:
    assert found("  first: {type: play, say: hi, nxt: x, next: edn}\n" + END) == [
        "3:32: error: unknown option 'nxt' in play 'first' — did you mean 'next'?",
        "3:46: error: play 'first' goes next to 'edn', which does not exist — did you mean 'end'?",
    ]


# ---- the graph ---------------------------------------------------------------------------------


def test_nodes_reached_only_from_on_error_are_reachable() -> None:
    assert found("  first: {type: play, say: hi, next: end}\n  sorry: {type: hangup}\n" + END,
                 "start: first\non_error: sorry\n") == []


def test_an_engine_loop_with_a_way_out_is_still_endless_without_caller_input() -> None:
    nodes = (
        "  first: {type: set, values: {count: '{{ count | int + 1 }}'}, next: check}\n"
        "  check: {type: branch, cases: [{when: 'count | int > 3', then: end}], otherwise: first}\n" + END
    )
    assert found(nodes, "start: first\nvars: {count: 0}\n") == [
        "4:3: error: endless loop: set 'first' → branch 'check' → set 'first' never waits for the caller; put a "
        "step that talks to the caller (play, menu, ...) in the loop, or give it a way out"
    ]


def test_a_goto_to_itself_is_an_endless_loop() -> None:
    assert found("  first: {type: goto, to: first}\n") == [
        "3:3: error: endless loop: goto 'first' → goto 'first' never waits for the caller; put a step that talks "
        "to the caller (play, menu, ...) in the loop, or give it a way out"
    ]


def test_a_loop_through_a_menu_is_fine() -> None:
    nodes = (
        "  first:\n    type: menu\n    say: 1 to repeat, 2 to leave.\n    options: {'1': again, '2': end}\n"
        "    no_input: {then: again}\n    invalid: {then: end}\n"
        "  again: {type: set, values: {count: '1'}, next: back}\n  back: {type: goto, to: first}\n" + END
    )
    assert found(nodes) == []


def test_a_play_loop_without_a_way_out_is_not_a_menu_problem() -> None:
    assert found("  first: {type: play, say: hold music, next: first}\n") == []


def test_a_collect_with_no_way_out() -> None:
    nodes = ("  first:\n    type: collect\n    say: PIN?\n    into: pin\n    max_length: 4\n"
             "    no_input: {then: first}\n    invalid: {then: first}\n    next: first\n")
    assert found(nodes) == [
        "3:3: error: collect 'first' has no way out: whatever the caller does, the call never reaches a hangup or "
        "a transfer; send no_input or invalid to a goodbye or an operator"
    ]


def test_hold_then_engine_steps_then_unhold_is_fine() -> None:
    nodes = ("  first: {type: hold, next: look}\n"
             "  look: {type: http, url: 'https://x.example', next: back, failed: back}\n"
             "  back: {type: unhold, next: end}\n" + END)
    assert found(nodes) == []


def test_hold_followed_by_hold_and_unhold_without_hold() -> None:
    nodes = ("  first: {type: hold, next: second}\n  second: {type: hold, next: back}\n"
             "  back: {type: unhold, next: again}\n  again: {type: unhold, next: end}\n" + END)
    assert found(nodes) == [
        "3:3: error: after hold 'first' the call reaches hold 'second' before an unhold; while a caller is on "
        "hold only unhold can come next",
        "6:3: error: unhold 'again' can be reached when the caller is not on hold; put a hold before it or remove it",
    ]


def test_one_branch_of_many_reaching_a_block_while_on_hold() -> None:
    nodes = ("  first: {type: hold, next: pick}\n"
             "  pick: {type: branch, cases: [{when: 'true', then: back}], otherwise: end}\n"
             "  back: {type: unhold, next: end}\n" + END)
    assert found(nodes) == [
        "3:3: error: after hold 'first' the call reaches hangup 'end' before an unhold; while a caller is on hold "
        "only unhold can come next"
    ]


def test_nothing_may_lead_to_a_dial() -> None:
    nodes = "  first: {type: dial, answered: hello}\n  hello: {type: play, say: hi, next: first}\n"
    assert found(nodes) == [
        "4:38: error: play 'hello' goes next to dial 'first', but a dial can only start a call"
    ]


def test_dial_results_that_lead_to_a_block_warn() -> None:
    nodes = ("  first: {type: dial, answered: end, unanswered: sorry, busy: end}\n"
             "  sorry: {type: play, say: Sorry we missed you, next: end}\n" + END)
    assert found(nodes) == [
        "3:50: warning: dial 'first' sends unanswered calls to play 'sorry', but nobody is on the line then; use "
        "steps such as http or set (to record the result), or leave it out"
    ]


def test_outbound_flows_with_numbers_and_inbound_flows_with_inputs_warn() -> None:
    assert found("  first: {type: dial, answered: end}\n" + END, 'start: first\nnumbers: ["+6531580000"]\n') == [
        "2:10: warning: this flow starts with a dial (an outbound call), so incoming calls to its numbers can't run "
        "it; move the numbers to an inbound flow"
    ]
    inbound = "  first: {type: play, say: 'Hi {{ name }}', next: end}\n" + END
    assert found(inbound, "start: first\ninputs: [name]\n") == [
        "2:9: warning: inputs are given only when an outbound call is placed, but this flow does not start with a "
        "dial; use vars: for values known in advance"
    ]


# ---- variables and templates -------------------------------------------------------------------


def test_every_way_of_setting_a_variable_counts() -> None:
    nodes = (
        "  first: {type: dial, answered: ask}\n"
        "  ask:\n    type: collect\n    say: Code?\n    into: code\n    max_length: 4\n"
        "    no_input: {then: end}\n    invalid: {then: end}\n    next: rec\n"
        "  rec: {type: record, say: Speak., next: mon}\n"
        "  mon: {type: monitor, next: look}\n"
        "  look: {type: http, url: 'https://x.example/{{ code }}', save: {balance: a.b}, next: keep, failed: end}\n"
        "  keep: {type: set, values: {total: '{{ balance }}'}, next: say}\n"
        "  say:\n    type: hangup\n    say: >-\n"
        "      {{ company }} {{ name }} {{ code }} {{ recording_url }} {{ monitor_url }}\n"
        "      {{ balance }} {{ total }} {{ caller }} {{ called }} {{ dest }} {{ session }} {{ digits }}\n"
        "      {{ transfer_status }} {{ dial_status }} {{ range(3) | join }} {% set local = 1 %}{{ local }}\n"
        + END
    )
    assert found(nodes, "start: first\ninputs: [name]\nvars: {company: Acme}\n") == []


def test_variables_in_conditions_and_values_are_checked_too() -> None:
    nodes = ("  first: {type: set, values: {a: '{{ missing_one }}'}, next: b}\n"
             "  b: {type: branch, cases: [{when: 'missing_two > 1', then: end}], otherwise: end}\n" + END)
    assert found(nodes) == [
        "3:34: error: variable 'missing_one' in 'values.a' in set 'first' is never set (set it with vars:, inputs:, "
        "a set node, or a collect's into:)",
        "4:36: error: variable 'missing_two' in 'cases[1].when' in branch 'b' is never set (set it with vars:, "
        "inputs:, a set node, or a collect's into:)",
    ]


def test_built_in_and_reserved_names_cannot_be_set() -> None:
    assert found("  first: {type: set, values: {caller: x, none: z}, next: end}\n" + END) == [
        "3:31: error: 'caller' is set by the engine on every call and can't be changed; choose another name",
        "3:42: error: 'none' can't be a variable name: templates read it as a keyword",
    ]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{{ ''.__class__.__mro__ }}", "'.__class__' reaches into Python internals"),
        ("{{ x['__globals__'] }}", "'['__globals__']' reaches into Python internals"),
        ("{{ x | attr('y') }}", "the attr filter is not allowed"),
        ("{{ '{0.__class__}'.format(x) }}", "'.format()' is not allowed; use the format filter or ~"),
        ("{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
         "{% for %} loops can't be used in a flow"),
        ("{% macro m() %}x{% endmacro %}", "{% macro %} can't be used in a flow"),
        ("{% include 'other' %}", "{% include %} can't be used in a flow"),
    ],
)
def test_unsafe_templates(template: str, problem: str) -> None:
    quoted = template.replace('"', '\\"')
    result = found(f'  first: {{type: hangup, say: "{quoted}"}}\n', "start: first\nvars: {x: '1'}\n")
    assert f"4:30: error: unsafe template in 'say' in hangup 'first': {problem}" in result


def test_an_unsafe_condition() -> None:
    assert found("  first: {type: branch, cases: [{when: 'x.__class__', then: end}], otherwise: end}\n" + END,
                 "start: first\nvars: {x: '1'}\n") == [
        "4:40: error: unsafe template in 'cases[1].when' in branch 'first': '.__class__' reaches into Python internals"
    ]


def test_a_condition_with_a_syntax_error() -> None:
    assert found("  first: {type: branch, cases: [{when: 'x ==', then: end}], otherwise: end}\n" + END,
                 "start: first\nvars: {x: '1'}\n") == [
        "4:40: error: condition error in 'cases[1].when' in branch 'first': unexpected 'end of template'; check "
        "the {{ }} and {% %} pairs"
    ]


# ---- prompts and Hoiio's limits ----------------------------------------------------------------


def test_message_length_counts_the_generated_markup() -> None:
    text = "x" * 300
    flow, _ = compile_source(
        "start: a\nvoice: {language: en-US}\nnodes:\n"
        f"  a: {{type: hangup, say: ['{text}', {{audio: 'https://x.example/a.mp3'}}, "
        f"{{text: '{text}', gender: male}}]}}\n",
        "f.yaml",
    )
    assert flow is not None
    speech_one = f'<speech language="en-US">{text}</speech>'
    speech_two = f'<speech language="en-US" gender="male">{text}</speech>'
    expected = len(" ".join([speech_one, "<url>https://x.example/a.mp3</url>", speech_two]))
    assert message_length(flow.nodes["a"].prompt, flow) == (expected, False)  # type: ignore[attr-defined]


def test_long_messages_warn_above_500_and_fail_above_1000() -> None:
    assert found(f"  first: {{type: hangup, say: '{'y' * 600}'}}\n") == [
        "3:30: warning: 'say' in hangup 'first' is 600 characters long as Hoiio markup; older Hoiio documentation "
        "allows only 500, so keep it under 500 to be safe"
    ]
    assert found(f"  first: {{type: hangup, say: '{'y' * 990} {{{{ x }}}}'}}\n", "start: first\nvars: {x: a}\n") == [
        "4:30: warning: 'say' in hangup 'first' is at least 990 characters long as Hoiio markup; older Hoiio "
        "documentation allows only 500, so keep it under 500 to be safe"
    ]
    assert found(f"  first: {{type: hangup, say: [{{text: '{'y' * 990}', language: en}}]}}\n")[0].startswith(
        "3:30: error: 'say' in hangup 'first' is 1021 characters long as Hoiio markup; Hoiio accepts at most 1000"
    )


def test_a_retry_message_is_counted_together_with_the_repeated_question() -> None:
    nodes = (f"  first:\n    type: menu\n    say: '{'q' * 400}'\n    options: {{'1': end}}\n"
             f"    no_input: {{say: '{'r' * 200}', then: end}}\n    invalid: {{then: end}}\n" + END)
    assert found(nodes) == [
        "7:21: warning: 'no_input.say' in menu 'first' is 601 characters long as Hoiio markup; older Hoiio "
        "documentation allows only 500, so keep it under 500 to be safe"
    ]


def test_markup_cannot_be_written_by_hand() -> None:
    assert found("  first: {type: hangup, say: '<speech language=\"fr\">Bonjour</speech>'}\n") == [
        "3:30: error: 'say' in hangup 'first' contains < or >, which Hoiio reads as markup; write {audio: ...} for "
        "sound files and language:/gender: for voices instead"
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://x.example/a.mp3", "it must start with http:// or https://"),
        ("https://x.example/a.ogg", "it must end with .mp3, .wav or .gsm"),
        ("https://x.example/a.mp3?v=1 2", "it contains spaces or < >"),
    ],
)
def test_audio_addresses(url: str, problem: str) -> None:
    assert found(f"  first: {{type: hangup, say: [{{audio: '{url}'}}]}}\n") == [
        f"3:39: error: audio '{url}' in 'say' in hangup 'first' can't be played: {problem}"
    ]


def test_audio_addresses_with_variables_and_query_strings_are_accepted() -> None:
    assert found("  first: {type: hangup, say: [{audio: '{{ recording_url }}'}, "
                 "{audio: 'https://x.example/A.MP3?sig=1'}]}\n", "start: first\nvars: {recording_url: x}\n") == []


def test_languages_malformed_unknown_and_known() -> None:
    assert found("  first: {type: hangup, say: [{text: hi, language: en-us}]}\n") == [
        "3:52: error: 'say[1].language' in hangup 'first' must be a language tag such as en, en-US or zh-HK, not "
        "the text \"en-us\""
    ]
    assert found("  first: {type: hangup, say: [{text: hi, language: xx-YY}]}\n") == [
        "3:52: warning: language 'xx-YY': it is not among the languages Hoiio is known to speak (en, en-US, "
        "en-GB, en-AU, en-IN, en-SG, ...); it may be refused at call time"
    ]
    assert found("  first: {type: hangup}\n", "start: first\nvoice: {language: zz}\n")[0].startswith(
        "2:19: warning: language 'zz'")
    for tag in ("en", "en-US", "zh-HK"):
        assert tag in LANGUAGES
        assert found(f"  first: {{type: hangup, say: [{{text: hi, language: {tag}}}]}}\n") == []


def test_genders() -> None:
    assert found("  first: {type: hangup, say: [{text: hi, gender: robot}]}\n") == [
        "3:50: error: 'say[1].gender' in hangup 'first' must be one of female, male, not the text \"robot\""
    ]


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("room:", None),
        ("room:Team_1.a", None),
        ("room:{{ code }}", None),
        ("{{ number }}", None),
        ("+6561234567", None),
        ("room:" + "r" * 33,
         "room ID '" + "r" * 33 + "' in transfer 'first' may use only letters, digits, '.' and '_', up to 32 "
         "characters"),
        ("+65612", "'to' in transfer 'first' must be a phone number in international format, in quotes "
                   "(\"+6561234567\"), or a conference room (\"room:R1\"), not \"+65612\""),
    ],
)
def test_transfer_destinations(to: str, message: str | None) -> None:
    result = found(f"  first: {{type: transfer, to: '{to}'}}\n", "start: first\nvars: {code: '1', number: '2'}\n")
    assert result == ([] if message is None else [f"4:31: error: {message}"])


def test_room_profile_on_a_phone_transfer_warns() -> None:
    assert found("  first: {type: transfer, to: '+6561234567', room_profile: music}\n") == [
        "3:60: warning: room_profile in transfer 'first' does nothing: it applies only to transfers into a "
        "conference room"
    ]


def test_caller_ids() -> None:
    assert found("  first: {type: transfer, to: '+6561234567', caller_id: private}\n") == []
    assert found("  first: {type: transfer, to: '+6561234567', caller_id: '6531580000'}\n") == [
        "3:57: error: 'caller_id' in transfer 'first' must be one of your numbers in international format "
        "(\"+6561234567\"), or private, not the text \"6531580000\""
    ]


def test_conference_numbers_and_rooms() -> None:
    assert found("  first: {type: conference, numbers: ['+6561000001', '6561'], room: 'room:R1', next: end}\n"
                 + END) == [
        "3:54: error: '6561' in conference 'first' is not a phone number in international format; write it in "
        "quotes like \"+6561234567\"",
        "3:69: error: room ID 'room:R1' in conference 'first' may use only letters, digits, '.' and '_', up to 32 "
        "characters (write it without 'room:')",
    ]


def _conference(numbers: str) -> list[str]:
    return found(f"  first: {{type: conference, numbers: {numbers}, room: R1, next: end}}\n" + END,
                 "start: first\nvars: {people: '+6561000009'}\n")


def test_conference_numbers_as_one_fixed_text_are_checked_like_a_list() -> None:
    assert _conference('"+6561000001, +6561000002 +6561000003,"') == []
    assert _conference('"{{ people }}"') == []  # checked when the call gets there
    assert _conference('"+6561000001, {{ people }}"') == []
    assert _conference('"+6561000001, 61000002"') == [
        "4:38: error: 'numbers' in conference 'first' lists '61000002', which is not a phone number in "
        "international format; write each number like +6561234567 (a + then 8 to 15 digits, no spaces), separated "
        "by commas"
    ]
    assert _conference('"+65 6100 0001"') == [
        "4:38: error: 'numbers' in conference 'first' lists '+65', which is not a phone number in international "
        "format; write each number like +6561234567 (a + then 8 to 15 digits, no spaces), separated by commas"
    ]
    nine = ", ".join(f"+656100000{i}" for i in range(1, 10))
    assert _conference(f'"{nine}"') == [
        "4:38: error: 'numbers' in conference 'first' lists 9 phone numbers; Hoiio dials at most 8 into a room"
    ]
    assert _conference('" , "') == [
        "4:38: error: 'numbers' in conference 'first' lists no phone numbers; give 1 to 8, separated by commas "
        '("+6561234567, +6561234568")'
    ]
    assert _conference('"+6561000001, +6561000002, +6561000001"') == [
        "4:38: error: 'numbers' in conference 'first' lists +6561000001 twice; Hoiio dials each number once"
    ]
    assert _conference('""') == ["4:38: error: 'numbers' in conference 'first' can't be empty"]
    assert _conference("5") == ["4:38: error: 'numbers' in conference 'first' must be a list or text, not the "
                                "number 5"]


def test_conference_list_items_hold_one_number_each() -> None:
    assert _conference("['+6561000001, +6561000002']") == [
        "4:39: error: '+6561000001, +6561000002' in conference 'first' is not a phone number in international "
        'format; write it in quotes like "+6561234567" (a list item holds one number; to list several in one '
        'text, write numbers: "+6561234567, +6561234568" without [ ])'
    ]
    assert _conference("['+6561000001', '{{ people }}', '+6561000001']") == [
        "4:70: error: 'numbers' in conference 'first' lists +6561000001 twice; Hoiio dials each number once"
    ]


def test_force_hangup_cannot_speak() -> None:
    assert found("  first: {type: hangup, say: Bye, force: true}\n") == [
        "3:42: error: hangup 'first' has force: true, which hangs up at once, so its 'say' would never be heard; "
        "remove one of them"
    ]


def test_http_address_must_be_http() -> None:
    assert found("  first: {type: http, url: 'ftp://x.example', next: end, failed: end}\n" + END) == [
        "3:28: error: 'url' in http 'first' must start with http:// or https://"
    ]


# ---- values ------------------------------------------------------------------------------------


def collect(extra: str) -> str:
    return ("  first:\n    type: collect\n    say: PIN?\n    into: pin\n    max_length: 4\n"
            f"{extra}    no_input: {{then: end}}\n    invalid: {{then: end}}\n    next: end\n" + END)


def test_collect_lengths_and_patterns() -> None:
    assert found(collect("    min_length: 6\n")) == [
        "8:17: error: min_length (6) in collect 'first' is larger than max_length (4)"
    ]
    assert found(collect("    pattern: '(1'\n")) == [
        "8:14: error: 'pattern' in collect 'first' is not a valid regular expression: missing ), unterminated "
        "subpattern at position 0"
    ]
    assert found(collect("    pattern: '(\\d+)+'\n")) == [
        "8:14: warning: 'pattern' in collect 'first' repeats a group that itself repeats, which can take very long "
        "to match; write it without the nested repeat (e.g. [0-9]+)"
    ]
    assert found(collect("    pattern: '[0-9]{4}'\n")) == []


def hours(weekly: str, extra: str = "") -> str:
    return (f"  first:\n    type: hours\n    timezone: Asia/Singapore\n    weekly: {weekly}\n{extra}"
            "    open: end\n    closed: end\n" + END)


def test_opening_hours() -> None:
    assert found(hours("{fri-mon: '09:00-10:00'}")) == [
        "6:14: error: 'fri-mon' in hours 'first' runs backwards: days go in week order (mon ... sun); write it as "
        "two entries, fri-sun and mon"
    ]
    assert found(hours("{mon-fri: '09:00-10:00', wed: '12:00-13:00'}")) == [
        "6:38: error: Wednesday is in both 'mon-fri' and 'wed' in hours 'first'; give each day its hours once"
    ]
    assert found(hours("{mon: ['09:00-12:00', '11:00-14:00']}")) == [
        "6:35: error: '11:00-14:00' overlaps '09:00-12:00' on 'mon' in hours 'first'"
    ]
    assert found(hours("{mon: '9:00-10:00'}")) == [
        "6:19: error: 'weekly.mon' in hours 'first' must be opening hours like \"09:00-18:00\" (24-hour clock; "
        "24:00 for midnight at the end), not the text \"9:00-10:00\""
    ]
    assert found(hours("{monday: '09:00-10:00'}")) == [
        "6:14: error: 'monday' in 'weekly' in hours 'first' must be a day (mon, tue, wed, thu, fri, sat, sun) or a "
        "range of days such as mon-fri"
    ]
    assert found(hours("{mon: '00:00-24:00'}")) == []


def test_holidays() -> None:
    assert found(hours("{mon: '09:00-10:00'}", "    holidays: ['2026-12-25', '2026-12-25', '2026-13-01']\n")) == [
        "7:30: warning: '2026-12-25' is listed twice in hours 'first'",
        "7:44: error: '2026-13-01' in hours 'first' is not a real date (YYYY-MM-DD)",
    ]
    assert found(hours("{mon: '09:00-10:00'}", "    holiday: end\n")) == [
        "7:14: warning: hours 'first' has a 'holiday' exit but no holidays listed, so it is never used"
    ]


def test_time_zones() -> None:
    assert found(hours("{mon: '09:00-10:00'}").replace("Asia/Singapore", "Mars/Olympus")) == [
        "5:15: error: unknown time zone 'Mars/Olympus' in hours 'first'; write a name such as Asia/Singapore"
    ]
    assert found(hours("{mon: '09:00-10:00'}").replace("Asia/Singapore", "../../etc/passwd")) == [
        "5:15: error: unknown time zone '../../etc/passwd' in hours 'first'; write a name such as Asia/Singapore"
    ]


# ---- folders -----------------------------------------------------------------------------------


def write(folder: Path, name: str, numbers: str = "[]") -> None:
    (folder / name).write_text(f"numbers: {numbers}\nstart: a\nnodes:\n  a: {{type: hangup}}\n", encoding="utf-8")


def test_load_flows_returns_the_good_flows_and_all_findings(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", '["+6531580000"]')
    write(tmp_path, "two.yaml", '["+6531580000"]')
    (tmp_path / "broken.yaml").write_text("start: a\nnodes: {}\n", encoding="utf-8")
    write(tmp_path, "one.yml")
    (tmp_path / "notes.txt").write_text("not a flow", encoding="utf-8")
    flows, findings = load_flows(tmp_path)
    assert sorted(flows) == ["one"]
    assert [str(x).replace(str(tmp_path), "F") for x in findings] == [
        "F/broken.yaml:2:8: error: 'nodes' can't be empty",
        "F/one.yml: error: another file (F/one.yaml) already defines the flow 'one'; keep only one",
        "F/two.yaml:1:11: error: +6531580000 already runs the flow 'one'; a Hoiio number can run only one flow",
    ]


def test_missing_files_and_folders_are_findings(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert [str(x) for x in check_paths([missing])] == [f"{missing}: error: no such file"]
    assert [str(x) for x in load_flows(tmp_path / "nope")[1]] == [f"{tmp_path}/nope: error: no such folder"]


def test_an_empty_folder_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / ".#draft.yaml").write_text("not: [valid", encoding="utf-8")
    assert [str(x) for x in check_paths([tmp_path])] == [f"{tmp_path}: warning: no flow files (*.yaml) in this folder"]


def test_a_flow_name_must_work_in_an_address(tmp_path: Path) -> None:
    write(tmp_path, "my flow.yaml")
    assert [str(x) for x in check_paths([tmp_path])] == [
        f"{tmp_path}/my flow.yaml: error: the flow name 'my flow' (from the file name) can be used in addresses "
        "only if it has letters, digits, - and _ (up to 64); rename the file"
    ]
