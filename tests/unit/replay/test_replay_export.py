"""``ivr export``: a call stored by the real engine becomes a case that replays green, and turns red
with a diff when the flow changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.replay import Replayer, load_case, parse_case
from engine.replay.export import ExportError, export_call, export_text

ROOT = Path(__file__).resolve().parents[3]
FLOWS = ROOT / "flows"
CASES = ROOT / "tests" / "replays"


@pytest.fixture(scope="module")
def replayer():
    with Replayer(FLOWS) as r:
        yield r


def stored_call(replayer, case_file: str):
    """Play a case through the real app and keep its database open: a stored call."""
    app = replayer.open_app()
    result = app.play(load_case(CASES / case_file))
    assert result.passed, result.report()
    return app, result.call["session"]


@pytest.mark.parametrize("case_file", [
    "auto_attendant/support_busy_then_voicemail.yaml",
    "auto_attendant/accounts_rejected_hang_up_while_busy_message.yaml",  # a provider refusal
    "small_business/closed_saturday_lunch.yaml",  # depends on the clock
    "booking_confirmation/confirmed.yaml",  # outbound, an http step
    "booking_confirmation/unanswered.yaml",
])
def test_an_exported_call_replays_green(replayer, case_file):
    app, session = stored_call(replayer, case_file)
    try:
        text = export_text(app.db, session, flows_dir=FLOWS)
    finally:
        app.close()
    exported = parse_case(text, "exported.yaml")
    original = load_case(CASES / case_file)
    assert [s.kind for s in exported.steps] == [s.kind for s in original.steps]
    assert [s.expect for s in exported.steps] == [s.expect for s in original.steps]
    assert exported.now == original.now
    result = replayer.run(exported)
    assert result.passed, result.report()


def test_export_keeps_provider_answers_and_outbound_inputs(replayer):
    app, session = stored_call(replayer, "booking_confirmation/confirmed.yaml")
    try:
        case, header = export_call(app.db, session, flows_dir=FLOWS)
    finally:
        app.close()
    assert case.outbound and case.steps[0].kind == "start"
    assert case.dest == "+6591234567"
    assert case.vars == {"customer_name": "Mei Ling", "booking_id": "B1001", "booking_date": "28 November",
                         "booking_time": "7.30 pm", "party_size": "4"}
    assert case.http == {"https://bookings.example.com/api/bookings/B1001/confirmation": [{"status": 200, "json": {}}]}
    assert case.expect_call == {"status": "ended", "outcome": "hung up by flow"}
    assert any("booking_confirmation" in line for line in header)

    app, session = stored_call(replayer, "auto_attendant/accounts_rejected_hang_up_while_busy_message.yaml")
    try:
        case, _ = export_call(app.db, session)
    finally:
        app.close()
    assert case.steps[2].provider == {"ivr/end/transfer": ["error_dest_invalid"]}
    assert case.steps[2].fields == {"ivr_block": "gather", "call_state": "ongoing", "digits": "3"}
    assert "step" not in case.steps[2].fields and "sig" not in case.steps[2].fields


def test_a_changed_flow_fails_the_exported_case_with_a_diff(replayer, tmp_path):
    app, session = stored_call(replayer, "auto_attendant/sales_answered.yaml")
    try:
        (tmp_path / "call.yaml").write_text(export_text(app.db, session))
    finally:
        app.close()
    changed = tmp_path / "auto_attendant.yaml"
    changed.write_text((FLOWS / "auto_attendant.yaml").read_text().replace('to: "+6531580001"', 'to: "+6531589999"'))
    with Replayer(FLOWS) as other:
        other.replace_flow("auto_attendant", changed)
        result = other.run(load_case(tmp_path / "call.yaml"))
    assert result.status == "FAIL"
    report = result.report()
    assert "--- expected" in report and "+++ actual (sent by the engine)" in report
    assert "-      dest: '+6531580001'" in report
    assert "+      dest: '+6531589999'" in report


def test_unknown_session_is_an_export_error(replayer):
    app = replayer.open_app()
    try:
        with pytest.raises(ExportError, match="no call with session 'nope'"):
            export_call(app.db, "nope")
    finally:
        app.close()
