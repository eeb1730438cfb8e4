"""HoiioClient against a scripted transport (an HTTPAdapter mounted on the session) and a fake clock."""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Callable
from http.client import RemoteDisconnected
from urllib.parse import parse_qsl

import pytest
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from engine.core.actions import Block
from engine.providers import base as base_module
from engine.providers.base import Category, Provider, SendResult
from engine.providers.hoiio.client import HoiioClient, HoiioClientError
from engine.providers.hoiio.wire import BlockError

API = "https://hoiio.test/open"
APP_ID = "AP-app-1"
TOKEN = "tok/SECRET+123=="  # characters that change under URL encoding
NOTIFY = "https://ivr.example.com/hoiio/notify/support?step=3&sig=abc"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


Step = Callable[[requests.PreparedRequest, tuple[float, float]], requests.Response]


class ScriptedAdapter(HTTPAdapter):
    """Plays one scripted step per request: a response, an exception, or a callable."""

    def __init__(self, script: list, clock: FakeClock) -> None:
        super().__init__()
        self.script = list(script)
        self.clock = clock
        self.sent: list[requests.PreparedRequest] = []
        self.timeouts: list[tuple[float, float]] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.sent.append(request)
        self.timeouts.append(timeout)
        assert self.script, "more requests than scripted"
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step(request, timeout)

    def bodies(self) -> list[list[tuple[str, str]]]:
        return [parse_qsl(r.body.decode(), keep_blank_values=True) for r in self.sent]


def reply(status: int = 200, body=None, *, raw: bytes | None = None, headers=None, takes: float = 0.0,
          clock: FakeClock | None = None) -> Step:
    def step(request, timeout):
        if clock is not None:
            clock.now += takes
        response = requests.Response()
        response.status_code = status
        content = raw if raw is not None else json.dumps(body).encode()
        response.raw = io.BytesIO(content)
        response.headers = CaseInsensitiveDict(headers or {"Content-Type": "application/json"})
        response.url = request.url
        response.request = request
        return response

    return step


OK = reply(body={"status": "success_ok"})


def slow(clock: FakeClock, seconds: float, then: Step) -> Step:
    """A server taking ``seconds`` to answer: a read timeout when that exceeds the read timeout."""

    def step(request, timeout):
        read_timeout = timeout[1]
        if seconds > read_timeout:
            clock.now += read_timeout
            raise requests.exceptions.ReadTimeout(f"Read timed out. (read timeout={read_timeout})")
        clock.now += seconds
        return then(request, timeout)

    return step


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, "/open/ivr/middle/play", reason))


def dropped() -> requests.ConnectionError:
    return requests.ConnectionError(
        ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection without response"))
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, script: list, **kwargs) -> tuple[HoiioClient, ScriptedAdapter]:
    adapter = ScriptedAdapter(script, clock)

    def factory() -> requests.Session:
        s = requests.Session()
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        return s

    kwargs.setdefault("rng", lambda: 0.5)
    client = HoiioClient(API, APP_ID, TOKEN, session_factory=factory, sleep=clock.sleep, clock=clock, **kwargs)
    return client, adapter


def block(kind: str, *params: tuple[str, str]) -> Block:
    return Block(kind=kind, params=tuple(params), step=3, node="n")


PLAY = block("play", ("msg", "Welcome to Acme."))
HANGUP = block("hangup", ("msg", "Goodbye"))


def send(client: HoiioClient, blk: Block = PLAY) -> SendResult:
    return client.send_block(blk, session="S3839", notify_url=NOTIFY)


# --------------------------------------------------------------------------------------------------
# The request on the wire


def test_success_posts_the_form_with_credentials(clock):
    client, adapter = make(clock, [reply(body={"status": "success_ok", "txn_ref": "AA-1"})])
    result = send(client)
    assert result.ok and result.status == "success_ok" and result.category is Category.OK
    assert (result.attempts, result.http_status, result.maybe_delivered, result.resent) == (1, 200, False, False)
    assert result.data == {"status": "success_ok", "txn_ref": "AA-1"}
    assert result.endpoint == "ivr/middle/play"
    (request,) = adapter.sent
    assert request.method == "POST"
    assert request.url == "https://hoiio.test/open/ivr/middle/play"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert adapter.bodies() == [[
        ("session", "S3839"), ("msg", "Welcome to Acme."), ("notify_url", NOTIFY),
        ("app_id", APP_ID), ("access_token", TOKEN),
    ]]
    assert result.request_params == (
        ("session", "S3839"), ("msg", "Welcome to Acme."), ("notify_url", NOTIFY), ("app_id", APP_ID),
    )
    assert adapter.timeouts == [(2.0, 5.0)]


def test_dial_goes_to_the_start_endpoint_without_session(clock):
    client, adapter = make(clock, [reply(body={"status": "success_ok", "txn_ref": "AA-1", "session": "S-1"})])
    result = client.send_block(block("dial", ("dest", "+6561234567")), session="ignored", notify_url=NOTIFY)
    assert result.data["session"] == "S-1"
    assert adapter.sent[0].url.endswith("/ivr/start/dial")
    assert [n for n, _ in adapter.bodies()[0]] == ["dest", "notify_url", "app_id", "access_token"]


def test_call_posts_documented_params(clock):
    client, adapter = make(clock, [reply(body={"status": "success_ok", "txn_refs": ["AA-C-1"], "room": "R1"})])
    result = client.call("conference/call", (("room", "R1"), ("dest", "+6511111111")))
    assert result.ok and result.data["room"] == "R1"
    assert adapter.sent[0].url == "https://hoiio.test/open/conference/call"
    assert adapter.bodies()[0][:2] == [("dest", "+6511111111"), ("room", "R1")]


def test_impossible_requests_fail_before_any_io(clock):
    calls = []
    client = HoiioClient(API, APP_ID, TOKEN, session_factory=lambda: calls.append(1) or requests.Session())
    with pytest.raises(BlockError):
        client.send_block(block("play", ("volume", "11")), session="S1", notify_url=NOTIFY)
    with pytest.raises(BlockError):
        client.call("sms/send", [("dest", "+6511111111")])
    with pytest.raises(BlockError):
        client.call("voice/hangup", [("txn_ref", "AA-1"), ("access_token", "x")])
    assert calls == []


def test_is_a_provider(clock):
    client, _ = make(clock, [])
    assert isinstance(client, Provider)
    assert client.name == "hoiio"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_url": "ftp://x", "app_id": "a", "access_token": "t"},
        {"api_url": API, "app_id": "", "access_token": "t"},
        {"api_url": API, "app_id": "a", "access_token": ""},
    ],
)
def test_rejects_bad_configuration(kwargs):
    with pytest.raises(ValueError):
        HoiioClient(**kwargs)


# --------------------------------------------------------------------------------------------------
# Retries


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(reply(body={"status": "error_rate_limit_exceeded"}), id="rate-limit-json-on-200"),
        pytest.param(reply(429, body={"status": "error_rate_limit_exceeded"}), id="rate-limit-429"),
        pytest.param(reply(body={"status": "error_session_not_ready"}), id="session-not-ready"),
        pytest.param(reply(500, body={"status": "error_internal_server_error"}), id="internal-error-json"),
        pytest.param(reply(200, body={"status": "error_internal_server_error"}), id="internal-error-on-200"),
        pytest.param(reply(503, raw=b"<html>Service Unavailable</html>", headers={}), id="503-html"),
        pytest.param(reply(500, raw=b"", headers={}), id="500-empty"),
        pytest.param(reply(429, raw=b"slow down", headers={}), id="429-text"),
        pytest.param(reply(503, body={"status": "error_something_new"}), id="unknown-status-on-503"),
        pytest.param(requests.exceptions.ConnectTimeout("connect timed out"), id="connect-timeout"),
        pytest.param(refused(), id="connection-refused"),
    ],
)
def test_transient_failures_are_retried_then_succeed(clock, first):
    client, adapter = make(clock, [first, OK])
    result = send(client)
    assert result.ok
    assert result.attempts == 2 and len(adapter.sent) == 2
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.2
    assert not result.maybe_delivered and not result.resent


def test_gives_up_after_max_attempts(clock):
    client, adapter = make(clock, [reply(body={"status": "error_session_not_ready"})] * 4)
    result = send(client)
    assert (result.ok, result.status, result.category) == (False, "error_session_not_ready", Category.RETRY)
    assert result.attempts == 4 and len(adapter.sent) == 4 and len(clock.sleeps) == 3
    assert not result.maybe_delivered
    assert "still executing" in result.meaning


def test_max_attempts_is_configurable(clock):
    client, adapter = make(clock, [refused(), refused()], max_attempts=2)
    result = send(client)
    assert (result.status, result.attempts, result.maybe_delivered) == ("error_connection", 2, False)
    assert "Connection refused" in result.error


@pytest.mark.parametrize(
    ("answer", "status", "category"),
    [
        ({"status": "error_session_ended"}, "error_session_ended", Category.SESSION_OVER),
        ({"status": "error_invalid_session"}, "error_invalid_session", Category.SESSION_OVER),
        ({"status": "error_dest_invalid"}, "error_dest_invalid", Category.DESTINATION),
        ({"status": "error_msg_invalid_xml"}, "error_msg_invalid_xml", Category.FLOW_ERROR),
        ({"status": "error_session_param_missing"}, "error_session_param_missing", Category.FLOW_ERROR),
        ({"status": "error_brand_new"}, "error_brand_new", Category.FLOW_ERROR),
        ({"status": "error_invalid_app_id"}, "error_invalid_app_id", Category.AUTH),
    ],
)
def test_definitive_answers_are_not_retried(clock, answer, status, category):
    client, adapter = make(clock, [reply(body=answer)])
    result = send(client, block("transfer", ("dest", "+6561234567")))
    assert (result.ok, result.status, result.category, result.attempts) == (False, status, category, 1)
    assert clock.sleeps == [] and not result.maybe_delivered


def test_json_status_decides_over_the_http_code(clock):
    client, adapter = make(clock, [reply(500, body={"status": "error_session_ended"})])
    result = send(client)
    assert (result.status, result.category, result.attempts) == ("error_session_ended", Category.SESSION_OVER, 1)


def test_auth_failure_is_logged_loudly(clock, caplog):
    caplog.set_level(logging.DEBUG)
    client, _ = make(clock, [reply(body={"status": "error_invalid_access_token"})])
    result = send(client)
    assert result.category is Category.AUTH
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "error_invalid_access_token" in errors[0].getMessage()
    assert TOKEN not in caplog.text


def test_retry_after_beyond_the_budget_is_not_waited_for(clock):
    limited = reply(429, body={"status": "error_rate_limit_exceeded"}, headers={"Retry-After": "3600"})
    client, adapter = make(clock, [limited])
    result = send(client)
    assert (result.status, result.attempts) == ("error_rate_limit_exceeded", 1)
    assert clock.sleeps == []


def test_short_retry_after_is_honoured(clock):
    client, adapter = make(clock, [reply(503, raw=b"busy", headers={"Retry-After": "1"}), OK])
    result = send(client)
    assert result.ok and clock.sleeps == [1.0]


def test_dns_and_tls_failures_are_not_retried(clock):
    dns = requests.ConnectionError(
        MaxRetryError(None, "/", NameResolutionError("hoiio.test", None, "Name or service not known"))
    )
    client, adapter = make(clock, [dns])
    assert send(client).attempts == 1
    client, adapter = make(clock, [requests.exceptions.SSLError("certificate verify failed")])
    result = send(client)
    assert (result.attempts, result.status, result.maybe_delivered) == (1, "error_connection", False)


# --------------------------------------------------------------------------------------------------
# Lost answers: no blind resend of non-idempotent requests

NON_IDEMPOTENT_BLOCKS = [
    block("play", ("msg", "Hi")),
    block("gather", ("msg", "Press 1"), ("max_digits", "1")),
    block("record", ("msg", "Speak")),
    block("monitor", ("msg", "Recorded")),
    block("transfer", ("dest", "+6561234567")),
    block("dial", ("dest", "+6561234567")),
]


@pytest.mark.parametrize("blk", NON_IDEMPOTENT_BLOCKS, ids=lambda b: b.kind)
@pytest.mark.parametrize(
    ("lost", "status"),
    [
        pytest.param(requests.exceptions.ReadTimeout("Read timed out."), "error_timeout", id="read-timeout"),
        pytest.param(dropped(), "error_connection", id="dropped"),
        pytest.param(reply(504, raw=b"<html>Gateway Timeout</html>", headers={}), "error_bad_response", id="504"),
        pytest.param(reply(502, raw=b"<html>Bad Gateway</html>", headers={}), "error_bad_response", id="502"),
        pytest.param(reply(200, raw=b"<html>hello</html>", headers={}), "error_bad_response", id="200-html"),
    ],
)
def test_lost_answer_to_a_non_idempotent_block_is_not_resent(clock, blk, lost, status):
    client, adapter = make(clock, [lost, OK])
    result = client.send_block(blk, session="S1", notify_url=NOTIFY)
    assert len(adapter.sent) == 1
    assert (result.ok, result.status, result.attempts, result.maybe_delivered) == (False, status, 1, True)
    assert result.category is Category.RETRY


@pytest.mark.parametrize(
    ("api", "params"),
    [
        ("voice/call", [("dest2", "+6522222222")]),
        ("conference/call", [("dest", "+6511111111")]),
    ],
)
def test_read_timeout_on_a_call_request_is_not_resent(clock, api, params):
    client, adapter = make(clock, [requests.exceptions.ReadTimeout("Read timed out."), OK])
    result = client.call(api, params)
    assert len(adapter.sent) == 1 and result.maybe_delivered and result.status == "error_timeout"


@pytest.mark.parametrize(
    "blk", [HANGUP, block("hold"), block("unhold")], ids=lambda b: b.kind
)
def test_idempotent_blocks_are_resent_after_a_lost_answer(clock, blk):
    client, adapter = make(clock, [requests.exceptions.ReadTimeout("Read timed out."), OK])
    result = client.send_block(blk, session="S1", notify_url=NOTIFY)
    assert len(adapter.sent) == 2
    assert result.ok and result.resent and not result.maybe_delivered


@pytest.mark.parametrize(
    ("api", "params"),
    [
        ("voice/hangup", [("txn_ref", "AA-1")]),
        ("voice/query_status", [("txn_ref", "AA-1")]),
        ("conference/moderate", [("txn_ref", "AA-1"), ("action", "kick")]),
    ],
)
def test_idempotent_calls_are_resent_after_a_dropped_connection(clock, api, params):
    client, adapter = make(clock, [dropped(), OK])
    assert client.call(api, params).ok
    assert len(adapter.sent) == 2


def test_already_done_answer_after_a_resend_is_flagged(clock):
    client, adapter = make(clock, [dropped(), reply(body={"status": "error_session_not_on_hold"})])
    result = client.send_block(block("unhold"), session="S1", notify_url=NOTIFY)
    assert (result.status, result.resent, result.maybe_delivered) == ("error_session_not_on_hold", True, True)


def test_body_that_stalls_after_the_status_line_is_a_lost_answer(clock):
    def stalls(request, timeout):
        response = reply(body={})(request, timeout)

        class Stalling(io.BytesIO):
            def read(self, *args, **kwargs):
                raise requests.exceptions.ConnectionError("Read timed out.")

        response.raw = Stalling()
        return response

    client, adapter = make(clock, [stalls, OK])
    result = send(client)
    assert len(adapter.sent) == 1 and result.maybe_delivered and result.http_status == 200


# --------------------------------------------------------------------------------------------------
# Unreadable answers


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[1, 2]", b'{"txn_ref": "AA-1"}', b'{"status": 5}', b'{"status": ""}', b"\xff\xfe"],
)
def test_json_without_a_status_is_a_bad_response(clock, raw):
    client, _ = make(clock, [reply(200, raw=raw)])
    result = send(client)
    assert (result.ok, result.status, result.attempts) == (False, "error_bad_response", 1)
    assert result.data == {}


def test_oversized_answer_is_a_bad_response(clock):
    big = json.dumps({"status": "success_ok", "pad": "x" * 70_000}).encode()
    client, _ = make(clock, [reply(200, raw=big)])
    result = send(client)
    assert result.status == "error_bad_response" and "too large" in result.error


def test_plain_refusal_page_is_a_configuration_error(clock):
    client, adapter = make(clock, [reply(404, raw=b"<html>Not Found</html>", headers={})])
    result = send(client)
    assert (result.status, result.category, result.maybe_delivered, result.attempts) == (
        "error_bad_response", Category.FLOW_ERROR, False, 1,
    )


# --------------------------------------------------------------------------------------------------
# Time budget and jitter


def test_budget_bounds_total_time_and_shrinks_timeouts(clock):
    busy = reply(503, raw=b"busy", headers={})
    client, adapter = make(clock, [slow(clock, 2.5, busy)] * 4, budget=6.0)
    start = clock.now
    result = send(client)
    assert clock.now - start <= 6.0 + 1e-9
    assert result.elapsed_ms <= 6000
    assert not result.ok
    # Each attempt's timeouts are clamped to what is left of the budget.
    for sent_timeout in adapter.timeouts[1:]:
        assert sent_timeout[1] < 5.0


def test_no_attempt_starts_without_time_left(clock):
    client, adapter = make(clock, [slow(clock, 5.9, reply(body={"status": "error_rate_limit_exceeded"})), OK])
    result = send(client)
    assert result.attempts == 1 and clock.sleeps == []


def test_backoff_is_exponential_with_full_jitter_and_capped(clock):
    client, adapter = make(
        clock, [refused()] * 6, rng=lambda: 0.999999, max_attempts=6, budget=100.0, backoff_base=0.5, backoff_max=2.0
    )
    send(client)
    caps = [0.5, 1.0, 2.0, 2.0, 2.0]
    assert len(clock.sleeps) == 5
    for slept, cap in zip(clock.sleeps, caps, strict=True):
        assert cap * 0.99 <= slept <= cap


def test_jitter_varies_and_stays_within_bounds(clock):
    rng = random.Random(7)
    client, adapter = make(clock, [refused()] * 40, rng=rng.random, max_attempts=40, budget=1000.0)
    send(client)
    assert len(set(clock.sleeps)) > 30
    for n, slept in enumerate(clock.sleeps):
        assert 0 <= slept <= min(2.0, 0.2 * 2**n)


def test_zero_jitter_means_immediate_retry(clock):
    client, adapter = make(clock, [refused(), OK], rng=lambda: 0.0)
    assert send(client).ok and clock.sleeps == [0.0]


# --------------------------------------------------------------------------------------------------
# One session per process


def test_session_is_created_lazily_once_per_process(clock, monkeypatch):
    made = []
    adapter = ScriptedAdapter([OK, OK, OK], clock)

    def factory():
        s = requests.Session()
        s.mount("https://", adapter)
        made.append(s)
        return s

    client = HoiioClient(API, APP_ID, TOKEN, session_factory=factory, sleep=clock.sleep, clock=clock)
    assert made == []
    send(client)
    send(client)
    assert len(made) == 1
    parent_session = made[0]
    closed = []
    monkeypatch.setattr(parent_session, "close", lambda: closed.append(True))
    real_pid = base_module.os.getpid()
    monkeypatch.setattr(base_module.os, "getpid", lambda: real_pid + 1)  # as in a forked child
    send(client)
    assert len(made) == 2 and made[1] is not parent_session
    assert closed == []  # the parent's pool is left alone


def test_close_drops_the_pool(clock):
    client, adapter = make(clock, [OK, OK])
    send(client)
    client.close()
    assert send(client).ok


# --------------------------------------------------------------------------------------------------
# The access token never leaks


def test_token_not_in_repr_or_results(clock, caplog):
    caplog.set_level(logging.DEBUG)
    client, _ = make(clock, [reply(body={"status": "error_session_not_ready"})] * 4)
    result = send(client)
    for text in (repr(client), str(vars(client)), repr(result), str(result.request_params), caplog.text):
        assert TOKEN not in text
        assert "SECRET" not in text
    assert "access_token" not in dict(result.request_params)


@pytest.mark.parametrize(
    "exc_type", [requests.ConnectionError, requests.exceptions.ReadTimeout, requests.exceptions.InvalidURL]
)
def test_token_scrubbed_from_transport_errors(clock, caplog, exc_type):
    caplog.set_level(logging.DEBUG)

    def leaky(request, timeout):
        raise exc_type(f"failed {request.url}?{request.body.decode()} token={TOKEN}", request=request)

    client, _ = make(clock, [leaky] * 4, rng=lambda: 0.0)
    result = send(client)
    assert result.error and "<redacted>" in result.error
    assert "SECRET" not in result.error and "SECRET" not in repr(result) and "SECRET" not in caplog.text


def test_token_scrubbed_from_unexpected_errors(clock):
    def buggy(request, timeout):
        raise ValueError(f"bug while sending {request.body.decode()}")

    client, _ = make(clock, [buggy])
    with pytest.raises(HoiioClientError) as info:
        send(client)
    assert "SECRET" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_transport_that_fills_in_content_directly(clock):
    def filled(request, timeout):
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"status": "success_ok"}'
        response.url = request.url
        response.request = request
        return response

    client, _ = make(clock, [filled])
    assert send(client).ok
