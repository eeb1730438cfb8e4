"""The control API (``/_fake/...``) and the ``ivr fake-hoiio`` command."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from engine.fakes import FakeHoiio


@pytest.fixture
def served(receiver):
    fake = FakeHoiio()
    fake.start()
    yield fake, fake.root_url
    fake.stop()


def test_create_a_call(served, receiver):
    fake, root = served
    response = requests.post(f"{root}/_fake/calls", timeout=5, json={
        "answer_url": receiver.url("/answer"), "caller": "+6598765432", "keys": ["12", None],
        "transfers": ["busy"], "hangup_after": 3,
    })  # fmt: skip
    assert response.status_code == 201
    sid = response.json()["session"]
    form = receiver.wait(1)[0].form
    assert form["session"] == sid and form["from"] == "+6598765432"
    state = requests.get(f"{root}/_fake/sessions/{sid}", timeout=5).json()
    assert state["state"] == "ringing" and state["session"] == sid and state["blocks"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"answer_url": "ftp://x"},
        {"answer_url": "http://x/a", "keys": ["1a"]},
        {"answer_url": "http://x/a", "transfers": ["maybe"]},
        {"answer_url": "http://x/a", "hangup_after": -1},
        {"answer_url": "http://x/a", "shoe_size": 9},
        {"answer_url": "http://x/a", "caller": "12"},
    ],
)
def test_bad_calls_are_400(served, body):
    _, root = served
    response = requests.post(f"{root}/_fake/calls", json=body, timeout=5)
    assert response.status_code == 400 and response.json()["error"]


def test_not_json_is_400(served):
    _, root = served
    assert requests.post(f"{root}/_fake/calls", data="x", timeout=5).status_code == 400


def test_full_account_is_409(receiver):
    fake = FakeHoiio(call_limit=1)
    fake.start()
    try:
        body = {"answer_url": receiver.url("/answer")}
        assert requests.post(f"{fake.root_url}/_fake/calls", json=body, timeout=5).status_code == 201
        assert requests.post(f"{fake.root_url}/_fake/calls", json=body, timeout=5).status_code == 409
    finally:
        fake.stop()


def test_log_sessions_and_hangup(served, receiver):
    fake, root = served
    sid = requests.post(f"{root}/_fake/calls", json={"answer_url": receiver.url("/answer")}, timeout=5).json()[
        "session"
    ]
    fake.wait_ready(sid)
    requests.post(f"{fake.base_url}/ivr/middle/play", timeout=5,
                  data={"app_id": "fake-app", "access_token": "fake-token", "session": sid, "msg": "hi",
                        "notify_url": receiver.url()})  # fmt: skip
    fake.wait_ready(sid)
    log = requests.get(f"{root}/_fake/log", timeout=5).json()
    assert [r["endpoint"] for r in log["requests"]] == ["ivr/middle/play"]
    assert log["requests"][0]["params"]["access_token"] == "***"
    assert [n["fields"]["ivr_block"] for n in log["notifications"]] == ["answer", "play"]
    assert all(n["http_status"] == 200 for n in log["notifications"])
    listed = requests.get(f"{root}/_fake/sessions", timeout=5).json()["sessions"]
    assert [s["session"] for s in listed] == [sid]
    assert requests.post(f"{root}/_fake/sessions/{sid}/hangup", timeout=5).json() == {"ok": True}
    assert fake.wait_until_ended(sid).end_reason == "caller_hangup"
    assert requests.get(f"{root}/_fake/sessions/S0", timeout=5).status_code == 404
    assert requests.post(f"{root}/_fake/sessions/S0/hangup", timeout=5).status_code == 404


def test_faults(served):
    fake, root = served
    fault = {"endpoint": "voice/call", "status": "error_insufficient_credit", "times": 1}
    assert requests.post(f"{root}/_fake/faults", json=fault, timeout=5).status_code == 201
    data = {"app_id": "fake-app", "access_token": "fake-token", "dest2": "+6593330000"}
    assert requests.post(f"{fake.base_url}/voice/call", data=data, timeout=5).json() == {
        "status": "error_insufficient_credit"
    }
    assert requests.post(f"{root}/_fake/faults", json={"endpoint": "voice/call", "status": "nope"},
                         timeout=5).status_code == 400  # fmt: skip
    assert requests.post(f"{root}/_fake/faults", json={"status": "x"}, timeout=5).status_code == 400
    requests.post(f"{root}/_fake/faults", json={"endpoint": "*", "status": "error_internal_server_error",
                                                "times": None}, timeout=5)  # fmt: skip
    assert requests.delete(f"{root}/_fake/faults", timeout=5).status_code == 200
    assert requests.post(f"{fake.base_url}/voice/call", data=data, timeout=5).json()["status"] == "success_ok"


def test_outbound_script_and_calls(served, receiver):
    fake, root = served
    assert requests.post(f"{root}/_fake/outbound", json={"dest": "+6593330000", "dial": "busy"},
                         timeout=5).status_code == 201  # fmt: skip
    assert requests.post(f"{root}/_fake/outbound", json={"dial": "sometimes"}, timeout=5).status_code == 400
    data = {"app_id": "fake-app", "access_token": "fake-token", "dest2": "+6593330000",
            "notify_url": receiver.url()}  # fmt: skip
    txn_ref = requests.post(f"{fake.base_url}/voice/call", data=data, timeout=5).json()["txn_ref"]
    assert receiver.wait(1)[0].form["call_status_dest2"] == "busy"
    calls = requests.get(f"{root}/_fake/calls", timeout=5).json()["calls"]
    assert [(c["txn_ref"], c["active"]) for c in calls] == [(txn_ref, False)]
    assert requests.post(f"{root}/_fake/calls/{txn_ref}/hangup", timeout=5).status_code == 200


def test_statuses_and_recordings(served):
    _, root = served
    statuses = requests.get(f"{root}/_fake/statuses", timeout=5).json()["statuses"]
    assert any(s["name"] == "error_session_not_ready" and s["enforced"] for s in statuses)
    audio = requests.get(f"{root}/_fake/recordings/S1-1.wav", timeout=5)
    assert audio.headers["Content-Type"] == "audio/wav" and audio.content.startswith(b"RIFF")


def test_cli_runs_in_the_foreground_and_prints_the_api_url():
    process = subprocess.Popen(
        [sys.executable, "-c", "from engine.cli.fake_hoiio import command; command()", "--port", "0",
         "--app-id", "demo", "--access-token", "tok"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = process.stdout.readline().strip()
        assert first.startswith("HOIIO_API_URL=http://127.0.0.1:") and first.endswith("/open")
        assert process.stdout.readline().strip() == "HOIIO_APP_ID=demo"
        assert process.stdout.readline().strip() == "HOIIO_ACCESS_TOKEN=tok"
        url = first.split("=", 1)[1]
        answer = requests.post(f"{url}/voice/call", timeout=5,
                               data={"app_id": "demo", "access_token": "tok", "dest2": "+6593330000"})  # fmt: skip
        assert answer.json()["status"] == "success_ok"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_cli_command_is_named_fake_hoiio():
    from engine.cli.fake_hoiio import command

    assert command.name == "fake-hoiio"
    assert {p.name for p in command.params} >= {"host", "port", "app_id", "access_token"}
