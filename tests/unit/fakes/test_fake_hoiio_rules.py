"""Every stateless request rule of the fake Hoiio: one case per rule, each refused with its status.

Each case starts from a request that is accepted as is (``test_base_request_is_accepted`` proves
it, for GET and POST) and changes one parameter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fake_hoiio_support import NOTIFY, ManualClock

from engine.fakes import STATUSES, CallerScript, FakeHoiio
from engine.fakes.hoiio_rules import ENDPOINTS, SUCCESS, check_msg

ROOT = Path(__file__).resolve().parents[3]
OTHER = "+6591110000"

BASE: dict[str, dict[str, str]] = {
    "ivr/start/dial": {"dest": OTHER, "notify_url": NOTIFY},
    "ivr/middle/play": {"msg": "hello", "notify_url": NOTIFY},
    "ivr/middle/gather": {"msg": "press 1", "notify_url": NOTIFY},
    "ivr/middle/record": {"msg": "speak", "notify_url": NOTIFY},
    "ivr/middle/monitor": {"notify_url": NOTIFY},
    "ivr/middle/hold": {},
    "ivr/middle/unhold": {"notify_url": NOTIFY},
    "ivr/end/transfer": {"dest": "+6592220000", "notify_url": NOTIFY},
    "ivr/end/hangup": {},
    "voice/call": {"dest2": "+6593330000"},
    "voice/hangup": {},
    "voice/query_status": {},
    "conference/call": {"dest": "+6594440000"},
    "conference/moderate": {"action": "mute"},
}


def prepare(fake: FakeHoiio, answered, endpoint: str) -> dict[str, str]:
    """The state a request to ``endpoint`` needs: a ready session, a held one, or a call's txn_ref."""
    if endpoint.startswith("ivr/") and endpoint != "ivr/start/dial":
        sid = answered(on=fake)
        if endpoint == "ivr/middle/unhold":
            assert fake.call_api("ivr/middle/hold", session=sid)["status"] == SUCCESS
        return {"session": sid}
    if endpoint in ("voice/hangup", "voice/query_status"):
        return {"txn_ref": fake.call_api("voice/call", dest2="+6595550000")["txn_ref"]}
    if endpoint == "conference/moderate":
        fake.script_outbound(CallerScript(stay_on_line=True))
        return {"txn_ref": fake.call_api("conference/call", dest="+6596660000")["txn_refs"][0]}
    return {}


def request(fake: FakeHoiio, answered, endpoint: str, changes: dict[str, str | None], method: str = "POST") -> dict:
    params = {**BASE[endpoint], **prepare(fake, answered, endpoint), **changes}
    return fake.call_api(endpoint, method=method, **{k: v for k, v in params.items() if v is not None})


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_base_request_is_accepted(fake, answered, endpoint, method):
    assert request(fake, answered, endpoint, {}, method)["status"] == SUCCESS


# (rule, endpoint, changed parameters (None removes one), documented status)
# fmt: off
CASES: list[tuple[str, str, dict[str, str | None], str]] = [
    # msg
    ("msg over 1000 characters", "ivr/middle/play", {"msg": "a" * 1001}, "error_msg_invalid_length"),
    ("msg of 1000 characters is fine", "ivr/middle/play", {"msg": "a" * 1000}, SUCCESS),
    ("msg length checked on every block with msg", "ivr/end/transfer", {"msg": "a" * 1001}, "error_msg_invalid_length"),
    ("msg length on hangup", "ivr/end/hangup", {"msg": "a" * 1001}, "error_msg_invalid_length"),
    ("msg length on dial", "ivr/start/dial", {"msg": "a" * 1001}, "error_msg_invalid_length"),
    ("plain text with & is fine", "ivr/middle/play", {"msg": "Tom & Jerry"}, SUCCESS),
    ("speech markup", "ivr/middle/play",
     {"msg": 'Hi <speech language="zh-HK" gender="female">請稍等</speech> bye'}, SUCCESS),
    ("url markup", "ivr/middle/gather", {"msg": "<url>https://example.com/a/b.WAV?v=1&amp;x=2</url>"}, SUCCESS),
    ("unclosed speech", "ivr/middle/play", {"msg": "<speech>hello"}, "error_msg_invalid_xml"),
    ("stray closing tag", "ivr/middle/play", {"msg": "hello</speech>"}, "error_msg_invalid_xml"),
    ("unknown element", "ivr/middle/play", {"msg": "<b>hello</b>"}, "error_msg_invalid_xml"),
    ("nested elements", "ivr/middle/play",
     {"msg": "<speech><url>http://e.com/a.mp3</url></speech>"}, "error_msg_invalid_xml"),
    ("unknown attribute", "ivr/middle/play", {"msg": "<speech voice='x'>hi</speech>"}, "error_msg_invalid_xml"),
    ("bare & inside markup", "ivr/middle/play", {"msg": "a & b <url>http://e.com/a.mp3</url>"},
     "error_msg_invalid_xml"),
    ("broken tag", "ivr/middle/play", {"msg": "<speech language=en>hi</speech>"}, "error_msg_invalid_xml"),
    ("unknown language", "ivr/middle/play",
     {"msg": '<speech language="xx-YY">hi</speech>'}, "error_msg_invalid_language"),
    ("gender not male/female", "ivr/middle/play",
     {"msg": '<speech language="en" gender="robot">hi</speech>'}, "error_msg_invalid_gender"),
    ("url not http(s)", "ivr/middle/play", {"msg": "<url>ftp://e.com/a.mp3</url>"}, "error_msg_invalid_url"),
    ("url without host", "ivr/middle/play", {"msg": "<url>http:///a.mp3</url>"}, "error_msg_invalid_url"),
    ("url not mp3/wav/gsm", "ivr/middle/play", {"msg": "<url>https://e.com/a.ogg</url>"},
     "error_msg_invalid_file_format"),
    ("play needs msg", "ivr/middle/play", {"msg": None}, "error_msg_param_missing"),
    # tag
    ("tag over 256", "ivr/middle/play", {"tag": "t" * 257}, "error_tag_invalid_length"),
    ("tag of 256 is fine", "ivr/middle/play", {"tag": "t" * 256}, SUCCESS),
    ("tag on voice/call", "voice/call", {"tag": "t" * 257}, "error_tag_invalid_length"),
    ("tag on conference/call", "conference/call", {"tag": "t" * 257}, "error_tag_invalid_length"),
    # notify_url
    ("notify_url over 4000", "ivr/middle/play", {"notify_url": "http://e.com/" + "a" * 3988},
     "error_invalid_notify_url"),
    ("notify_url of 4000 is fine", "ivr/middle/play", {"notify_url": "http://e.com/" + "a" * 3987}, SUCCESS),
    ("notify_url not http(s)", "ivr/middle/play", {"notify_url": "ftp://e.com/n"}, "error_invalid_notify_url"),
    ("notify_url not a URL", "ivr/middle/gather", {"notify_url": "not a url"}, "error_invalid_notify_url"),
    ("notify_url without host", "ivr/start/dial", {"notify_url": "https:///n"}, "error_invalid_notify_url"),
    ("notify_url bad port", "ivr/end/transfer", {"notify_url": "http://e.com:99999/n"}, "error_invalid_notify_url"),
    ("notify_url on voice/call", "voice/call", {"notify_url": "mailto:x@e.com"}, "error_invalid_notify_url"),
    ("monitor_notify_url checked too", "ivr/middle/monitor", {"monitor_notify_url": "nope"},
     "error_invalid_notify_url"),
    ("gather needs notify_url", "ivr/middle/gather", {"notify_url": None}, "error_notify_url_param_missing"),
    ("record needs notify_url", "ivr/middle/record", {"notify_url": None}, "error_notify_url_param_missing"),
    # destinations
    ("dial dest without +", "ivr/start/dial", {"dest": "6591234567"}, "error_dest_invalid"),
    ("dial dest with leading 0", "ivr/start/dial", {"dest": "+0591234567"}, "error_dest_invalid"),
    ("dial dest too long", "ivr/start/dial", {"dest": "+6591234567890123"}, "error_dest_invalid"),
    ("transfer dest not E.164", "ivr/end/transfer", {"dest": "sales"}, "error_dest_invalid"),
    ("transfer room with bad characters", "ivr/end/transfer", {"dest": "room:my room"}, "error_dest_invalid"),
    ("transfer room over 32", "ivr/end/transfer", {"dest": "room:" + "r" * 33}, "error_dest_invalid"),
    ("transfer room of 32 is fine", "ivr/end/transfer", {"dest": "room:" + "r" * 32}, SUCCESS),
    ("transfer to a new room", "ivr/end/transfer", {"dest": "room:"}, SUCCESS),
    ("transfer room with . and _", "ivr/end/transfer", {"dest": "room:Team_1.a"}, SUCCESS),
    ("conference room bad characters", "conference/call", {"room": "my-room"}, "error_invalid_room"),
    ("conference room over 32", "conference/call", {"room": "r" * 33}, "error_invalid_room"),
    ("conference 9 numbers", "conference/call",
     {"dest": ",".join(f"+659000000{i}" for i in range(9))}, "error_dest_invalid"),
    ("conference 8 numbers is fine", "conference/call",
     {"dest": ",".join(f"+659000000{i}" for i in range(8))}, SUCCESS),
    ("conference empty entry", "conference/call", {"dest": "+6590000001,,+6590000002"}, "error_dest_invalid"),
    ("conference duplicate number", "conference/call", {"dest": "+6590000001,+6590000001"}, "error_dest_invalid"),
    ("conference number not E.164", "conference/call", {"dest": "+6590000001,12345"}, "error_dest_invalid"),
    ("voice/call dest1 invalid", "voice/call", {"dest1": "123"}, "error_dest1_invalid"),
    ("voice/call dest2 invalid", "voice/call", {"dest2": "abc"}, "error_dest2_invalid"),
    ("voice/call same numbers", "voice/call", {"dest1": "+6593330000"}, "error_same_dest1_dest2"),
    ("voice/call dest2 = registered number", "voice/call", {"dest2": "+6560000000"}, "error_same_dest1_dest2"),
    # caller_id
    ("dial caller_id not E.164", "ivr/start/dial", {"caller_id": "12345"}, "error_caller_id_invalid"),
    ("transfer caller_id not E.164", "ivr/end/transfer", {"caller_id": "Sales"}, "error_caller_id_invalid"),
    ("voice/call caller_id", "voice/call", {"caller_id": "+"}, "error_caller_id_invalid"),
    ("conference caller_id", "conference/call", {"caller_id": "anonymous"}, "error_caller_id_invalid"),
    ("caller_id private is fine", "ivr/end/transfer", {"caller_id": "private"}, SUCCESS),
    # transfer options
    ("on_failure not hangup/continue", "ivr/end/transfer", {"on_failure": "retry"}, "error_on_failure_invalid"),
    ("on_failure continue is fine", "ivr/end/transfer", {"on_failure": "continue"}, SUCCESS),
    ("room_profile not music/ringing", "ivr/end/transfer", {"dest": "room:R1", "room_profile": "jazz"},
     "error_invalid_room_profile"),
    ("room_profile ringing is fine", "ivr/end/transfer", {"dest": "room:R1", "room_profile": "ringing"}, SUCCESS),
    ("ring_time zero", "ivr/end/transfer", {"ring_time": "0"}, "error_invalid_ring_time"),
    ("ring_time not a number", "ivr/end/transfer", {"ring_time": "ten"}, "error_invalid_ring_time"),
    ("ring_time negative", "ivr/end/transfer", {"ring_time": "-5"}, "error_invalid_ring_time"),
    # integers
    ("dial max_duration zero", "ivr/start/dial", {"max_duration": "0"}, "error_invalid_max_duration"),
    ("record max_duration not a number", "ivr/middle/record", {"max_duration": "1.5"},
     "error_invalid_max_duration"),
    ("voice/call max_duration", "voice/call", {"max_duration": "-1"}, "error_invalid_max_duration"),
    ("gather timeout zero", "ivr/middle/gather", {"timeout": "0"}, "error_invalid_timeout"),
    ("gather attempts not a number", "ivr/middle/gather", {"attempts": "x"}, "error_invalid_attempts"),
    ("gather max_digits over 255", "ivr/middle/gather", {"max_digits": "256"}, "error_invalid_max_digits"),
    ("gather max_digits negative", "ivr/middle/gather", {"max_digits": "-1"}, "error_invalid_max_digits"),
    ("gather max_digits 0 is fine", "ivr/middle/gather", {"max_digits": "0"}, SUCCESS),
    ("gather max_digits 255 is fine", "ivr/middle/gather", {"max_digits": "255", "timeout": "5", "attempts": "3"},
     SUCCESS),
    # hangup
    ("force other than enabled", "ivr/end/hangup", {"force": "yes"}, "error_invalid_force"),
    ("force with msg", "ivr/end/hangup", {"force": "enabled", "msg": "bye"}, "error_invalid_force"),
    ("force alone is fine", "ivr/end/hangup", {"force": "enabled"}, SUCCESS),
    # moderate
    ("moderate action not kick/mute/unmute", "conference/moderate", {"action": "ban"}, "error_invalid_action"),
    ("moderate kick is fine", "conference/moderate", {"action": "kick"}, SUCCESS),
    ("moderate unmute is fine", "conference/moderate", {"action": "unmute"}, SUCCESS),
]
# fmt: on


@pytest.mark.parametrize(("rule", "endpoint", "changes", "status"), CASES, ids=[c[0] for c in CASES])
def test_rule(fake, answered, rule, endpoint, changes, status):
    assert request(fake, answered, endpoint, changes)["status"] == status


REQUIRED = [(endpoint, p.name) for endpoint, spec in sorted(ENDPOINTS.items()) for p in spec if p.required]


@pytest.mark.parametrize(("endpoint", "name"), REQUIRED, ids=[f"{e}:{n}" for e, n in REQUIRED])
@pytest.mark.parametrize("value", [None, ""], ids=["absent", "empty"])
def test_required_parameter_missing(fake, answered, endpoint, name, value):
    assert request(fake, answered, endpoint, {name: value})["status"] == f"error_{name}_param_missing"


def test_required_parameters_are_the_documented_ones():
    assert sorted(REQUIRED) == sorted([
        ("conference/call", "dest"), ("conference/moderate", "action"), ("conference/moderate", "txn_ref"),
        ("ivr/end/hangup", "session"), ("ivr/end/transfer", "dest"), ("ivr/end/transfer", "session"),
        ("ivr/middle/gather", "notify_url"), ("ivr/middle/gather", "session"), ("ivr/middle/hold", "session"),
        ("ivr/middle/monitor", "session"), ("ivr/middle/play", "msg"), ("ivr/middle/play", "session"),
        ("ivr/middle/record", "notify_url"), ("ivr/middle/record", "session"), ("ivr/middle/unhold", "session"),
        ("ivr/start/dial", "dest"), ("voice/call", "dest2"), ("voice/hangup", "txn_ref"),
        ("voice/query_status", "txn_ref"),
    ])  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Method, bytes, credentials: the same on every endpoint


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_other_http_methods_are_refused(fake, endpoint, method):
    response = fake.wsgi_app.test_client().open(f"/open/{endpoint}", method=method)
    assert response.status_code == 200
    assert response.get_json() == {"status": "error_invalid_http_method"}


@pytest.mark.parametrize(
    "body",
    [b"app_id=fake-app&access_token=fake-token&msg=\xff\xfe", b"app_id=fake-app&msg=%FF", b"app_id=fake%00app"],
    ids=["raw non-UTF-8", "percent-encoded non-UTF-8", "NUL byte"],
)
def test_unreadable_bytes_are_malformed(fake, body):
    response = fake.wsgi_app.test_client().post(
        "/open/ivr/middle/play", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.get_json() == {"status": "error_malformed_params"}


def test_unreadable_query_string_is_malformed(fake):
    response = fake.wsgi_app.test_client().get("/open/voice/query_status?txn_ref=%C3%28")
    assert response.get_json() == {"status": "error_malformed_params"}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    ("credentials", "status"),
    [
        ({"access_token": "fake-token"}, "error_app_id_param_missing"),
        ({"app_id": "fake-app"}, "error_access_token_param_missing"),
        ({"app_id": "fake-app", "access_token": ""}, "error_access_token_param_missing"),
        ({"app_id": "other-app", "access_token": "fake-token"}, "error_invalid_app_id"),
        ({"app_id": "fake-app", "access_token": "wrong"}, "error_invalid_access_token"),
        ({}, "error_app_id_param_missing"),
    ],
    ids=["no app_id", "no token", "empty token", "wrong app_id", "wrong token", "none"],
)
def test_credentials(fake, endpoint, credentials, status):
    assert fake.call_api(endpoint, auth=False, **credentials, **BASE[endpoint])["status"] == status


def test_credentials_are_checked_before_parameters(fake):
    assert fake.call_api("ivr/middle/play", auth=False, app_id="x", access_token="y")["status"] == (
        "error_invalid_app_id"
    )


def test_rate_limit_of_60_per_minute(make_fake):
    clock = ManualClock()
    fake = make_fake(clock=clock)
    txn_ref = fake.call_api("voice/call", dest2="+6593330000")["txn_ref"]
    assert all(fake.call_api("voice/hangup", txn_ref=txn_ref)["status"] == SUCCESS for _ in range(60))
    assert fake.call_api("voice/hangup", txn_ref=txn_ref)["status"] == "error_rate_limit_exceeded"
    assert fake.call_api("voice/query_status", txn_ref=txn_ref)["status"] == SUCCESS  # not limited
    clock.advance(60)
    assert fake.call_api("voice/hangup", txn_ref=txn_ref)["status"] == SUCCESS


# --------------------------------------------------------------------------------------------------
# Parameters and responses


def test_post_reads_form_then_query(fake):
    client = fake.wsgi_app.test_client()
    response = client.post(
        "/open/voice/call?dest2=%2B6599999999&tag=from-query",
        data={"app_id": "fake-app", "access_token": "fake-token", "dest2": "+6593330000"},
    )
    assert response.get_json()["status"] == SUCCESS
    assert fake.log[-1].params["dest2"] == "+6593330000"  # the body wins
    assert fake.log[-1].params["tag"] == "from-query"


def test_json_body_is_not_read(fake):
    response = fake.wsgi_app.test_client().post("/open/voice/call", json={"app_id": "fake-app"})
    assert response.get_json() == {"status": "error_app_id_param_missing"}


def test_errors_are_http_200_with_string_values(fake):
    response = fake.wsgi_app.test_client().get("/open/ivr/start/dial", query_string={"app_id": "fake-app"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    ok = fake.call_api("ivr/start/dial", dest=OTHER, notify_url=NOTIFY)
    assert all(isinstance(value, str) for value in ok.values())


def test_unknown_endpoint_is_404(fake):
    assert fake.wsgi_app.test_client().post("/open/ivr/middle/dance").status_code == 404


def test_log_redacts_token_and_names_ignored_parameters(fake):
    fake.call_api("voice/call", dest2="+6593330000", max_digit="3")
    record = fake.log[-1]
    assert record.params["access_token"] == "***"
    assert record.ignored == ("max_digit",)
    assert record.endpoint == "voice/call" and record.method == "POST" and record.status == SUCCESS


# --------------------------------------------------------------------------------------------------
# msg markup on its own


@pytest.mark.parametrize(
    ("msg", "status"),
    [
        ("<speech/>", None),
        ("<url/>", "error_msg_invalid_url"),
        ("<speech language='en-GB' gender='male'>x</speech><url>http://e.com/b.gsm</url>", None),
        ('<speech language="en" language="en">x</speech>', "error_msg_invalid_xml"),
        ("&#0; <url>http://e.com/b.gsm</url>", "error_msg_invalid_xml"),
        ("&#65; <speech>x</speech>", None),
        ("<url> http://e.com/b.mp3 </url>", None),
        ("<url>http://e.com/b.mp3.txt</url>", "error_msg_invalid_file_format"),
        ("<!DOCTYPE x><speech>x</speech>", "error_msg_invalid_xml"),
        ("<![CDATA[x]]>", "error_msg_invalid_xml"),
        ("</url>", "error_msg_invalid_xml"),
        ("<url>http://e.com/a.mp3</url attr='x'>", "error_msg_invalid_xml"),
    ],
)
def test_msg_markup(msg, status):
    assert check_msg(msg) == status


# --------------------------------------------------------------------------------------------------
# The list of statuses and the tests stay in step

#: Enforced statuses asserted in other test modules of this folder (checked below).
ASSERTED_ELSEWHERE = {
    "error_invalid_session": "test_fake_hoiio_sessions.py",
    "error_session_access_denied": "test_fake_hoiio_sessions.py",
    "error_session_ended": "test_fake_hoiio_sessions.py",
    "error_session_not_ready": "test_fake_hoiio_sessions.py",
    "error_session_not_on_hold": "test_fake_hoiio_sessions.py",
    "error_monitor_in_progress": "test_fake_hoiio_sessions.py",
    "error_concurrent_call_limit_reached": "test_fake_hoiio_sessions.py",
    "error_invalid_txn_ref": "test_fake_hoiio_sessions.py",
    "error_txn_ref_access_denied": "test_fake_hoiio_sessions.py",
}


def _asserted_here() -> set[str]:
    statuses = {status for *_, status in CASES}
    statuses |= {f"error_{name}_param_missing" for _, name in REQUIRED}
    statuses |= {"error_app_id_param_missing", "error_access_token_param_missing", "error_invalid_app_id",
                 "error_invalid_access_token", "error_invalid_http_method", "error_malformed_params",
                 "error_rate_limit_exceeded"}  # fmt: skip
    return statuses


def test_every_enforced_status_has_a_test():
    enforced = {s.name for s in STATUSES.values() if s.enforced}
    assert enforced == _asserted_here() | set(ASSERTED_ELSEWHERE)


@pytest.mark.parametrize("status", sorted(ASSERTED_ELSEWHERE))
def test_statuses_asserted_elsewhere_really_are(status):
    text = (Path(__file__).parent / ASSERTED_ELSEWHERE[status]).read_text()
    assert f'"{status}"' in text


def test_the_fake_names_only_listed_statuses():
    names = set()
    for source in (ROOT / "engine" / "fakes").glob("*.py"):
        names |= set(re.findall(r"[\"'](error_[a-z0-9_]+|success_ok)[\"']", source.read_text()))
    assert names <= set(STATUSES)


def test_statuses_say_where_they_come_from():
    assert {s.source for s in STATUSES.values()} <= {"doc", "sdk", "inferred"}
    assert all(s.meaning for s in STATUSES.values())
