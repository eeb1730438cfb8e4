"""Exact Hoiio block parameters (golden tuples) for every block node, and the engine-side actions."""

from __future__ import annotations

from engine.core.actions import BLOCK_ENDPOINTS, Block, HttpCall, SideCall
from engine.core.flow import NODE_KINDS, Play, Say, Voice
from engine.core.interpreter import ENTER_NODE, NODE_RESULT, WAITS_FOR
from tests.unit.core.builders import (
    CALL,
    audio,
    begin,
    collect,
    conference,
    dial,
    feed,
    golden,
    hangup,
    hold,
    http,
    make_flow,
    menu,
    monitor,
    notify,
    play,
    record,
    say,
    t,
    transfer,
    unhold,
)


def test_every_node_kind_has_an_entry_handler_and_every_waiting_kind_a_result_handler():
    assert set(ENTER_NODE) == set(NODE_KINDS)
    assert set(NODE_RESULT) == set(WAITS_FOR)
    assert {w for w in WAITS_FOR.values() if w not in ("http", "side")} <= set(BLOCK_ENDPOINTS)


def test_play_block():
    s = begin(make_flow(play("hi", "Welcome to Acme.", tag="greeting")))
    assert golden(s) == [("play", (("msg", "Welcome to Acme."), ("tag", "greeting")))]
    block = s.actions[0]
    assert isinstance(block, Block) and block.step == 1 and block.node == "hi"
    assert s.state.step == 1 and s.state.waiting == "play" and s.state.node == "hi"
    assert s.outcome == "started"


def test_play_uses_flow_voice_and_part_voice_and_audio():
    prompt = (
        Say(t("Hello {{ caller }}")),
        Say(t("Ni hao"), language="zh-HK", gender="male"),
        audio("https://example.com/jingle.mp3"),
    )
    flow = make_flow(Play(id="hi", prompt=prompt, next="bye"), voice=Voice("en-US", "female"))
    s = begin(flow)
    assert golden(s) == [
        (
            "play",
            (
                (
                    "msg",
                    '<speech language="en-US" gender="female">Hello +6591234567</speech> '
                    '<speech language="zh-HK" gender="male">Ni hao</speech> '
                    "<url>https://example.com/jingle.mp3</url>",
                ),
            ),
        )
    ]


def test_menu_gather_uses_longest_key_for_max_digits():
    s = begin(make_flow(menu("m", {"1": "bye", "10": "bye", "#": "bye"}, text="Choose.", timeout=7, tag="main")))
    assert golden(s) == [
        ("gather", (("msg", "Choose."), ("max_digits", "2"), ("timeout", "7"), ("attempts", "1"), ("tag", "main")))
    ]


def test_collect_gather_uses_max_length():
    s = begin(make_flow(collect("acct", max_length=12, timeout=15)))
    assert golden(s) == [("gather", (("msg", "Enter it."), ("max_digits", "12"), ("timeout", "15"), ("attempts", "1")))]


def test_record_block():
    s = begin(make_flow(record("vm", max_duration=60, tag="voicemail")))
    assert golden(s) == [("record", (("msg", "Leave a message."), ("max_duration", "60"), ("tag", "voicemail")))]


def test_monitor_block():
    s = begin(make_flow(monitor("rec", tag="m")))
    assert golden(s) == [("monitor", (("msg", "This call is recorded."), ("tag", "m")))]
    silent = begin(make_flow(monitor("rec", prompt=())))
    assert golden(silent) == [("monitor", ())]


def test_hold_then_unhold_in_one_run():
    flow = make_flow(
        hold("wait", next="off", music=say("Please hold.")),
        unhold("off", next="bye", tag="back"),
    )
    s = begin(flow)
    assert golden(s) == [("hold", (("msg", "Please hold."),)), ("unhold", (("tag", "back"),))]
    assert [a.step for a in s.actions] == [1, 2]
    assert s.state.step == 2 and s.state.waiting == "unhold" and not s.state.on_hold
    assert s.trace == (("wait", "next"),)
    after = feed(flow, s.state, notify(s.state))
    assert golden(after) == [("hangup", (("msg", "Goodbye."),))]
    assert after.trace == (("off", "next"),)


def test_hold_with_default_music_sends_no_msg():
    s = begin(make_flow(hold("wait", next="off"), unhold("off")))
    assert golden(s)[0] == ("hold", ())


def test_transfer_block_all_parameters_in_order():
    node = transfer(
        "agent",
        to="{{ agent }}",
        prompt=say("Connecting you."),
        caller_id="+6531234567",
        ring_time=20,
        room_profile="ringing",
        failed="bye",
        tag="sales",
    )
    s = begin(make_flow(node, vars={"agent": "+6561234567"}))
    assert golden(s) == [
        (
            "transfer",
            (
                ("dest", "+6561234567"),
                ("msg", "Connecting you."),
                ("caller_id", "+6531234567"),
                ("on_failure", "continue"),
                ("ring_time", "20"),
                ("room_profile", "ringing"),
                ("tag", "sales"),
            ),
        )
    ]


def test_transfer_minimal_and_rooms():
    assert golden(begin(make_flow(transfer("x")))) == [
        ("transfer", (("dest", "+6561234567"), ("on_failure", "hangup")))
    ]
    assert golden(begin(make_flow(transfer("x", to="room:R1.a_b"))))[0][1][0] == ("dest", "room:R1.a_b")
    assert golden(begin(make_flow(transfer("x", to="room:"))))[0][1][0] == ("dest", "room:")


def test_hangup_block_with_message_and_forced():
    assert golden(begin(make_flow(hangup("bye", "See you.", tag="end")))) == [
        ("hangup", (("msg", "See you."), ("tag", "end")))
    ]
    assert golden(begin(make_flow(hangup("bye", None)))) == [("hangup", ())]
    assert golden(begin(make_flow(hangup("bye", "ignored", force=True)))) == [("hangup", (("force", "enabled"),))]


def test_dial_block_for_outbound_flow():
    flow = make_flow(
        dial("call", prompt=say("Hi {{ name }}."), caller_id="+6531234567", max_duration=300, tag="o"),
        play("greet"),
    )
    s = begin(flow, call={"dest": "+6598765432"}, vars={"name": "Tan"})
    assert golden(s) == [
        (
            "dial",
            (
                ("dest", "+6598765432"),
                ("msg", "Hi Tan."),
                ("caller_id", "+6531234567"),
                ("max_duration", "300"),
                ("tag", "o"),
            ),
        )
    ]
    assert s.state.waiting == "dial"


def test_conference_side_call():
    node = conference("conf", ["+6561111111", "{{ boss }}"], room="room:{{ room }}", caller_id="+6531234567", tag="c")
    s = begin(make_flow(node, vars={"boss": "+6562222222", "room": "R9"}))
    assert s.actions == (
        SideCall(
            step=1,
            node="conf",
            api="conference/call",
            params=(
                ("dest", "+6561111111,+6562222222"),
                ("room", "R9"),
                ("caller_id", "+6531234567"),
                ("tag", "c"),
            ),
        ),
    )
    assert s.state.waiting == "side"


def test_http_get_sends_body_as_query_and_post_as_json():
    get = http("api", url="https://api.example.com/a/{{ caller }}", body={"q": "{{ called }}"}, headers={"X-K": "k"})
    s = begin(make_flow(get))
    assert s.actions == (
        HttpCall(
            step=1,
            node="api",
            method="GET",
            url="https://api.example.com/a/+6591234567",
            headers={"X-K": "k"},
            json=None,
            params={"q": CALL["to"]},
            timeout=3.0,
        ),
    )
    post = begin(make_flow(http("api", method="POST", body={"n": "1"}, timeout=5)))
    call = post.actions[0]
    assert isinstance(call, HttpCall)
    assert call.json == {"n": "1"} and call.params == {} and call.timeout == 5.0
    assert post.state.waiting == "http"


def test_every_issued_action_gets_the_next_step_number():
    flow = make_flow(play("a", next="b"), play("b", next="c"), play("c"))
    s = begin(flow)
    steps = [s.actions[0].step]
    for _ in range(3):
        s = feed(flow, s.state, notify(s.state))
        steps.append(s.actions[0].step)
    assert steps == [1, 2, 3, 4]
    assert s.state.path == (("a", "next"), ("b", "next"), ("c", "next"))


def test_caller_id_and_tag_given_when_placing_the_call_win():
    flow = make_flow(dial("call", caller_id="+6531234567", tag="node"), play("greet"))
    s = begin(flow, call={"dest": "+6598765432", "caller_id": "+6539999999", "tag": "campaign-7"})
    assert golden(s) == [("dial", (("dest", "+6598765432"), ("caller_id", "+6539999999"), ("tag", "campaign-7")))]
