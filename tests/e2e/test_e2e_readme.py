"""The README's "Try it with curl" section, followed to the letter.

``ivr fake-hoiio`` and ``ivr serve`` run as their own processes with the README's environment
(``IVR_VERIFY_SIGNATURES=0 HOIIO_APP_ID=x HOIIO_ACCESS_TOKEN=y HOIIO_API_URL=...``, the default
``DATABASE_URL`` ``sqlite:///ivr.sqlite3`` in the working directory); the incoming-call notification
is posted with exactly the fields of the README's curl command, read from the README itself.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import ROOT, FakeProcess, Server, query_of, start_fake_process, start_ivr_serve, wait_until

pytestmark = pytest.mark.slow

README = ROOT / "README.md"


def readme_curl_fields() -> list[tuple[str, str]]:
    """The ``-d`` / ``--data-urlencode`` fields of the README's ``curl ... /hoiio/answer`` command."""
    text = README.read_text()
    match = re.search(r"^curl [^\n]*?/hoiio/answer[^\n]*\\\n(?:[^\n]*\\\n)*[^\n]*$", text, re.M)
    assert match, "the README has no curl example posting to /hoiio/answer"
    words = shlex.split(match.group(0).replace("\\\n", " "))
    fields = []
    for flag, value in zip(words, words[1:], strict=False):
        if flag in ("-d", "--data", "--data-urlencode"):
            name, _, raw = value.partition("=")
            fields.append((name, raw))
    return fields


def readme_env() -> dict[str, str]:
    """The variables the README sets on the ``ivr serve`` line."""
    text = README.read_text()
    match = re.search(r"^(IVR_VERIFY_SIGNATURES=[^\n]*?)\\?\n\s*\.venv/bin/ivr serve", text, re.M)
    assert match, "the README's curl section no longer starts the server with IVR_VERIFY_SIGNATURES=0"
    return dict(word.split("=", 1) for word in shlex.split(match.group(1)) if "=" in word)


@pytest.fixture(scope="module")
def readme_setup(tmp_path_factory) -> Iterator[tuple[Server, FakeProcess, Path]]:
    env_from_readme = readme_env()
    assert env_from_readme["IVR_VERIFY_SIGNATURES"] == "0"
    logs = tmp_path_factory.mktemp("readme-logs")
    work = tmp_path_factory.mktemp("readme-cwd")
    fake = start_fake_process(logs, app_id=env_from_readme["HOIIO_APP_ID"],
                              token=env_from_readme["HOIIO_ACCESS_TOKEN"], name="readme-fake-hoiio")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "HOIIO_", "DATABASE_URL"))}
        env.update(env_from_readme)
        env["HOIIO_API_URL"] = fake.api_url  # the README's 127.0.0.1:8001, on a port free right now
        env["IVR_FLOWS"] = str(ROOT / "flows")  # the README runs from the repository; this runs in `work`
        env["PYTHONUNBUFFERED"] = "1"
        server = start_ivr_serve(logs, env=env, cwd=work)
        try:
            yield server, fake, work
        finally:
            server.stop()
    finally:
        fake.stop()


def test_readme_curl_example(readme_setup) -> None:
    server, fake, work = readme_setup
    fields = readme_curl_fields()
    assert dict(fields) == {"ivr_block": "answer", "call_state": "ringing", "session": "S1", "txn_ref": "AA-1",
                            "from": "+6591234567", "to": "+6531580000"}

    # curl -d / --data-urlencode send an application/x-www-form-urlencoded body, as requests does
    response = server.post("/hoiio/answer", data=fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["session"], body["flow"]) == ("ok", "S1", "auto_attendant")

    # "The JSON answer names the block the engine issued (endpoint and parameters, token removed)"
    [block] = body["blocks"]
    assert block["endpoint"] == "ivr/middle/play"
    params = block["params"]
    assert "access_token" not in params and "y" not in params.values()
    assert params["session"] == "S1"
    assert params["app_id"] == "x"
    assert "Thank you for calling Acme." in params["msg"]
    notify = query_of(params["notify_url"])
    assert params["notify_url"].startswith(f"{server.url}/hoiio/notify?")
    assert notify["step"] == "1" and notify["sig"]

    # The fake Hoiio behind HOIIO_API_URL got exactly that request; it has no session S1 (no call
    # was placed through it), so it refuses it and the engine records the call as over.
    log = fake.control("GET", "/_fake/log").json()
    [request] = [r for r in log["requests"] if r["params"].get("session") == "S1"]
    assert request["endpoint"] == "ivr/middle/play"
    assert request["params"]["access_token"] == "***" and request["params"]["app_id"] == "x"
    assert request["params"]["notify_url"] == params["notify_url"]
    assert block["provider_status"] == request["response"]["status"] == "error_invalid_session"
    assert body["call_status"] == "ended"

    # "the notification and the block are stored in the database (sqlite3 ivr.sqlite3 'select * from blocks')"
    database = work / "ivr.sqlite3"
    assert database.exists(), "the default DATABASE_URL puts ivr.sqlite3 in the working directory"
    with sqlite3.connect(database) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("select * from blocks")]
        notifications = [dict(r) for r in conn.execute("select * from notifications where session = 'S1'")]
        calls = [dict(r) for r in conn.execute("select * from calls where session = 'S1'")]
    assert [(r["session"], r["step"], r["node"], r["kind"], r["endpoint"]) for r in rows] == [
        ("S1", 1, "welcome", "play", "ivr/middle/play")
    ]
    assert rows[0]["provider_status"] == "error_invalid_session"
    assert "Thank you for calling Acme." in rows[0]["params"]
    assert "access_token" not in rows[0]["params"]
    [note] = notifications
    assert note["route"] == "POST /hoiio/answer" and note["outcome"] == "accepted"
    assert bytes(note["body"]).decode() == "&".join(
        f"{k}={v.replace('+', '%2B')}" for k, v in fields
    )  # exactly the body that was posted
    [call] = calls
    assert (call["flow"], call["status"], call["caller"], call["called"]) == (
        "auto_attendant", "ended", "+6591234567", "+6531580000"
    )

    # the same notification again is a duplicate: nothing is sent twice
    again = server.post("/hoiio/answer", data=fields)
    assert again.status_code == 200 and again.json()["status"] == "ignored"
    log = fake.control("GET", "/_fake/log").json()
    assert len([r for r in log["requests"] if r["params"].get("session") == "S1"]) == 1


def test_call_through_the_fake_control_api(readme_setup) -> None:
    """The same two processes, a call placed with the fake's control API (as its start-up banner
    shows): the caller presses 1 and is transferred to sales."""
    server, fake, _work = readme_setup
    created = fake.control("POST", "/_fake/calls", json={
        "answer_url": f"{server.url}/hoiio/answer", "to": "+6531580000", "keys": ["1"]})
    assert created.status_code == 201, created.text
    sid = created.json()["session"]

    def ended():
        session = fake.control("GET", f"/_fake/sessions/{sid}").json()
        return session if session["state"] == "ended" else None

    session = wait_until(ended, 15, f"session {sid} to end")
    assert [b["name"] for b in session["blocks"]] == ["play", "gather", "transfer"]
    assert session["blocks"][2]["params"]["dest"] == "+6531580001"
    assert session["end_reason"] == "transferred"
    log = wait_until(lambda: (lg := fake.control("GET", "/_fake/log").json()) and all(
        n["done"] for n in lg["notifications"] if n["session"] == sid) and lg, 15, "notifications answered")
    mine = [n for n in log["notifications"] if n["session"] == sid]
    assert [n["fields"]["ivr_block"] for n in mine] == ["answer", "play", "gather", "transfer"]
    assert [n["http_status"] for n in mine] == [200, 200, 200, 200]
    assert all(r["response"]["status"] == "success_ok" for r in log["requests"] if r["params"].get("session") == sid)
    assert server.get("/healthz").status_code == 200
