"""``ivr try`` without a terminal: scripted keys (--keys), business hours (--at), outbound calls (--to),
HTTP answers (--http), bad flows. Each call goes through the real engine and the fake Hoiio."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main

ROOT = Path(__file__).resolve().parents[3]
FLOWS = ROOT / "flows"

BOOKING_INPUTS = [
    "--var", "customer_name=Mr Tan", "--var", "booking_id=B42", "--var", "booking_date=Friday 25 December",
    "--var", "booking_time=7 pm", "--var", "party_size=4",
]


def try_flow(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner(env=env).invoke(main, ["try", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def line(out: str, label: str) -> str:
    return next(row for row in out.splitlines() if row.startswith(label)).removeprefix(label).strip()


# ------------------------------------------------------------------------------------------ inbound


def test_auto_attendant_busy_department_goes_to_voicemail():
    out = try_flow(str(FLOWS / "auto_attendant.yaml"), "--keys", "1", "--transfer", "busy")
    assert '"Thank you for calling Acme."  en-US female' in out
    assert "Choices: 1 sales · 2 support · 3 accounts · 0 voicemail" in out
    assert "keys> 1" in out
    assert "sales (transfer to +6531580001)" in out and "busy  (from --transfer)" in out
    assert "Recording the caller (up to 120 s)" in out
    assert line(out, "Path:") == ("welcome → [next] → main_menu → [key 1] → sales → [failed] → nobody_free → "
                                  "[next] → voicemail → [next] → goodbye")
    assert line(out, "Visited:") == "welcome, main_menu, sales, nobody_free, voicemail, goodbye  (6 of 9 nodes)"
    assert "company = Acme" in out and "voicemail_url = http://" in out
    assert line(out, "Outcome:") == "hung up by flow"
    assert "\x1b[" not in out  # no colours when the output is not a terminal


def test_auto_attendant_answered_transfer_by_flow_name():
    out = try_flow("auto_attendant", "--keys", "2")
    assert "transfer> answered" in out
    assert line(out, "Path:") == "welcome → [next] → main_menu → [key 2] → support"
    assert line(out, "Outcome:") == "transferred"


def test_keys_run_out_the_caller_hangs_up_and_it_says_so():
    out = try_flow("auto_attendant", "--keys", "9,")  # a wrong key, then silence, then nothing left
    assert "engine: main_menu: '9' is not an option" in out
    assert "keys> (no input)" in out
    assert "No more --keys: the caller hangs up" in out
    assert line(out, "Path:") == ("welcome → [next] → main_menu → [retry invalid] → main_menu → [retry no input] → "
                                  "main_menu → [hang-up]")
    assert line(out, "Outcome:") == "caller hung up"


def test_conference_line_room_code_with_a_retry():
    out = try_flow("conference_incoming", "--keys", "1,12,123456", "--transfer", "failed")
    assert "Key in 6 digits for room_code" in out
    assert "engine: ask_code: '12' has 2 digits, expected 6 to 6" in out
    assert "Ringing conference room R123456." in out
    assert line(out, "Path:") == ("welcome → [key 1] → ask_code → [retry invalid] → ask_code → [next] → "
                                  "join_room → [failed] → room_failed")
    assert "room_code = 123456" in out
    assert line(out, "Outcome:") == "hung up by flow"


@pytest.mark.parametrize(
    ("at", "first", "path_start"),
    [
        ("2026-12-23 10:00", "main_menu (menu)", "check_hours → [open] → main_menu"),  # a Wednesday
        ("2026-12-26 13:00", "closed_message (play)", "check_hours → [closed] → closed_message"),  # Sat lunch
        ("2026-12-25 10:00", "holiday_message (play)", "check_hours → [holiday] → holiday_message"),  # Christmas
    ],
)
def test_small_business_hours_follow_the_given_clock(at, first, path_start):
    out = try_flow("small_business", "--at", at, "--tz", "Asia/Singapore", "--keys", "0")
    assert "Engine clock:" in out and "Asia/Singapore" in out
    assert f"check_hours (hours) → [{path_start.split('[')[1].split(']')[0]}]" in out
    assert first in out
    assert line(out, "Path:").startswith(path_start)


def test_small_business_at_without_tz_uses_the_flows_time_zone():
    out = try_flow("small_business", "--at", "2026-12-23 17:30", "--keys", "0", "--transfer", "busy,no-answer")
    assert "Engine clock: Wed 23 Dec 2026 17:30 Asia/Singapore" in out
    assert line(out, "Path:") == ("check_hours → [open] → main_menu → [key 0] → operator → [failed] → "
                                  "backup_operator → [failed] → nobody_free → [next] → voicemail → [next] → goodbye")
    assert "transfer_status unanswered" in out


# ------------------------------------------------------------------------------------------ outbound


def test_booking_confirmation_outbound_confirmed():
    out = try_flow("booking_confirmation", "--to", "+6598765432", *BOOKING_INPUTS, "--keys", "1")
    assert "The engine calls +6598765432" in out
    assert "Calling +6598765432 from +6531580000" in out and "+6598765432 answers" in out
    assert '"Hello Mr Tan, this is Acme Bistro calling about your booking for 4 on Friday 25 December at 7 pm."' in out
    assert "POST https://bookings.example.com/api/bookings/B42/confirmation" in out
    assert '"decision": "confirmed"' in out and "→ 200 {} (simulated" in out
    assert line(out, "Path:") == ("call_customer → [answered] → details → [next] → confirm_menu → [key 1] → "
                                  "confirmed → [next] → report → [next] → goodbye → [case 1] → goodbye_confirmed")
    assert "decision = confirmed" in out and "dest +6598765432" in out
    assert line(out, "Outcome:") == "hung up by flow"


def test_booking_confirmation_busy_callee_is_reported():
    out = try_flow("booking_confirmation", "--to", "+6598765432", *BOOKING_INPUTS, "--dial", "busy",
                   "--http", "https://bookings.example.com/*=503")
    assert "+6598765432 is busy" in out
    assert '"decision": "not_reached", "dial_status": "busy"' in out and "→ 503 (simulated" in out
    assert line(out, "Path:") == "call_customer → [busy] → not_reached → [failed] → end"
    assert line(out, "Outcome:") == "dial busy"


def test_outbound_inputs_missing_are_named():
    result = CliRunner().invoke(main, ["try", "booking_confirmation", "--keys", "1", "--var", "booking_id=B42"])
    assert result.exit_code == 2
    assert ("booking_confirmation needs its inputs: customer_name, booking_date, booking_time, party_size; "
            "give each with --var NAME=VALUE") in result.output


EXTENSION_FLOW = """\
start: ext
on_error: sorry
nodes:
  ext:
    type: collect
    say: "Key in the extension."
    into: ext
    max_length: 4
    no_input: {then: sorry}
    invalid: {then: sorry}
    next: ring
  ring:
    type: transfer
    to: "+65{{ ext }}"
  sorry:
    type: hangup
    say: "Sorry."
"""


def test_a_failure_at_call_time_runs_the_error_handler_and_says_why(tmp_path):
    flow = tmp_path / "extension.yaml"
    flow.write_text(EXTENSION_FLOW)
    out = try_flow(str(flow), "--keys", "12")
    assert "engine: ring: error: cannot transfer to '+6512'" in out
    assert line(out, "Path:") == "ext → [next] → ring → [error] → sorry"
    assert line(out, "Outcome:") == "hung up by flow"


def test_two_factor_voice_reads_the_code():
    out = try_flow("two_factor_voice", "--to", "+6591110000", "--var", "code=482913", "--keys", ",")
    assert "verification code is 4, 8, 2, 9, 1, 3" in out
    assert line(out, "Path:") == "call → [answered] → read_code → [no input] → goodbye"


# ------------------------------------------------------------------------------------------ details


SECRET_FLOW = """\
start: pin
nodes:
  pin:
    type: collect
    say: "Key in your PIN."
    into: pin
    max_length: 4
    sensitive: true
    no_input: {then: bye}
    invalid: {then: bye}
    next: report
  report:
    type: http
    method: POST
    url: "https://api.example.com/check"
    body: {pin: "{{ pin }}", who: "{{ caller }}"}
    save: {name: customer.name}
    next: hello
    failed: bye
  hello:
    type: play
    say:
      - "Hello {{ name }}."
      - {audio: "https://example.com/jingle.mp3"}
      - {text: "Ni hao.", language: zh-CN}
    next: bye
  bye:
    type: hangup
"""


def test_sensitive_values_are_masked_audio_and_languages_shown(tmp_path):
    flow = tmp_path / "secret.yaml"
    flow.write_text(SECRET_FLOW)
    out = try_flow(str(flow), "--keys", "4321", "--caller", "+6580001111",
                   "--http", 'https://api.example.com/check=200:{"customer": {"name": "Mei"}}')
    assert "4321" not in out
    assert '"pin": "***"' in out and '"who": "+6580001111"' in out
    assert "pin = ***" in out and "name = Mei" in out
    assert '"Hello Mei."' in out
    assert "▶ plays https://example.com/jingle.mp3" in out
    assert '"Ni hao."  zh-CN' in out


def test_flow_name_from_ivr_flows(tmp_path):
    (tmp_path / "mine.yaml").write_text((FLOWS / "conference_incoming.yaml").read_text())
    out = try_flow("mine", "--keys", "2", env={"IVR_FLOWS": str(tmp_path)})
    assert line(out, "Path:") == "welcome → [key 2] → team_room"


def test_a_bad_flow_prints_the_findings_and_exits_1():
    result = CliRunner().invoke(main, ["try", str(ROOT / "tests/flows_bad/missing_target.yaml"), "--keys", "1"])
    assert result.exit_code == 1
    assert "missing_target.yaml:10:12: error: menu 'main' sends key 2 to 'suport'" in result.output
    assert "1 error; fix it and try again" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_unknown_flow_and_bad_options():
    runner = CliRunner()
    result = runner.invoke(main, ["try", "no_such_flow"])
    assert result.exit_code == 1 and "no flow 'no_such_flow'" in result.output
    result = runner.invoke(main, ["try", "auto_attendant", "--keys", "1,x"])
    assert result.exit_code == 2 and "keys are 0-9, * and #" in result.output
    result = runner.invoke(main, ["try", "auto_attendant", "--transfer", "maybe"])
    assert result.exit_code == 2 and "answered, busy, no-answer or failed" in result.output
    result = runner.invoke(main, ["try", "small_business", "--at", "Christmas"])
    assert result.exit_code == 2 and "2026-12-25 09:00" in result.output
    result = runner.invoke(main, ["try", "small_business", "--at", "2026-12-25 09:00", "--tz", "Mars/Base"])
    assert result.exit_code == 2 and "not a time zone" in result.output
    result = runner.invoke(main, ["try", "auto_attendant", "--http", "nonsense"])
    assert result.exit_code == 2 and "URL=STATUS" in result.output


def test_engine_logging_is_left_as_it_was():
    import logging

    engine_log = logging.getLogger("engine")
    before = (list(engine_log.handlers), engine_log.propagate, engine_log.level)
    try_flow("auto_attendant", "--keys", "0")
    assert (list(engine_log.handlers), engine_log.propagate, engine_log.level) == before
