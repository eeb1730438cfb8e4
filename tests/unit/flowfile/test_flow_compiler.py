"""The compiler: YAML in, the ``engine.core.flow`` model out, one node type at a time."""

from __future__ import annotations

import hashlib
from datetime import date, time
from pathlib import Path

import pytest

from engine.core import flow as f
from engine.flowfile import compile_source, load_flow
from engine.flowfile.templating import JinjaExpression, JinjaTemplate

T = JinjaTemplate


def build(nodes: str, *, head: str = "start: first\n", name: str = "test") -> f.Flow:
    """Compile a flow whose nodes are given as YAML (indented by two); fail on any error."""
    source = head + "nodes:\n" + nodes
    flow, findings = compile_source(source, f"{name}.yaml")
    errors = [str(x) for x in findings if x.severity == "error"]
    assert flow is not None, errors
    return flow


END = "  end: {type: hangup}\n"


def test_flow_level_options(tmp_path: Path) -> None:
    source = (
        "description: Main line\n"
        'numbers: ["+6531580000", "+6531580001"]\n'
        "start: first\n"
        "on_error: end\n"
        "voice: {language: en-GB, gender: male}\n"
        "vars:\n  company: Acme\n  tries: 3\n  ratio: 2.5\n"
        "nodes:\n  first: {type: play, say: hi, next: end}\n" + END
    )
    path = tmp_path / "main_line.yaml"
    path.write_text(source, encoding="utf-8")
    flow, findings = load_flow(path)
    assert findings == []
    assert flow is not None
    assert flow.name == "main_line"
    assert flow.version == hashlib.sha256(source.encode()).hexdigest()[:12]
    assert flow.source == str(path)
    assert flow.description == "Main line"
    assert flow.numbers == ("+6531580000", "+6531580001")
    assert flow.start == "first" and flow.on_error == "end"
    assert flow.voice == f.Voice(language="en-GB", gender="male")
    assert flow.vars == {"company": T("Acme"), "tries": T("3"), "ratio": T("2.5")}
    assert not flow.outbound
    assert list(flow.nodes) == ["first", "end"]


def test_defaults_of_an_empty_flow_head() -> None:
    flow = build("  first: {type: hangup}\n")
    assert flow.numbers == () and flow.on_error is None and flow.voice == f.Voice() and flow.vars == {}
    assert flow.description == ""


def test_nodes_know_where_they_were_written() -> None:
    flow = build("  first:\n    type: play\n    say: hi\n    next: end\n" + END, name="pos")
    assert flow.nodes["first"].pos == f.Pos("pos.yaml", 3, 3)
    assert flow.nodes["end"].pos == f.Pos("pos.yaml", 7, 3)


def test_play_with_every_kind_of_prompt_part() -> None:
    flow = build(
        "  first:\n    type: play\n    say:\n"
        '      - "Hello {{ caller }}."\n'
        "      - {text: Ni hao, language: zh-CN, gender: female}\n"
        "      - {audio: 'https://example.com/a.mp3'}\n"
        "    next: end\n    tag: greeting\n" + END
    )
    assert flow.nodes["first"] == f.Play(
        id="first", pos=flow.nodes["first"].pos, tag="greeting",
        prompt=(f.Say(T("Hello {{ caller }}.")), f.Say(T("Ni hao"), language="zh-CN", gender="female"),
                f.Audio(T("https://example.com/a.mp3"))),
        next="end",
    )


def test_menu_with_defaults() -> None:
    flow = build(
        "  first:\n    type: menu\n    say: Press 1.\n"
        '    options: {"1": end, "*": first, "#": end, "10": end}\n'
        "    no_input: {then: end}\n    invalid: {then: end}\n" + END
    )
    menu = flow.nodes["first"]
    assert isinstance(menu, f.Menu)
    assert menu.prompt == (f.Say(T("Press 1.")),)
    assert menu.repeat_prompt is None
    assert dict(menu.options) == {"1": "end", "*": "first", "#": "end", "10": "end"}
    assert menu.timeout == 5
    assert menu.no_input == f.Retry(say=(), tries=3, then="end")
    assert menu.invalid == f.Retry(say=(), tries=3, then="end")
    assert menu.tag is None
    assert menu.exits() == {"key 1": "end", "key *": "first", "key #": "end", "key 10": "end",
                            "no input": "end", "invalid": "end"}


def test_menu_with_every_option() -> None:
    flow = build(
        "  first:\n    type: menu\n    say: Press 1.\n    repeat: Press 1 now.\n"
        '    options: {"1": end}\n    timeout: 8\n'
        "    no_input: {say: Hello?, tries: 2, then: end}\n"
        "    invalid: {say: [No., {audio: 'http://x.example/beep.wav'}], tries: 1, then: end}\n"
        "    tag: main\n" + END
    )
    menu = flow.nodes["first"]
    assert isinstance(menu, f.Menu)
    assert menu.repeat_prompt == (f.Say(T("Press 1 now.")),)
    assert menu.timeout == 8 and menu.tag == "main"
    assert menu.no_input == f.Retry(say=(f.Say(T("Hello?")),), tries=2, then="end")
    assert menu.invalid == f.Retry(say=(f.Say(T("No.")), f.Audio(T("http://x.example/beep.wav"))), tries=1,
                                   then="end")


def test_collect() -> None:
    flow = build(
        "  first:\n    type: collect\n    say: PIN?\n    into: pin\n    max_length: 6\n"
        "    no_input: {then: end}\n    invalid: {then: end}\n    next: end\n"
        "  second:\n    type: collect\n    say: PIN?\n    repeat: Again?\n    into: pin\n    min_length: 4\n"
        '    max_length: 6\n    pattern: "[0-9]{4,6}"\n    sensitive: true\n    timeout: 20\n'
        "    no_input: {then: end}\n    invalid: {say: Wrong., tries: 2, then: end}\n    next: end\n    tag: pin\n"
        + END, head="start: first\non_error: second\n",
    )
    first, second = flow.nodes["first"], flow.nodes["second"]
    assert isinstance(first, f.Collect) and isinstance(second, f.Collect)
    assert (first.var, first.min_length, first.max_length, first.pattern, first.sensitive, first.timeout) == (
        "pin", 1, 6, None, False, 10)
    assert first.repeat_prompt is None
    assert (second.min_length, second.max_length, second.pattern, second.sensitive, second.timeout) == (
        4, 6, "[0-9]{4,6}", True, 20)
    assert second.repeat_prompt == (f.Say(T("Again?")),)
    assert second.invalid == f.Retry(say=(f.Say(T("Wrong.")),), tries=2, then="end")
    assert second.tag == "pin"
    assert second.exits() == {"next": "end", "no input": "end", "invalid": "end"}


def test_record_and_monitor_defaults_and_options() -> None:
    flow = build(
        "  first: {type: record, say: Speak., next: second}\n"
        "  second: {type: record, say: Again., max_duration: 30, into: message, next: third, tag: vm}\n"
        "  third: {type: monitor, next: fourth}\n"
        "  fourth: {type: monitor, say: Recorded., into: call_audio, next: end, tag: mon}\n" + END
    )
    assert flow.nodes["first"] == f.Record(id="first", pos=flow.nodes["first"].pos, prompt=(f.Say(T("Speak.")),),
                                           max_duration=120, var="recording_url", next="second")
    second = flow.nodes["second"]
    assert isinstance(second, f.Record) and (second.max_duration, second.var, second.tag) == (30, "message", "vm")
    assert flow.nodes["third"] == f.Monitor(id="third", pos=flow.nodes["third"].pos, prompt=(), var="monitor_url",
                                            next="fourth")
    fourth = flow.nodes["fourth"]
    assert isinstance(fourth, f.Monitor) and (fourth.var, fourth.tag) == ("call_audio", "mon")
    assert fourth.prompt == (f.Say(T("Recorded.")),)


def test_hold_and_unhold() -> None:
    flow = build(
        "  first: {type: hold, next: work}\n"
        "  work: {type: set, values: {x: '1'}, next: back}\n"
        "  back: {type: unhold, next: second, tag: resumed}\n"
        "  second: {type: hold, music: [{audio: 'https://x.example/m.mp3'}], next: back2}\n"
        "  back2: {type: unhold, next: end}\n" + END
    )
    assert flow.nodes["first"] == f.Hold(id="first", pos=flow.nodes["first"].pos, music=(), next="work")
    assert flow.nodes["back"] == f.Unhold(id="back", pos=flow.nodes["back"].pos, tag="resumed", next="second")
    second = flow.nodes["second"]
    assert isinstance(second, f.Hold) and second.music == (f.Audio(T("https://x.example/m.mp3")),)


def test_transfer_defaults_and_options() -> None:
    flow = build(
        '  first: {type: transfer, to: "+6561234567"}\n'
        "  second:\n    type: transfer\n    to: 'room:{{ room }}'\n    say: Joining.\n    caller_id: private\n"
        "    ring_time: 20\n    room_profile: ringing\n    on_failure: continue\n    failed: end\n    tag: conf\n"
        + END, head="start: first\non_error: second\nvars: {room: R1}\n",
    )
    assert flow.nodes["first"] == f.Transfer(
        id="first", pos=flow.nodes["first"].pos, to=T("+6561234567"), prompt=(), caller_id=None, ring_time=None,
        room_profile=None, on_failure="hangup", failed=None)
    assert flow.nodes["first"].exits() == {}
    second = flow.nodes["second"]
    assert second == f.Transfer(
        id="second", pos=second.pos, tag="conf", to=T("room:{{ room }}"), prompt=(f.Say(T("Joining.")),),
        caller_id="private", ring_time=20, room_profile="ringing", on_failure="continue", failed="end")


def test_hangup() -> None:
    flow = build("  first: {type: hangup, say: Bye., tag: bye}\n  second: {type: hangup, force: true}\n",
                 head="start: first\non_error: second\n")
    assert flow.nodes["first"] == f.Hangup(id="first", pos=flow.nodes["first"].pos, tag="bye",
                                           prompt=(f.Say(T("Bye.")),), force=False)
    assert flow.nodes["second"] == f.Hangup(id="second", pos=flow.nodes["second"].pos, prompt=(), force=True)


def test_dial_makes_an_outbound_flow() -> None:
    flow = build(
        "  first:\n    type: dial\n    say: Hello.\n    caller_id: '+6531580000'\n    max_duration: 300\n"
        "    answered: end\n    unanswered: report\n    busy: report\n    failed: report\n    tag: out\n"
        "  report: {type: http, url: 'https://x.example/r', next: end, failed: end}\n" + END
    )
    assert flow.outbound
    assert flow.nodes["first"] == f.Dial(
        id="first", pos=flow.nodes["first"].pos, tag="out", prompt=(f.Say(T("Hello.")),), caller_id="+6531580000",
        max_duration=300, answered="end", unanswered="report", busy="report", failed="report")
    minimal = build("  first: {type: dial, answered: end}\n" + END).nodes["first"]
    assert isinstance(minimal, f.Dial)
    assert (minimal.prompt, minimal.caller_id, minimal.max_duration) == ((), None, None)
    assert minimal.exits() == {"answered": "end"}


def test_conference() -> None:
    flow = build(
        "  first:\n    type: conference\n    numbers: ['+6561000001', '{{ boss }}']\n    room: 'R{{ session }}'\n"
        "    caller_id: '+6531580000'\n    next: end\n    failed: end\n" + END,
        head="start: first\nvars: {boss: '+6561000002'}\n",
    )
    assert flow.nodes["first"] == f.Conference(
        id="first", pos=flow.nodes["first"].pos, numbers=(T("+6561000001"), T("{{ boss }}")),
        room=T("R{{ session }}"), caller_id="+6531580000", next="end", failed="end")


def test_conference_numbers_as_one_text_stay_one_template() -> None:
    flow = build(
        "  first:\n    type: conference\n    numbers: '+6561000001, {{ people }}'\n    room: R1\n    next: end\n"
        + END, head="start: first\ninputs: [people]\n",
    )
    node = flow.nodes["first"]
    assert node == f.Conference(id="first", pos=node.pos, numbers=T("+6561000001, {{ people }}"), room=T("R1"),
                                caller_id=None, next="end", failed=None)
    assert node.numbers.variables() == {"people"}


def test_http_defaults_and_options() -> None:
    flow = build(
        "  first: {type: http, url: 'https://x.example/a', next: second, failed: end}\n"
        "  second:\n    type: http\n    method: POST\n    url: 'https://x.example/b/{{ session }}'\n"
        "    headers: {Authorization: 'Bearer {{ token }}'}\n    body: {id: '{{ session }}', size: 4}\n"
        "    timeout: 2.5\n    save: {balance: account.balance, first_item: items.0.name}\n"
        "    next: end\n    failed: end\n" + END, head="start: first\nvars: {token: t}\n",
    )
    assert flow.nodes["first"] == f.Http(
        id="first", pos=flow.nodes["first"].pos, method="GET", url=T("https://x.example/a"), headers={}, body=None,
        timeout=3.0, save={}, next="second", failed="end")
    second = flow.nodes["second"]
    assert isinstance(second, f.Http)
    assert second.method == "POST" and second.timeout == 2.5
    assert second.headers == {"Authorization": T("Bearer {{ token }}")}
    assert second.body == {"id": T("{{ session }}"), "size": T("4")}
    assert second.save == {"balance": "account.balance", "first_item": "items.0.name"}


def test_set_branch_and_goto() -> None:
    flow = build(
        "  first: {type: set, values: {tries: '{{ tries | int + 1 }}', level: 2}, next: second}\n"
        "  second:\n    type: branch\n    cases:\n      - {when: 'tries | int > 3', then: end}\n"
        "      - {when: \"digits == '1'\", then: third}\n    otherwise: third\n"
        "  third: {type: goto, to: end}\n" + END, head="start: first\nvars: {tries: '0'}\n",
    )
    assert flow.nodes["first"] == f.Set(id="first", pos=flow.nodes["first"].pos,
                                        values={"tries": T("{{ tries | int + 1 }}"), "level": T("2")}, next="second")
    branch = flow.nodes["second"]
    assert isinstance(branch, f.Branch)
    assert branch.cases == (f.Case(JinjaExpression("tries | int > 3"), "end"),
                            f.Case(JinjaExpression("digits == '1'"), "third"))
    assert branch.otherwise == "third"
    assert branch.exits() == {"case 1": "end", "case 2": "third", "otherwise": "third"}
    assert flow.nodes["third"] == f.Goto(id="third", pos=flow.nodes["third"].pos, to="end")
    assert branch.cases[0].when.evaluate({"tries": "5"}) is True


def test_hours() -> None:
    flow = build(
        "  first:\n    type: hours\n    timezone: Asia/Singapore\n"
        '    weekly: {mon-wed: "09:00-18:00", fri: ["14:00-24:00", "08:00-12:00"], sat-sun: "10:00-12:00"}\n'
        '    holidays: ["2026-12-25", "2027-01-01"]\n    open: end\n    closed: end\n    holiday: end\n' + END
    )
    hours = flow.nodes["first"]
    assert isinstance(hours, f.Hours)
    assert hours.timezone == "Asia/Singapore"
    nine_to_six = (f.Interval(time(9), time(18)),)
    assert dict(hours.weekly) == {
        0: nine_to_six, 1: nine_to_six, 2: nine_to_six,
        4: (f.Interval(time(8), time(12)), f.Interval(time(14), time.max)),
        5: (f.Interval(time(10), time(12)),), 6: (f.Interval(time(10), time(12)),),
    }
    assert hours.holidays == frozenset({date(2026, 12, 25), date(2027, 1, 1)})
    assert hours.exits() == {"open": "end", "closed": "end", "holiday": "end"}
    plain = build("  first: {type: hours, timezone: UTC, weekly: {sun: '00:00-24:00'}, open: end, closed: end}\n"
                  + END).nodes["first"]
    assert isinstance(plain, f.Hours) and plain.holiday is None and plain.holidays == frozenset()


@pytest.mark.parametrize("kind", sorted(f.NODE_KINDS))
def test_every_node_type_of_the_model_can_be_written(kind: str) -> None:
    from engine.flowfile.compiler import NODE_KEYS

    assert kind in NODE_KEYS


def test_compiled_templates_render_as_before() -> None:
    flow = build('  first: {type: hangup, say: "Hi {{ name | upper }}."}\n', head="start: first\nvars: {name: x}\n")
    hangup = flow.nodes["first"]
    assert isinstance(hangup, f.Hangup)
    text = hangup.prompt[0]
    assert isinstance(text, f.Say)
    assert text.text.render({"name": "<url>ann</url>"}) == "Hi URLANN/URL."


def test_compile_source_accepts_text_and_an_explicit_name() -> None:
    flow, findings = compile_source("start: a\nnodes:\n  a: {type: hangup}\n", "stored/v1.yaml", name="main")
    assert findings == [] and flow is not None
    assert flow.name == "main" and flow.source == "stored/v1.yaml"
