"""The README's "Outbound calls and conferences" curl lines, run as written (with curl and bash)
against the engine serving the real flows/ folder, the fake Hoiio and the fake VoipNow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import FLOWS_DIR, ROOT
from tests.integration.api.conftest import API_TOKEN, World

README_FAKE_HOIIO = "http://127.0.0.1:8001"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Outbound calls and conferences", 1)[1].split("\n## ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        current = ""
        for line in block.splitlines():
            current = f"{current}\n{line}" if current else line
            if current.count("'") % 2 == 0 and not current.endswith("\\"):
                if current.lstrip().startswith("curl "):
                    commands.append(current)
                current = ""
    return commands


def test_the_readme_lists_a_curl_line_for_every_endpoint():
    commands = " ".join(readme_commands())
    for route in ("/api/calls -H", "/api/calls/$SESSION", "/api/callbacks", "/api/calls/$TXN?refresh=1",
                  "/api/conferences -H", "/api/conferences/standup -H", "/participants/$PARTICIPANT/mute",
                  "-X POST $IVR/api/conferences/voipnow/invites", "voipnow/invites/$INVITE -H",
                  "-X DELETE $IVR/api/conferences/voipnow/invites/$INVITE"):  # fmt: skip
        assert route in commands, route


@pytest.fixture
def readme_world(tmp_path):
    w = World(f"sqlite:///{tmp_path / 'readme.sqlite3'}", flows_dir=FLOWS_DIR)
    yield w
    w.close()


def test_the_readme_curl_lines_work(readme_world):
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is needed to run the README's examples (apt-get install curl)", pytrace=False)
    w = readme_world
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IVR": w.url, "IVR_API_TOKEN": API_TOKEN}
    answers: list[tuple[str, object]] = []
    sessions: dict[str, str] = {}  # outbound flow -> the session its POST /api/calls answered with
    for command in readme_commands():
        command = command.replace(README_FAKE_HOIIO, w.hoiio.root_url)
        done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        out = json.loads(done.stdout)
        assert not (isinstance(out, dict) and out.get("status") == "error"), (command, out)
        answers.append((command, out))
        posted = "-X POST" in command
        if posted and "/api/calls" in command:
            env["SESSION"] = sessions[out["flow"]] = out["session"]
        if posted and "/api/callbacks" in command:
            env["TXN"] = out["txn_ref"]
        if posted and "participants" in out:
            env["PARTICIPANT"] = out["participants"][-1]["txn_ref"]
        if posted and "/voipnow/invites" in command:
            env["INVITE"] = out["id"]
        w.settle()
    assert len(answers) == len(readme_commands())

    # booking confirmation: the customer pressed 1; the report failed (no bookings service here)
    assert sorted(sessions) == ["booking_confirmation", "click_to_call", "conference_outgoing"]
    call = w.db.get_call(sessions["booking_confirmation"])
    assert call.status == "ended" and call.call_state().vars["decision"] == "confirmed"
    assert call.node == "goodbye_confirmed"
    hoiio_session = call.call_state().call["session"]
    assert w.hoiio.sessions[hoiio_session].block_names == ("play", "gather", "hangup")
    shown = dict(answers)[next(c for c, _ in answers if "$SESSION" in c)]
    assert shown["kind"] == "flow" and shown["flow"]["notifications"][0]["dial_status"] == "answered"
    assert shown["session"] == sessions["booking_confirmation"]
    # click-to-call flow: the agent pressed 1 and was connected to the visitor
    call = w.db.get_call(sessions["click_to_call"])
    assert (call.status, call.outcome, call.node) == ("ended", "transferred", "call_visitor")
    agent = w.hoiio.sessions[call.call_state().call["session"]]
    assert agent.block_names == ("play", "gather", "transfer")
    assert agent.blocks[-1].params["dest"] == "+6591234567"
    # outgoing conference flow: the participants were dialled into the organiser's room
    call = w.db.get_call(sessions["conference_outgoing"])
    assert (call.status, call.outcome, call.node) == ("ended", "transferred", "join_room")
    organiser = w.hoiio.sessions[call.call_state().call["session"]]
    assert organiser.block_names == ("play", "transfer")
    assert organiser.blocks[-1].params["dest"] == "room:meeting.M42"
    [dialled] = [r for r in w.hoiio.log if r.endpoint == "conference/call" and r.params["room"] == "meeting.M42"]
    assert dialled.params["dest"] == "+6598000001,+6598000002,+6598000003"
    # click-to-call: Hoiio's status came with the refresh
    refreshed = next(out for c, out in answers if "refresh=1" in c)
    assert refreshed["hoiio"]["call_status_dest2"] == "answered"
    # conference: two participants, one still on the line and now muted
    room = next(out for c, out in answers if c.rstrip().endswith("/api/conferences/standup -H \"Authorization: "
                                                                   "Bearer $IVR_API_TOKEN\""))  # fmt: skip
    assert [p["number"] for p in room["participants"]] == ["+6591234567", "+6598765432"]
    assert w.hoiio.calls[env["PARTICIPANT"]].muted is True
    # VoipNow: on the call, then hung up
    states = [out.get("state") for c, out in answers if "/invites/$INVITE" in c]
    assert states == ["on_call", "ended"]
    assert w.voipnow.invites[env["INVITE"]].end_reason == "hangup"
