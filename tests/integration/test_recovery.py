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


def test_block_committed_but_never_claimed_is_sent(harness, monkeypatch):
    harness.answer("R2")
    real = harness.service._send
    monkeypatch.setattr(harness.service, "_send", _die)
    with pytest.raises(ProcessDied):
        harness.reply("R2", "play")
    assert [b.status for b in harness.db.blocks_for("R2") if b.kind == "gather"] == ["pending"]
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
