"""Hoiio wire mapping: golden request parameters per block, notification parsing and rejection."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from engine.core.actions import Block
from engine.core.events import Billing, MonitorReady
from engine.providers.hoiio.wire import (
    BLOCK_PARAMS,
    BlockError,
    CallLeg,
    NotificationError,
    block_params,
    call_params,
    parse_call_event,
    parse_monitor_ready,
    parse_notification,
    redact,
)

SESSION = "S3839"
NOTIFY = "https://ivr.example.com/hoiio/notify/support?step=4&sig=0123abcd"
MONITOR_NOTIFY = "https://ivr.example.com/hoiio/monitor/support?step=4&sig=0123abcd"


def block(kind: str, *params: tuple[str, str]) -> Block:
    return Block(kind=kind, params=tuple(params), step=4, node="n1")


def form(qs: str) -> dict[str, list[str]]:
    """A notification body as the web layer hands it over: a dict of lists, blanks kept."""
    return parse_qs(qs, keep_blank_values=True, strict_parsing=True)


# --------------------------------------------------------------------------------------------------
# block_params: golden, exact wire parameters

GOLDEN = [
    pytest.param(
        block("dial", ("msg", "Hello from Acme"), ("dest", "+6561234567"), ("caller_id", "private"),
              ("max_duration", "600"), ("tag", "booking-17")),
        [("msg", "Hello from Acme"), ("dest", "+6561234567"), ("caller_id", "private"),
         ("max_duration", "600"), ("tag", "booking-17"), ("notify_url", NOTIFY)],
        id="dial-no-session",
    ),
    pytest.param(
        block("play", ("msg", "Welcome to Acme.")),
        [("session", SESSION), ("msg", "Welcome to Acme."), ("notify_url", NOTIFY)],
        id="play",
    ),
    pytest.param(
        block("gather", ("attempts", "1"), ("timeout", "10"), ("max_digits", "1"),
              ("msg", "Press 1 for sales"), ("tag", "menu")),
        [("session", SESSION), ("msg", "Press 1 for sales"), ("max_digits", "1"), ("timeout", "10"),
         ("attempts", "1"), ("tag", "menu"), ("notify_url", NOTIFY)],
        id="gather-reordered",
    ),
    pytest.param(
        block("record", ("msg", "Leave a message after the tone"), ("max_duration", "120")),
        [("session", SESSION), ("msg", "Leave a message after the tone"), ("max_duration", "120"),
         ("notify_url", NOTIFY)],
        id="record",
    ),
    pytest.param(
        block("monitor", ("msg", "This call may be recorded"), ("tag", "m")),
        [("session", SESSION), ("msg", "This call may be recorded"), ("tag", "m"),
         ("monitor_notify_url", MONITOR_NOTIFY), ("notify_url", NOTIFY)],
        id="monitor",
    ),
    pytest.param(
        block("hold", ("msg", "<url>https://cdn.example.com/hold.mp3</url>")),
        [("session", SESSION), ("msg", "<url>https://cdn.example.com/hold.mp3</url>")],
        id="hold-no-notify-url",
    ),
    pytest.param(block("hold"), [("session", SESSION)], id="hold-default-music"),
    pytest.param(
        block("unhold", ("tag", "back")),
        [("session", SESSION), ("tag", "back"), ("notify_url", NOTIFY)],
        id="unhold",
    ),
    pytest.param(
        block("transfer", ("tag", "t"), ("room_profile", "ringing"), ("ring_time", "25"),
              ("on_failure", "continue"), ("caller_id", "+6560000000"), ("dest", "+6561234567"),
              ("msg", "Connecting you")),
        [("session", SESSION), ("msg", "Connecting you"), ("dest", "+6561234567"),
         ("caller_id", "+6560000000"), ("on_failure", "continue"), ("ring_time", "25"),
         ("room_profile", "ringing"), ("tag", "t"), ("notify_url", NOTIFY)],
        id="transfer-number",
    ),
    pytest.param(
        block("transfer", ("dest", "room:")),
        [("session", SESSION), ("dest", "room:"), ("notify_url", NOTIFY)],
        id="transfer-new-room",
    ),
    pytest.param(
        block("transfer", ("dest", "room:Sales.Room_1"), ("on_failure", "hangup")),
        [("session", SESSION), ("dest", "room:Sales.Room_1"), ("on_failure", "hangup"), ("notify_url", NOTIFY)],
        id="transfer-room",
    ),
    pytest.param(
        block("hangup", ("msg", "Goodbye")),
        [("session", SESSION), ("msg", "Goodbye"), ("notify_url", NOTIFY)],
        id="hangup-message",
    ),
    pytest.param(
        block("hangup", ("force", "enabled")),
        [("session", SESSION), ("force", "enabled"), ("notify_url", NOTIFY)],
        id="hangup-force",
    ),
]


@pytest.mark.parametrize(("blk", "expected"), GOLDEN)
def test_block_params_golden(blk, expected):
    got = block_params(blk, session=SESSION, notify_url=NOTIFY, monitor_notify_url=MONITOR_NOTIFY)
    assert got == expected


def test_every_block_kind_has_a_golden_case():
    covered = {p.values[0].kind for p in GOLDEN}
    assert covered == set(BLOCK_PARAMS)


def test_monitor_without_monitor_notify_url_sends_notify_url_only():
    got = block_params(block("monitor", ("msg", "Recorded")), session=SESSION, notify_url=NOTIFY)
    assert got == [("session", SESSION), ("msg", "Recorded"), ("notify_url", NOTIFY)]


def test_monitor_notify_url_is_ignored_by_other_blocks():
    got = block_params(
        block("play", ("msg", "Hi")), session=SESSION, notify_url=NOTIFY, monitor_notify_url=MONITOR_NOTIFY
    )
    assert ("monitor_notify_url", MONITOR_NOTIFY) not in got


def test_transfer_and_hangup_may_go_without_notify_url():
    assert block_params(block("hangup"), session=SESSION, notify_url=None) == [("session", SESSION)]
    assert block_params(block("transfer", ("dest", "+6561234567")), session=SESSION, notify_url=None) == [
        ("session", SESSION),
        ("dest", "+6561234567"),
    ]


def test_values_are_passed_through_unchanged():
    msg = '<speech language="zh-HK" gender="female">你好</speech> & more'
    got = block_params(block("play", ("msg", msg)), session=SESSION, notify_url=NOTIFY)
    assert got[1] == ("msg", msg)


@pytest.mark.parametrize(
    ("blk", "session", "notify_url", "message"),
    [
        (block("play", ("msg", "x"), ("speed", "2")), SESSION, NOTIFY, "'speed' is not a documented"),
        (block("play", ("msg", "x"), ("msg", "y")), SESSION, NOTIFY, "more than once"),
        (block("play", ("session", "S9")), SESSION, NOTIFY, "'session' is not a documented"),
        (block("play", ("notify_url", NOTIFY)), SESSION, NOTIFY, "'notify_url' is not a documented"),
        (block("play", ("access_token", "x")), SESSION, NOTIFY, "credentials"),
        (block("play", ("app_id", "x")), SESSION, NOTIFY, "credentials"),
        (block("play", ("msg", "x")), SESSION, None, "notify_url is required"),
        (block("gather", ("msg", "x")), SESSION, "", "notify_url is required"),
        (block("play", ("msg", "x")), SESSION, "ftp://example.com/n", "notify_url must be"),
        (block("play", ("msg", "x")), "S 1", NOTIFY, "session must be"),
        (block("play", ("msg", "x")), "", NOTIFY, "session must be"),
        (block("play", ("msg", "x" * 1001)), SESSION, NOTIFY, "msg is longer than 1000"),
        (block("play", ("tag", "t" * 257)), SESSION, NOTIFY, "tag is longer than 256"),
        (block("play", ("msg", "x")), SESSION, NOTIFY + "x" * 4000, "notify_url is longer than 4000"),
        (block("dial", ("msg", "x")), SESSION, NOTIFY, "dest is required"),
        (block("dial", ("dest", "61234567")), SESSION, NOTIFY, "dest must be an E.164"),
        (block("transfer", ("msg", "x")), SESSION, NOTIFY, "dest is required"),
        (block("transfer", ("dest", "room:bad room")), SESSION, NOTIFY, "dest must be"),
        (block("transfer", ("dest", "+6561234567"), ("on_failure", "retry")), SESSION, NOTIFY, "on_failure"),
        (block("transfer", ("dest", "+6561234567"), ("room_profile", "jazz")), SESSION, NOTIFY, "room_profile"),
        (block("transfer", ("dest", "+6561234567"), ("ring_time", "-1")), SESSION, NOTIFY, "ring_time"),
        (block("hangup", ("force", "enabled"), ("msg", "bye")), SESSION, NOTIFY, "force must not"),
        (block("hangup", ("force", "yes")), SESSION, NOTIFY, "force must be"),
        (block("gather", ("max_digits", "256")), SESSION, NOTIFY, "max_digits must be from 0 to 255"),
        (block("gather", ("timeout", "ten")), SESSION, NOTIFY, "timeout must be a whole number"),
        (block("play", ("msg", 5)), SESSION, NOTIFY, "must be strings"),
    ],
)
def test_block_params_rejects_impossible_requests(blk, session, notify_url, message):
    with pytest.raises(BlockError, match=message):
        block_params(blk, session=session, notify_url=notify_url)


def test_unknown_block_kind():
    with pytest.raises(BlockError, match="unknown block kind"):
        block_params(block("answer"), session=SESSION, notify_url=NOTIFY)


# --------------------------------------------------------------------------------------------------
# call_params


@pytest.mark.parametrize(
    ("api", "params", "expected"),
    [
        (
            "voice/call",
            [("notify_url", NOTIFY), ("dest2", "+6522222222"), ("dest1", "+6511111111"), ("tag", "c2c")],
            [("dest1", "+6511111111"), ("dest2", "+6522222222"), ("tag", "c2c"), ("notify_url", NOTIFY)],
        ),
        ("voice/hangup", [("txn_ref", "AA-S-141147")], [("txn_ref", "AA-S-141147")]),
        ("voice/query_status", [("txn_ref", "AA-S-141147")], [("txn_ref", "AA-S-141147")]),
        (
            "conference/call",
            [("room", "R123"), ("dest", "+6511111111,+6522222222"), ("caller_id", "private")],
            [("dest", "+6511111111,+6522222222"), ("room", "R123"), ("caller_id", "private")],
        ),
        (
            "conference/moderate",
            [("action", "mute"), ("txn_ref", "AA-C-1")],
            [("txn_ref", "AA-C-1"), ("action", "mute")],
        ),
    ],
)
def test_call_params_golden(api, params, expected):
    assert call_params(api, params) == expected


@pytest.mark.parametrize(
    ("api", "params", "message"),
    [
        ("voice/conference", [("dest", "+6511111111")], "unsupported API"),
        ("sms/send", [("dest", "+6511111111")], "unsupported API"),
        ("voice/call", [("dest1", "+6511111111")], "dest2 is required"),
        ("voice/hangup", [], "txn_ref is required"),
        ("conference/moderate", [("txn_ref", "AA-C-1"), ("action", "ban")], "action must be"),
        ("conference/call", [("dest", "+65"), ("access_token", "t")], "credentials"),
        ("conference/call", [("dest", "+65"), ("session", "S1")], "not a documented"),
    ],
)
def test_call_params_rejects(api, params, message):
    with pytest.raises(BlockError, match=message):
        call_params(api, params)


def test_redact_drops_only_the_access_token():
    params = [("session", "S1"), ("app_id", "AP-1"), ("access_token", "secret"), ("msg", "hi")]
    assert redact(params) == [("session", "S1"), ("app_id", "AP-1"), ("msg", "hi")]


# --------------------------------------------------------------------------------------------------
# parse_notification: real fixtures

# hoiio-api.md §2.5, verbatim (HoiioSDK.NET HoiioApiDemo.resx), the access key id being a placeholder.
FIXTURE_RECORD = (
    "dest=%2B6500000000&session=S3839&tag=&call_state=ongoing&record_url=http%3A%2F%2Fwww.example.com"
    "%2Frecordings%2Frec-113.mp3%3FExpires%3D1654333131%26AWSAccessKeyId%3DAKIDEXAMPLE%26Signature%3D"
    "Y45fqZszfWTyNg5Gowujt4g42ac%253D&txn_ref=AA-C-2507650"
)


def test_fixture_ongoing_after_record():
    n = parse_notification(form(FIXTURE_RECORD))
    assert n.session == "S3839"
    assert n.block == ""  # the 2012 fixture has no ivr_block
    assert n.call_state == "ongoing"
    assert n.dest == "+6500000000"
    assert n.txn_ref == "AA-C-2507650"
    assert n.tag is None
    assert n.record_url == (
        "http://www.example.com/recordings/rec-113.mp3?Expires=1654333131&AWSAccessKeyId=AKIDEXAMPLE"
        "&Signature=Y45fqZszfWTyNg5Gowujt4g42ac%3D"
    )
    assert n.billing is None
    assert n.step is None
    assert n.extra == {}


def test_answer_notification():
    n = parse_notification(
        form("ivr_block=answer&session=S4643&txn_ref=AA-C-1&from=%2B6591234567&to=%2B6563333333&call_state=ringing")
    )
    assert (n.block, n.call_state, n.caller, n.called) == ("answer", "ringing", "+6591234567", "+6563333333")


def test_answer_without_call_state_is_ringing():
    n = parse_notification(form("ivr_block=answer&session=S4643&from=%2B6591234567&to=%2B6563333333"))
    assert n.call_state == "ringing"


@pytest.mark.parametrize("caller", ["private", "Anonymous", "unknown", "p", ""])
def test_withheld_caller_ids(caller):
    n = parse_notification({"session": ["S1"], "ivr_block": ["answer"], "from": [caller]})
    assert n.caller == (caller or None)


def test_transfer_ended_with_billing():
    n = parse_notification(
        form(
            "ivr_block=transfer&session=S-1234&txn_ref=AA-C-2507650&from=%2B6591234567&to=%2B6563333333"
            "&dest=room%3AHoiioConferenceRoom&call_state=ended&transfer_status=answered&tag="
            "&date=2012-06-06+11%3A10%3A36.0&duration=3&currency=SGD&rate=0.036&debit=0.108"
        )
    )
    assert n.dest == "room:HoiioConferenceRoom"
    assert n.transfer_status == "answered"
    assert n.billing == Billing(date="2012-06-06 11:10:36.0", duration="3", currency="SGD", rate="0.036", debit="0.108")


def test_ended_without_billing_fields_still_has_a_billing_record():
    n = parse_notification(form("ivr_block=hangup&session=S1&call_state=ended"))
    assert n.billing == Billing()


def test_billing_fields_are_ignored_unless_ended():
    n = parse_notification(form("ivr_block=play&session=S1&call_state=ongoing&debit=0.1&currency=SGD"))
    assert n.billing is None
    assert n.extra == {}


def test_gather_digits():
    n = parse_notification(form("ivr_block=gather&session=S1&call_state=ongoing&digits=12%2A%23&tag=menu"))
    assert (n.digits, n.tag) == ("12*#", "menu")


def test_gather_with_nothing_entered():
    n = parse_notification(form("ivr_block=gather&session=S1&call_state=ongoing&digits="))
    assert n.digits == ""


def test_dial_answered_and_failed():
    n = parse_notification(form("ivr_block=dial&session=S1&call_state=ongoing&dest=%2B6561234567&dial_status=answered"))
    assert n.dial_status == "answered"
    n = parse_notification(form("ivr_block=dial&session=S1&call_state=ended&dest=%2B6561234567&dial_status=busy"))
    assert (n.call_state, n.dial_status) == ("ended", "busy")


def test_unknown_fields_are_kept_and_pass_on_params_skipped():
    n = parse_notification(
        form("session=S1&call_state=ongoing&ivr_block=play&step=4&sig=abc&app_state=gather&new_field=x&new_field=y")
    )
    assert n.extra == {"app_state": "gather", "new_field": "x"}
    assert n.step is None


def test_repeated_field_with_the_same_value_is_accepted():
    n = parse_notification({"session": ["S1", "S1"], "call_state": ["ongoing"], "digits": ["5", "5"]})
    assert (n.session, n.digits) == ("S1", "5")


def test_plain_strings_are_accepted_as_single_values():
    n = parse_notification({"session": "S1", "call_state": "ongoing", "ivr_block": "play"})
    assert n.block == "play"


def test_session_of_64_characters_is_accepted():
    assert parse_notification({"session": ["a" * 64], "call_state": ["ongoing"]}).session == "a" * 64


# --------------------------------------------------------------------------------------------------
# parse_notification: malformed input names the field

OK = {"session": ["S1"], "call_state": ["ongoing"], "ivr_block": ["gather"]}


def with_(**changes: list[str] | None) -> dict[str, list[str]]:
    out = {**OK}
    for name, value in changes.items():
        name = {"from_": "from"}.get(name, name)
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param(with_(session=None), "session", id="session-missing"),
        pytest.param(with_(session=[]), "session", id="session-empty-list"),
        pytest.param(with_(session=[""]), "session", id="session-empty"),
        pytest.param(with_(session=["S1", "S2"]), "session", id="session-repeated-different"),
        pytest.param(with_(session=["S 1"]), "session", id="session-space"),
        pytest.param(with_(session=["S1/../x"]), "session", id="session-slash"),
        pytest.param(with_(session=["a" * 65]), "session", id="session-too-long"),
        pytest.param(with_(session=["S1\r\nX"]), "session", id="session-crlf"),
        pytest.param(with_(digits=["12a"]), "digits", id="digits-letter"),
        pytest.param(with_(digits=["1" * 256]), "digits", id="digits-too-many"),
        pytest.param(with_(digits=["1", "2"]), "digits", id="digits-repeated-different"),
        pytest.param(with_(digits=["1\n"]), "digits", id="digits-newline"),
        pytest.param(with_(digits=["１２"]), "digits", id="digits-fullwidth"),
        pytest.param(with_(call_state=["answered"]), "call_state", id="call-state-unknown"),
        pytest.param(with_(call_state=["ENDED"]), "call_state", id="call-state-case"),
        pytest.param(with_(call_state=None), "call_state", id="call-state-missing"),
        pytest.param(with_(call_state=["ongoing", "ended"]), "call_state", id="call-state-repeated"),
        pytest.param(with_(ivr_block=["conference"]), "ivr_block", id="ivr-block-unknown"),
        pytest.param(with_(from_=["6591234567"]), "from", id="from-no-plus"),
        pytest.param(with_(from_=["+0591234567"]), "from", id="from-leading-zero"),
        pytest.param(with_(from_=["+65 9123 4567"]), "from", id="from-spaces"),
        pytest.param(with_(from_=["+1234567890123456"]), "from", id="from-too-long"),
        pytest.param(with_(to=["private"]), "to", id="to-private"),
        pytest.param(with_(to=["+65abc"]), "to", id="to-letters"),
        pytest.param(with_(dest=["room:bad room"]), "dest", id="dest-bad-room"),
        pytest.param(with_(dest=["sip:a@b"]), "dest", id="dest-sip"),
        pytest.param(with_(record_url=["ftp://example.com/r.mp3"]), "record_url", id="record-url-ftp"),
        pytest.param(with_(record_url=["javascript:alert(1)"]), "record_url", id="record-url-js"),
        pytest.param(with_(record_url=["/recordings/r.mp3"]), "record_url", id="record-url-relative"),
        pytest.param(with_(record_url=["http://exa mple.com/r.mp3"]), "record_url", id="record-url-space"),
        pytest.param(with_(txn_ref=["AA C 1"]), "txn_ref", id="txn-ref-space"),
        pytest.param(with_(transfer_status=["answered; drop"]), "transfer_status", id="transfer-status"),
        pytest.param(with_(dial_status=["x" * 33]), "dial_status", id="dial-status-long"),
        pytest.param(with_(tag=["a\x00b"]), "tag", id="tag-nul"),
        pytest.param(with_(tag=["t" * 2001]), "tag", id="tag-too-long"),
        pytest.param(with_(tag=["a", "b"]), "tag", id="tag-repeated-different"),
        pytest.param(with_(call_state=["ended"], debit=["1\r\n2"]), "debit", id="billing-crlf"),
        pytest.param(with_(unknown=["x" * 2001]), "unknown", id="extra-too-long"),
        pytest.param(with_(ivr_block=["x" * 5000]), "ivr_block", id="ivr-block-huge"),
    ],
)
def test_malformed_notifications_name_the_field(fields, field):
    with pytest.raises(NotificationError) as info:
        parse_notification(fields)
    assert info.value.field == field
    assert info.value.reason
    assert str(info.value).startswith(f"{field}: ")


def test_reason_never_repeats_the_value():
    with pytest.raises(NotificationError) as info:
        parse_notification(with_(from_=["+65 9123 4567"]))
    assert "9123" not in str(info.value)


def test_too_many_unknown_fields():
    fields = {**OK, **{f"x{i}": ["1"] for i in range(51)}}
    with pytest.raises(NotificationError, match="unknown fields"):
        parse_notification(fields)


def test_overlong_field_name():
    with pytest.raises(NotificationError, match="field name"):
        parse_notification({**OK, "n" * 101: ["1"]})


def test_non_text_value():
    with pytest.raises(NotificationError) as info:
        parse_notification({**OK, "digits": [b"1"]})
    assert info.value.field == "digits"


# --------------------------------------------------------------------------------------------------
# Other notification kinds

# hoiio-api.md §5.1, verbatim (HoiioSDK.NET HoiioApiDemo.Designer.cs).
FIXTURE_VOICE_CALL = (
    "duration=0&rate=0.036&dest2=%2B6500000000&call_status_dest1=answered&call_status_dest2=failed&tag="
    "&debit=0.000&date=2012-06-06+11%3A10%3A36.0&dest1=%2B6500000000&txn_ref=AA-C-2517398&currency=SGD"
)


def test_voice_call_fixture():
    event = parse_call_event(form(FIXTURE_VOICE_CALL))
    assert event.api == "voice/call"
    assert event.txn_ref == "AA-C-2517398"
    assert event.legs == (CallLeg("+6500000000", "answered"), CallLeg("+6500000000", "failed"))
    assert event.tag is None
    assert event.billing == Billing(
        date="2012-06-06 11:10:36.0", duration="0", currency="SGD", rate="0.036", debit="0.000"
    )
    assert event.extra == {}


def test_conference_leg():
    event = parse_call_event(
        form("dest=%2B6511111111&call_status_dest=busy&txn_ref=AA-C-141147&tag=conf&date=2012-06-06+11%3A10%3A36"
             "&duration=0&currency=SGD&rate=0.02&debit=0.00&room=R123")
    )
    assert event.api == "conference/call"
    assert event.legs == (CallLeg("+6511111111", "busy"),)
    assert event.tag == "conf"
    assert event.extra == {"room": "R123"}


@pytest.mark.parametrize(
    ("qs", "field"),
    [
        ("dest=%2B6511111111&call_status_dest=busy", "txn_ref"),
        ("txn_ref=AA-1&tag=x", "dest"),
        ("txn_ref=AA-1&dest1=6511&dest2=%2B6511111111", "dest1"),
        ("txn_ref=AA-1&dest=%2B6511111111&call_status_dest=no+answer", "call_status_dest"),
        ("txn_ref=AA-1&txn_ref=AA-2&dest=%2B6511111111", "txn_ref"),
    ],
)
def test_call_event_rejects(qs, field):
    with pytest.raises(NotificationError) as info:
        parse_call_event(form(qs))
    assert info.value.field == field


def test_monitor_ready():
    ready = parse_monitor_ready(form("session=S1&record_url=https%3A%2F%2Fr.example.com%2Fm.mp3&call_state=ended"))
    assert ready == MonitorReady(session="S1", record_url="https://r.example.com/m.mp3")
    with pytest.raises(NotificationError) as info:
        parse_monitor_ready(form("session=S1&call_state=ended"))
    assert info.value.field == "record_url"
