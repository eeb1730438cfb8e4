"""A block whose sending was interrupted (process killed) is detected and sent exactly once."""

from __future__ import annotations

import pytest


class ProcessDied(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the engine catches it."""


def _die(*args, **kwargs):
    raise ProcessDied


def test_block_claimed_but_not_sent_is_resent_once(harness, monkeypatch):
    harness.answer("R1")
    real_send = harness.service.client.send_block
    monkeypatch.setattr(harness.service.client, "send_block", _die)
    with pytest.raises(ProcessDied):
        harness.reply("R1", "play")
    gather = [b for b in harness.db.blocks_for("R1") if b.kind == "gather"]
    assert [b.status for b in gather] == ["sending"]
    monkeypatch.setattr(harness.service.client, "send_block", real_send)
    before = len(harness.hoiio.requests)
    assert harness.service.recover_stuck_blocks(older_than_seconds=0) == 1
    assert harness.hoiio.endpoints()[before:] == ["ivr/middle/gather"]
    assert [b.status for b in harness.db.blocks_for("R1") if b.kind == "gather"] == ["sent"]
    assert harness.service.recover_stuck_blocks(older_than_seconds=0) == 0
    # the resent block carries the same step: the caller's answer still advances the call
    harness.reply("R1", "gather", digits="3")
    assert harness.hoiio.last()[0] == "ivr/middle/record"


def test_block_committed_but_never_sent_is_sent(harness, monkeypatch):
    harness.answer("R2")
    real = harness.service._send
    monkeypatch.setattr(harness.service, "_send", _die)
    with pytest.raises(ProcessDied):
        harness.reply("R2", "play")
    assert [b.status for b in harness.db.blocks_for("R2") if b.kind == "gather"] == ["sending"]
    monkeypatch.setattr(harness.service, "_send", real)
    assert harness.service.recover_stuck_blocks(older_than_seconds=0) == 1
    assert harness.hoiio.endpoints().count("ivr/middle/gather") == 1


def test_stuck_block_of_a_call_that_moved_on_is_not_resent(harness, monkeypatch):
    harness.answer("R3")
    monkeypatch.setattr(harness.service.client, "send_block", _die)
    with pytest.raises(ProcessDied):
        harness.reply("R3", "play")
    # the caller hangs up meanwhile
    harness.reply("R3", "gather", call_state="ended", duration="1", currency="SGD", rate="0.02", debit="0.02",
                  date="2026-11-23 10:00:30")
    assert harness.service.recover_stuck_blocks(older_than_seconds=0) == 0
    assert [b.status for b in harness.db.blocks_for("R3") if b.kind == "gather"] == ["unknown"]


def test_block_lost_in_a_read_timeout_is_sent_again(harness):
    import requests

    harness.answer("R4")
    harness.hoiio.answer("ivr/middle/gather", requests.ReadTimeout("no answer"))
    r = harness.reply("R4", "play")
    assert r.get_json()["blocks"][0]["provider_status"] == "error_timeout"
    assert [b.status for b in harness.db.blocks_for("R4") if b.kind == "gather"] == ["unknown"]
    # no notification comes back for that step: the recovery pass sends it again
    assert harness.service.recover_stuck_blocks(older_than_seconds=0) == 1
    assert harness.hoiio.endpoints().count("ivr/middle/gather") == 2
    assert [b.status for b in harness.db.blocks_for("R4") if b.kind == "gather"] == ["sent"]
    harness.reply("R4", "gather", digits="3")
    assert harness.hoiio.last()[0] == "ivr/middle/record"


def test_session_not_ready_on_a_resend_proves_the_first_copy_arrived(harness):
    import requests

    harness.answer("R5")
    harness.hoiio.answer("ivr/middle/gather", requests.ReadTimeout("no answer"), *["error_session_not_ready"] * 4)
    harness.reply("R5", "play")
    harness.service.recover_stuck_blocks(older_than_seconds=0)
    gather = [b for b in harness.db.blocks_for("R5") if b.kind == "gather"]
    assert [b.status for b in gather] == ["sent"] and gather[0].provider_status == "error_session_not_ready"
    assert harness.db.get_call("R5").status == "active"  # not sent to the error handler


def test_gives_up_after_repeated_silence_and_runs_the_error_handler(harness):
    import requests

    harness.answer("R6")
    harness.hoiio.answer("ivr/middle/gather", *[requests.ReadTimeout("no answer")] * 3)
    harness.reply("R6", "play")
    for _ in range(3):
        harness.service.recover_stuck_blocks(older_than_seconds=0)
    endpoint, params = harness.hoiio.last()
    assert endpoint == "ivr/end/hangup" and params["msg"] == "Sorry, something went wrong."
