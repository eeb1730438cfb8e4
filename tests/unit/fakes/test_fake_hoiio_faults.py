"""Fault injection: answering with a status, delaying, dropping the connection."""

from __future__ import annotations

import time

import pytest
import requests
from fake_hoiio_support import NOTIFY

from engine.fakes import ConnectionDropped, FakeHoiio
from engine.fakes.hoiio_rules import SUCCESS


@pytest.fixture
def served(recorder):
    fake = FakeHoiio(transport=recorder)
    base = fake.start()
    yield fake, base
    fake.stop()


def post(fake: FakeHoiio, base: str, endpoint: str, **params: str) -> requests.Response:
    data = {"app_id": fake.app_id, "access_token": fake.access_token, **params}
    return requests.post(f"{base}/{endpoint}", data=data, timeout=5)


def test_status_fault_refuses_without_executing(fake, answered):
    sid = answered()
    fake.inject("ivr/middle/play", status="error_internal_server_error")
    assert fake.call_api("ivr/middle/play", session=sid, msg="hi")["status"] == "error_internal_server_error"
    assert fake.sessions[sid].blocks == ()
    assert fake.log[-1].fault == "status"
    assert fake.call_api("ivr/middle/play", session=sid, msg="hi", notify_url=NOTIFY)["status"] == SUCCESS


def test_processed_status_fault_executes_but_answers_an_error(fake, answered, recorder):
    sid = answered()
    fake.inject("ivr/middle/play", status="error_rate_limit_exceeded", processed=True)
    assert fake.call_api("ivr/middle/play", session=sid, msg="hi", notify_url=NOTIFY)["status"] == (
        "error_rate_limit_exceeded"
    )
    fake.wait_ready(sid)
    assert fake.sessions[sid].block_names == ("play",)
    assert recorder.sent[-1][0] == NOTIFY
    assert fake.log[-1].fault == "status error_rate_limit_exceeded after success_ok"


def test_times_and_wildcard(fake):
    fake.inject("*", status="error_internal_server_error", times=2)
    assert fake.call_api("voice/query_status", txn_ref="x")["status"] == "error_internal_server_error"
    assert fake.call_api("voice/call", dest2="+6593330000")["status"] == "error_internal_server_error"
    assert fake.call_api("voice/call", dest2="+6593330000")["status"] == SUCCESS


def test_until_cleared(fake):
    fake.inject("/open/voice/call", status="error_call_service_not_available", times=None)
    for _ in range(3):
        assert fake.call_api("voice/call", dest2="+6593330000")["status"] == "error_call_service_not_available"
    fake.clear_faults()
    assert fake.call_api("voice/call", dest2="+6593330000")["status"] == SUCCESS


@pytest.mark.parametrize(
    ("endpoint", "options"),
    [
        ("ivr/middle/dance", {}),
        ("voice/call", {"status": "error_made_up"}),
        ("voice/call", {"times": 0}),
        ("voice/call", {"delay": -1}),
    ],
)
def test_bad_faults_are_refused(fake, endpoint, options):
    with pytest.raises(ValueError):
        fake.inject(endpoint, **options)


def test_delay(served):
    fake, base = served
    fake.inject("voice/call", delay=0.2)
    started = time.monotonic()
    assert post(fake, base, "voice/call", dest2="+6593330000").json()["status"] == SUCCESS
    assert time.monotonic() - started >= 0.2
    assert fake.log[-1].fault == "delayed 0.2s"


def test_delay_lets_the_client_time_out(served):
    fake, base = served
    fake.inject("voice/call", delay=1.0)
    data = {"app_id": fake.app_id, "access_token": fake.access_token, "dest2": "+6593330000"}
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{base}/voice/call", data=data, timeout=0.2)


def test_drop_closes_the_connection_without_executing(served, answered):
    fake, base = served
    sid = answered(on=fake)
    fake.inject("ivr/middle/play", drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        post(fake, base, "ivr/middle/play", session=sid, msg="hi", notify_url=NOTIFY)
    assert fake.sessions[sid].blocks == ()
    assert fake.log[-1].response is None and fake.log[-1].fault == "dropped"
    assert post(fake, base, "ivr/middle/play", session=sid, msg="hi", notify_url=NOTIFY).json()["status"] == SUCCESS


def test_processed_drop_is_a_lost_response(served, answered, recorder):
    fake, base = served
    sid = answered(on=fake)
    fake.inject("ivr/middle/play", drop=True, processed=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        post(fake, base, "ivr/middle/play", session=sid, msg="hi", notify_url=NOTIFY + "?lost=1")
    fake.wait_ready(sid)
    assert fake.sessions[sid].block_names == ("play",)
    assert recorder.sent[-1][0].endswith("?lost=1")
    assert fake.log[-1].fault == "dropped after success_ok"
    assert len([r for r in fake.log if r.endpoint == "ivr/middle/play"]) == 1


def test_drop_in_process_raises(fake):
    fake.inject("voice/call", drop=True)
    with pytest.raises(ConnectionDropped):
        fake.call_api("voice/call", dest2="+6593330000")
