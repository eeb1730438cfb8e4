"""The example flows in flows/: realistic, clean, and as described in the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core import flow as f
from engine.flowfile import check_paths, load_flow, load_flows
from engine.flowfile.loader import load_document

ROOT = Path(__file__).resolve().parents[3]
FLOWS = sorted((ROOT / "flows").glob("*.yaml"))


def test_the_examples_are_there() -> None:
    assert {p.stem for p in FLOWS} >= {"auto_attendant", "conference_incoming", "booking_confirmation",
                                       "two_factor_voice", "small_business", "click_to_call",
                                       "conference_outgoing"}


def test_every_example_checks_without_errors_or_warnings() -> None:
    assert check_paths([ROOT / "flows"]) == []


@pytest.mark.parametrize("path", FLOWS, ids=lambda p: p.name)
def test_every_example_names_its_schema_and_has_an_error_handler(path: Path) -> None:
    assert path.read_text(encoding="utf-8").splitlines()[0] == (
        "# yaml-language-server: $schema=../engine/flowfile/flow.schema.json")
    flow, findings = load_flow(path)
    assert findings == [] and flow is not None
    assert flow.on_error in flow.nodes
    assert flow.description


def load(name: str) -> f.Flow:
    flow, findings = load_flow(ROOT / "flows" / f"{name}.yaml")
    assert flow is not None, findings
    return flow


def declared_inputs(name: str) -> dict:
    """The ``inputs`` an outbound example declares, as written in its YAML."""
    return load_document((ROOT / "flows" / f"{name}.yaml").read_bytes(), "x").data["inputs"]


def test_auto_attendant() -> None:
    flow = load("auto_attendant")
    assert flow.numbers == ("+6531580000",)
    menu = flow.nodes[flow.nodes[flow.start].exits()["next"]]
    assert isinstance(menu, f.Menu)
    departments = [flow.nodes[t] for k, t in menu.options.items() if isinstance(flow.nodes[t], f.Transfer)]
    assert len(departments) >= 2
    for transfer in departments:
        assert isinstance(transfer, f.Transfer)
        assert transfer.on_failure == "continue"
        after = flow.nodes[transfer.failed or ""]
        voicemail = flow.nodes[after.exits()["next"]] if not isinstance(after, f.Record) else after
        assert isinstance(voicemail, f.Record)
        assert isinstance(flow.nodes[voicemail.next], f.Hangup)
    assert menu.no_input.then and menu.invalid.then


def test_conference_incoming() -> None:
    flow = load("conference_incoming")
    kinds = {type(node) for node in flow.nodes.values()}
    assert f.Collect in kinds
    rooms = [n for n in flow.nodes.values() if isinstance(n, f.Transfer) and n.to.source.startswith("room:")]
    assert any("{{" in n.to.source for n in rooms)  # the room the caller keyed in
    assert any("{{" not in n.to.source for n in rooms)  # the fixed room
    assert all(n.room_profile in ("music", "ringing") for n in rooms)


def test_booking_confirmation() -> None:
    flow = load("booking_confirmation")
    assert flow.outbound
    dial = flow.nodes[flow.start]
    assert isinstance(dial, f.Dial)
    inputs = declared_inputs("booking_confirmation")
    assert {"customer_name", "booking_id", "booking_date", "booking_time"} <= set(inputs)
    menu = flow.nodes[flow.nodes[dial.answered].exits()["next"]]
    assert isinstance(menu, f.Menu) and set(menu.options) == {"1", "2"}
    assert any(isinstance(n, f.Http) and n.method == "POST" for n in flow.nodes.values())
    for result in ("unanswered", "busy", "failed"):
        assert isinstance(flow.nodes[dial.exits()[result]], f.Http)


def test_two_factor_voice_reads_the_code_digit_by_digit() -> None:
    flow = load("two_factor_voice")
    assert flow.outbound
    reader = flow.nodes[flow.nodes[flow.start].exits()["answered"]]
    assert isinstance(reader, f.Menu)
    assert reader.options["1"] == reader.id  # press 1 to hear it again
    spoken = reader.prompt[0]
    assert isinstance(spoken, f.Say)
    text = spoken.text.render({"code": "482913", "service": "Acme Bank"})
    assert "4, 8, 2, 9, 1, 3" in text


def test_click_to_call_asks_the_agent_before_ringing_the_visitor() -> None:
    flow = load("click_to_call")
    assert flow.outbound
    dial = flow.nodes[flow.start]
    assert isinstance(dial, f.Dial)
    inputs = declared_inputs("click_to_call")
    assert {"visitor_number", "visitor_name"} <= set(inputs)
    whisper = flow.nodes[dial.answered]
    assert isinstance(whisper, f.Play)
    spoken = whisper.prompt[0]
    assert isinstance(spoken, f.Say)
    assert spoken.text.render({"visitor_name": "Tan Wei Ming"}) == "Call from the website: Tan Wei Ming."
    menu = flow.nodes[whisper.next]
    assert isinstance(menu, f.Menu) and set(menu.options) == {"1", "2"}
    visitor = flow.nodes[menu.options["1"]]
    assert isinstance(visitor, f.Transfer)
    assert visitor.to.render({"visitor_number": "+6591234567"}) == "+6591234567"
    assert visitor.on_failure == "continue" and visitor.failed
    assert not isinstance(flow.nodes[menu.options["2"]], f.Transfer)
    for result in ("unanswered", "busy", "failed"):
        assert isinstance(flow.nodes[dial.exits()[result]], f.Http)


def test_conference_outgoing_puts_the_organiser_into_the_participants_room() -> None:
    flow = load("conference_outgoing")
    assert flow.outbound
    dial = flow.nodes[flow.start]
    assert isinstance(dial, f.Dial)
    announce = flow.nodes[dial.answered]
    assert isinstance(announce, f.Play)
    conference = flow.nodes[announce.next]
    assert isinstance(conference, f.Conference)
    # the participants are one input listing 1 to 8 numbers, given when the call is placed
    assert not isinstance(conference.numbers, tuple)
    assert conference.numbers.render({"participants": "+6598000001, +6598000002"}) == "+6598000001, +6598000002"
    assert conference.failed and isinstance(flow.nodes[conference.failed], f.Hangup)
    join = flow.nodes[conference.next]
    assert isinstance(join, f.Transfer)
    meeting = {"meeting_id": "M42"}
    assert join.to.render(meeting) == f"room:{conference.room.render(meeting)}"
    assert join.room_profile in ("music", "ringing")
    assert join.on_failure == "continue" and join.failed
    inputs = declared_inputs("conference_outgoing")
    assert conference.numbers.variables() == {"participants"} and "participants" in inputs
    for result in ("unanswered", "busy", "failed"):
        assert isinstance(flow.nodes[dial.exits()[result]], f.Http)


def test_small_business() -> None:
    flow = load("small_business")
    hours = flow.nodes[flow.start]
    assert isinstance(hours, f.Hours)
    assert hours.timezone == "Asia/Singapore"
    assert hours.holidays and hours.holiday
    operator = next(n for n in flow.nodes.values() if isinstance(n, f.Transfer))
    assert operator.on_failure == "continue"
    backup = flow.nodes[operator.failed or ""]
    assert isinstance(backup, f.Transfer) and backup.to != operator.to
    assert any(isinstance(n, f.Record) for n in flow.nodes.values())


def test_load_flows_gives_every_example_by_name() -> None:
    flows, findings = load_flows(ROOT / "flows")
    assert findings == []
    assert sorted(flows) == [p.stem for p in FLOWS]
    numbers = [n for flow in flows.values() for n in flow.numbers]
    assert len(numbers) == len(set(numbers))
