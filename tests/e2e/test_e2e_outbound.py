"""Outbound example flows (a ``dial`` start node), placed through the HTTP API (``POST /api/calls``).

The engine runs under gunicorn with ``IVR_API_TOKEN`` set; the strict fake Hoiio (in this process)
plays the person called (``FakeHoiio.script_outbound``: answers or not, keys, hang-ups, how each
transfer ends). The booking, click-to-call and outgoing conference flows report to a web service (a
recording HTTP server in this process): their ``api`` variable is given with the call (the API takes
any variable), and ``IVR_HTTP_ALLOW_PRIVATE=1`` lets the flows' ``http`` steps reach loopback. The
conference flow's participants are dialled by ``conference/call`` (a side call, outside the IVR
session): the fake answers them and hangs them up at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from e2e_support import APP_ID, FLOWS, Hit, RecordingServer, Server, query_of, start_gunicorn, wait_recorded

from engine.fakes import CallerScript, FakeHoiio
from engine.storage import Database

pytestmark = pytest.mark.slow

API_TOKEN = "e2e-api-token-93a1"  # noqa: S105
CALL_TIMEOUT = 15.0
_numbers = itertools.count(1)


def next_number() -> str:
    """A fresh number per call: the fake's callee scripts are keyed by the number dialled."""
    return f"+6598{next(_numbers):06d}"


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def web_service() -> Iterator[RecordingServer]:
    """The web service the flows report to (500 for booking, request or meeting ids starting with FAIL)."""
    server = RecordingServer(lambda hit: (500, {"error": "down"}) if "/FAIL" in hit.path else (200, {"ok": True}))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory, fake_hoiio: FakeHoiio, sqlite_url: str) -> Iterator[Server]:
    assert fake_hoiio.base_url is not None
    server = start_gunicorn(
        tmp_path_factory.mktemp("outbound-logs"), api_url=fake_hoiio.base_url, database_url=sqlite_url, flows=FLOWS,
        name="gunicorn-api", extra_env={"IVR_API_TOKEN": API_TOKEN, "IVR_HTTP_ALLOW_PRIVATE": "1"},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def db(api_server: Server, sqlite_url: str) -> Iterator[Database]:
    database = Database.open(sqlite_url)
    try:
        yield database
    finally:
        database.close()


# ------------------------------------------------------------------------------------------ walks


@dataclass(frozen=True)
class Walk:
    id: str
    flow: str
    blocks: tuple[str, ...]  # "node:block" sent, the dial first
    outcome: str
    dial: str = "answered"
    keys: tuple[str | None, ...] = ()
    transfers: tuple[str, ...] = ()  # how each transfer ends (answered past the end)
    decision: str | None = None  # what the flow reports to the web service, None: no report
    ref: str = "B42"  # the booking, request or meeting id the flow reports under
    says: dict[int, str] = field(default_factory=dict)
    #: engine steps (http, conference) that take a step number of their own: the index of the block
    #: they run just before
    side_steps: tuple[int, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(b.split(":")[0] for b in self.blocks)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(b.split(":")[1] for b in self.blocks)


OTP = "two_factor_voice"
BOOKING = "booking_confirmation"
C2C = "click_to_call"
CONF = "conference_outgoing"
OTP_CODE = "482913"

#: flow -> (the path its report is posted to, the field carrying the result); {ref} is the walk's ref
REPORTS = {
    BOOKING: ("/api/bookings/{ref}/confirmation", "decision"),
    C2C: ("/api/callback-requests/{ref}/result", "result"),
    CONF: ("/api/meetings/{ref}/status", "status"),
}
#: nodes that are never sent as a block: a forced hangup after the dial was not answered (the call is
#: already over when the run reaches it; asserted by the not-answered walks)
NEVER_SENT = {BOOKING: {"end"}, C2C: {"end"}, CONF: {"end"}}

WALKS = (
    Walk("otp-once", OTP, ("call:dial", "read_code:gather", "goodbye:hangup"), "hung up by flow", keys=(None,),
         says={1: "verification code is 4, 8, 2, 9, 1, 3.", 2: "Never share this code"}),
    Walk("otp-repeat", OTP, ("call:dial", "read_code:gather", "read_code:gather", "goodbye:hangup"),
         "hung up by flow", keys=("1", None)),
    Walk("otp-invalid", OTP, ("call:dial", "read_code:gather", "goodbye:hangup"), "hung up by flow", keys=("7",)),
    Walk("otp-unanswered", OTP, ("call:dial",), "dial unanswered", dial="unanswered"),
    Walk("otp-busy", OTP, ("call:dial",), "dial busy", dial="busy"),
    Walk("booking-confirmed", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "goodbye_confirmed:hangup"),
         "hung up by flow", keys=("1",), decision="confirmed", side_steps=(3,),
         says={1: "Hello Tan, this is Acme Bistro calling about your booking for 4 on 24 November at 7 pm.",
               3: "your booking is confirmed"}),
    Walk("booking-cancelled", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "goodbye_cancelled:hangup"),
         "hung up by flow", keys=("2",), decision="cancelled", side_steps=(3,)),
    Walk("booking-no-input", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "confirm_menu:gather", "goodbye_later:hangup"),
         "hung up by flow", keys=(None, None), decision="no_response", side_steps=(4,)),
    Walk("booking-invalid", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "confirm_menu:gather", "confirm_menu:gather",
          "goodbye_later:hangup"), "hung up by flow", keys=("7", "8", "9"), decision="no_response",
         side_steps=(5,), says={3: "Please press 1 or 2."}),
    Walk("booking-report-fails", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "goodbye_confirmed:hangup"),
         "hung up by flow", keys=("1",), decision="confirmed", ref="FAIL7", side_steps=(3,)),
    Walk("booking-unanswered", BOOKING, ("call_customer:dial",), "dial unanswered", dial="unanswered",
         decision="not_reached"),
    Walk("booking-busy", BOOKING, ("call_customer:dial",), "dial busy", dial="busy", decision="not_reached"),
    Walk("booking-failed", BOOKING, ("call_customer:dial",), "dial failed", dial="failed", decision="not_reached"),
    # click_to_call: the agent is called (the dial), then connected to the visitor (a transfer)
    Walk("c2c-accepted", C2C,
         ("call_agent:dial", "whisper:play", "accept_menu:gather", "call_visitor:transfer"), "transferred",
         keys=("1",), ref="CB7",
         says={1: "Call from the website: Tan Wei Ming.", 2: "To accept the call, press 1.", 3: "Connecting you now."}),
    Walk("c2c-visitor-busy", C2C,
         ("call_agent:dial", "whisper:play", "accept_menu:gather", "call_visitor:transfer",
          "goodbye_not_reached:hangup"), "hung up by flow", keys=("1",), transfers=("busy",),
         decision="visitor_not_reached", ref="CB7", side_steps=(4,),
         says={4: "The visitor could not be reached."}),
    Walk("c2c-visitor-unanswered-report-fails", C2C,
         ("call_agent:dial", "whisper:play", "accept_menu:gather", "call_visitor:transfer",
          "goodbye_not_reached:hangup"), "hung up by flow", keys=("1",), transfers=("unanswered",),
         decision="visitor_not_reached", ref="FAIL8", side_steps=(4,)),
    Walk("c2c-declined", C2C,
         ("call_agent:dial", "whisper:play", "accept_menu:gather", "goodbye_not_called:hangup"), "hung up by flow",
         keys=("2",), decision="declined", ref="CB7", side_steps=(3,),
         says={3: "The visitor will not be called."}),
    Walk("c2c-no-input", C2C,
         ("call_agent:dial", "whisper:play", "accept_menu:gather", "accept_menu:gather",
          "goodbye_not_called:hangup"), "hung up by flow", keys=(None, None), decision="no_response", ref="CB7",
         side_steps=(4,)),
    Walk("c2c-invalid", C2C,
         ("call_agent:dial", "whisper:play", "accept_menu:gather", "accept_menu:gather", "accept_menu:gather",
          "goodbye_not_called:hangup"), "hung up by flow", keys=("7", "8", "9"), decision="no_response",
         ref="CB7", side_steps=(5,), says={3: "Please press 1 or 2."}),
    Walk("c2c-unanswered", C2C, ("call_agent:dial",), "dial unanswered", dial="unanswered",
         decision="agent_not_reached", ref="CB7"),
    Walk("c2c-busy", C2C, ("call_agent:dial",), "dial busy", dial="busy", decision="agent_not_reached", ref="CB7"),
    Walk("c2c-failed", C2C, ("call_agent:dial",), "dial failed", dial="failed", decision="agent_not_reached",
         ref="CB7"),
    # conference_outgoing: the organiser is called (the dial); the participants are dialled into the
    # room (conference/call, an engine step) and the organiser is transferred into it
    Walk("conf-started", CONF, ("call_organiser:dial", "announce:play", "join_room:transfer"), "transferred",
         ref="M42", side_steps=(2,),
         says={1: "Hello Lim, this is the Acme conference service.", 2: "Connecting you to the meeting room."}),
    Walk("conf-room-failed", CONF,
         ("call_organiser:dial", "announce:play", "join_room:transfer", "room_failed:hangup"), "hung up by flow",
         transfers=("failed",), ref="M42", side_steps=(2,),
         says={3: "we could not connect you to the meeting room"}),
    Walk("conf-unanswered", CONF, ("call_organiser:dial",), "dial unanswered", dial="unanswered",
         decision="organiser_not_reached", ref="M42"),
    Walk("conf-busy", CONF, ("call_organiser:dial",), "dial busy", dial="busy", decision="organiser_not_reached",
         ref="M42"),
    Walk("conf-failed-report-fails", CONF, ("call_organiser:dial",), "dial failed", dial="failed",
         decision="organiser_not_reached", ref="FAIL9"),
)  # fmt: skip

HANGUPS = [pytest.param(walk, k, id=f"{walk.id}-during-{k}-{walk.blocks[k + 1]}")
           for walk in WALKS if walk.dial == "answered" for k in range(len(walk.blocks) - 1)]  # fmt: skip


@dataclass
class Placed:
    key: str
    hoiio_session: str
    response: dict
    snapshot: Any
    call: Any
    blocks: list
    requests: list
    notifications: list
    reports: list[Hit]
    variables: dict[str, str]
    conferences: list  # the conference/call requests that dialled this call's participants


def place(walk: Walk, fake: FakeHoiio, server: Server, db: Database, web_service: RecordingServer,
          hangup_after: int | None = None) -> Placed:
    to = next_number()
    script = CallerScript(dial=walk.dial, keys=walk.keys, transfers=walk.transfers, hangup_after=hangup_after)
    fake.script_outbound(script, dest=to)
    api = f"{web_service.url}/api"
    if walk.flow == OTP:
        variables = {"code": OTP_CODE}
    elif walk.flow == BOOKING:
        variables = {"customer_name": "Tan", "booking_id": walk.ref, "booking_date": "24 November",
                     "booking_time": "7 pm", "party_size": "4", "api": api}
    elif walk.flow == C2C:
        variables = {"visitor_number": next_number(), "visitor_name": "Tan Wei Ming", "request_id": walk.ref,
                     "api": api}
    else:
        variables = {"organiser_name": "Lim", "meeting_id": walk.ref,
                     "participants": ", ".join(next_number() for _ in range(3)), "api": api}
    # conference/call's dest: the same numbers, joined by commas alone
    participants = variables["participants"].replace(", ", ",") if walk.flow == CONF else None
    before = len(web_service.snapshot())
    response = server.post("/api/calls", json={"flow": walk.flow, "to": to, "vars": variables},
                           headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 201, response.text
    body = response.json()
    key, hoiio_session = body["session"], body["hoiio_session"]
    assert response.headers["Location"] == f"/api/calls/{key}"
    try:
        snapshot = fake.wait_until_ended(hoiio_session, timeout=CALL_TIMEOUT)
    except TimeoutError:
        fake.hangup_caller(hoiio_session)
        raise
    wait_recorded(db, key)
    requests_ = [r for r in fake.log if r.params.get("session") == hoiio_session
                 or (r.endpoint == "ivr/start/dial" and r.params["dest"] == to)]
    notifications = [n for n in fake.notifications if n.session == hoiio_session]
    reports = [h for h in web_service.snapshot()[before:] if f"/{walk.ref}/" in h.path]
    conferences = [r for r in fake.log if r.endpoint == "conference/call" and r.params.get("dest") == participants]
    return Placed(key, hoiio_session, body, snapshot, db.get_call(key), db.blocks_for(key), requests_,
                  notifications, reports, variables, conferences)


def side_steps_before(walk: Walk, sent: int) -> int:
    """How many engine steps with a step number of their own ran before the ``sent``-th block."""
    return sum(1 for index in walk.side_steps if index < sent)


def assert_clean(placed: Placed, sent: int, http_steps: int = 0) -> None:
    """``sent`` blocks, all accepted; their steps increase by one, except that each ``http`` or
    ``conference`` step the flow ran in between took a step number of its own."""
    refused = [(r.endpoint, r.status) for r in placed.requests if r.status != "success_ok"]
    assert refused == []
    assert len(placed.requests) == sent
    steps = [b.step for b in placed.blocks]
    assert steps[0] == 1 and steps == sorted(set(steps)) and steps[-1] == sent + http_steps, steps
    assert all(b.status == "sent" for b in placed.blocks)
    assert [int(query_of(r.params["notify_url"])["step"]) for r in placed.requests] == steps
    assert all(r.params["app_id"] == APP_ID for r in placed.requests)
    posted = placed.notifications
    assert posted and all(n.http_status == 200 for n in posted), [(n.fields, n.http_status) for n in posted]
    assert posted[-1].fields["call_state"] == "ended"
    assert placed.call.status == "ended" and placed.call.direction == "outbound"


# ------------------------------------------------------------------------------------------ tests


def test_every_outbound_example_flow_is_walked_through_every_block_node() -> None:
    """A dial-started flow added to flows/, or a node added to one, needs a walk here. The ``end``
    nodes (a forced hangup after not reaching the person called) are never sent: the call is already
    over when the run reaches them (asserted by the not-answered walks)."""
    walked: dict[str, set[str]] = {}
    for walk in WALKS:
        walked.setdefault(walk.flow, set()).update(walk.nodes)
    for flow, node in [*ERROR_HANDLERS.values(), REFUSED_CONFERENCE]:
        walked.setdefault(flow, set()).add(node)
    for path in sorted(FLOWS.glob("*.yaml")):
        flow = yaml.safe_load(path.read_text())
        if flow["nodes"][flow["start"]]["type"] != "dial":
            continue
        assert path.stem in walked, f"{path.name} is not walked by any test"
        block_nodes = {n for n, spec in flow["nodes"].items()
                       if spec["type"] not in ("set", "branch", "hours", "goto", "http", "conference")}
        missing = block_nodes - walked[path.stem] - NEVER_SENT.get(path.stem, set())
        assert not missing, f"{path.name}: no walk sends a block from {sorted(missing)}"


def test_api_needs_the_token(api_server: Server) -> None:
    refused = api_server.post("/api/calls", json={"flow": OTP, "to": "+6598000000", "vars": {"code": "1"}})
    assert refused.status_code == 401
    wrong = api_server.post("/api/calls", json={"flow": OTP, "to": "+6598000000", "vars": {"code": "1"}},
                            headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    missing_input = api_server.post("/api/calls", json={"flow": OTP, "to": "+6598000000"},
                                    headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert missing_input.status_code == 422 and missing_input.json()["field"] == "vars.code"
    inbound = api_server.post("/api/calls", json={"flow": "auto_attendant", "to": "+6598000000"},
                              headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert inbound.status_code == 404


@pytest.mark.parametrize("walk", WALKS, ids=[w.id for w in WALKS])
def test_outbound_walk(walk: Walk, fake_hoiio: FakeHoiio, api_server: Server, db: Database,
                       web_service: RecordingServer) -> None:
    placed = place(walk, fake_hoiio, api_server, db, web_service)
    assert [(b.node, b.kind) for b in placed.blocks] == list(zip(walk.nodes, walk.kinds, strict=True))
    assert placed.snapshot.block_names == walk.kinds[1:]  # the fake lists the blocks after the dial
    assert_clean(placed, len(walk.blocks), http_steps=side_steps_before(walk, len(walk.blocks)))
    assert placed.call.outcome == walk.outcome
    assert placed.call.flow == walk.flow
    dial = placed.requests[0]
    assert dial.endpoint == "ivr/start/dial" and dial.params["caller_id"] == "+6531580000"
    for index, text in walk.says.items():
        msg = placed.snapshot.blocks[index - 1].params.get("msg", "")
        assert text in msg, (index, msg)
    if walk.decision is not None:
        assert len(placed.reports) == 1, placed.reports
        report = placed.reports[0]
        path, result_field = REPORTS[walk.flow]
        assert report.method == "POST" and report.path == path.format(ref=walk.ref)
        sent = report.json()
        assert sent[result_field] == walk.decision
        if walk.dial == "answered":
            assert report.headers.get("X-Source") == "ivr"
            assert sent["session"] == placed.key
        else:
            assert sent["dial_status"] == walk.dial
    else:
        assert placed.reports == []
    if walk.flow == C2C and "call_visitor:transfer" in walk.blocks:
        transfer = placed.requests[walk.blocks.index("call_visitor:transfer")]
        assert transfer.endpoint == "ivr/end/transfer"
        assert transfer.params["dest"] == placed.variables["visitor_number"]
        assert transfer.params["caller_id"] == "+6531580000" and transfer.params["on_failure"] == "continue"
    if walk.flow == CONF and "join_room:transfer" in walk.blocks:
        # the participants were dialled into the room the organiser is transferred into
        assert len(placed.conferences) == 1, placed.conferences
        conference = placed.conferences[0]
        assert conference.status == "success_ok"
        assert conference.params["room"] == f"meeting.{walk.ref}"
        assert conference.params["caller_id"] == "+6531580000"
        transfer = placed.requests[walk.blocks.index("join_room:transfer")]
        assert transfer.endpoint == "ivr/end/transfer"
        assert transfer.params["dest"] == f"room:meeting.{walk.ref}"
        assert transfer.params["room_profile"] == "ringing" and transfer.params["on_failure"] == "continue"
    elif walk.flow == CONF:
        assert placed.conferences == []  # the organiser was not reached: nobody else is called
    if walk.dial != "answered":
        assert placed.snapshot.end_reason == walk.dial
        assert len(placed.blocks) == 1  # nothing but the dial: the forced hangup is never sent


#: walk -> (flow, on_error node) reached when the first block after the dial is refused
ERROR_HANDLERS = {"otp-once": (OTP, "sorry"), "booking-confirmed": (BOOKING, "sorry"), "c2c-accepted": (C2C, "sorry"),
                  "conf-started": (CONF, "sorry")}  # fmt: skip
#: (flow, node) reached when Hoiio refuses to dial the participants (test_refused_conference_...)
REFUSED_CONFERENCE = (CONF, "participants_not_called")


@pytest.mark.parametrize("walk_id", sorted(ERROR_HANDLERS))
def test_refused_block_after_the_dial_reaches_the_error_handler(
    walk_id: str, fake_hoiio: FakeHoiio, api_server: Server, db: Database, web_service: RecordingServer
) -> None:
    walk = next(w for w in WALKS if w.id == walk_id)
    first = walk.kinds[1]
    fake_hoiio.inject(f"ivr/middle/{first}", status="error_msg_invalid_xml", times=1)
    try:
        placed = place(walk, fake_hoiio, api_server, db, web_service)
    finally:
        fake_hoiio.clear_faults()
    assert [f"{b.node}:{b.kind}" for b in placed.blocks] == [*walk.blocks[:2], "sorry:hangup"]
    assert placed.blocks[1].provider_status == "error_msg_invalid_xml"
    assert "Sorry" in placed.requests[-1].params["msg"]
    assert placed.call.status == "ended" and placed.call.state["errors"] == 1
    assert placed.snapshot.end_reason == "hangup"
    assert placed.reports == []
    assert placed.conferences == []


def test_refused_conference_takes_the_failed_exit(
    fake_hoiio: FakeHoiio, api_server: Server, db: Database, web_service: RecordingServer
) -> None:
    """conference_outgoing: Hoiio refuses to dial the participants; the organiser hears an apology
    instead of being put into an empty room."""
    walk = next(w for w in WALKS if w.id == "conf-started")
    fake_hoiio.inject("conference/call", status="error_insufficient_credit", times=1)
    try:
        placed = place(walk, fake_hoiio, api_server, db, web_service)
    finally:
        fake_hoiio.clear_faults()
    flow, node = REFUSED_CONFERENCE
    assert placed.call.flow == flow
    assert [f"{b.node}:{b.kind}" for b in placed.blocks] == [*walk.blocks[:2], f"{node}:hangup"]
    assert [c.status for c in placed.conferences] == ["error_insufficient_credit"]
    assert_clean(placed, 3, http_steps=1)
    assert "could not call the participants" in placed.requests[-1].params["msg"]
    assert placed.call.outcome == "hung up by flow" and placed.call.state["errors"] == 0
    assert placed.snapshot.end_reason == "hangup"


@pytest.mark.parametrize(("walk", "hangup_after"), HANGUPS)
def test_callee_hangs_up(walk: Walk, hangup_after: int, fake_hoiio: FakeHoiio, api_server: Server, db: Database,
                         web_service: RecordingServer) -> None:
    """The person called hangs up during block ``hangup_after`` after the dial: the call is over, no
    block follows, and no report is sent unless the flow's http step ran before that block (the
    reports run just before the goodbye)."""
    placed = place(walk, fake_hoiio, api_server, db, web_service, hangup_after=hangup_after)
    sent = hangup_after + 2  # the dial, then the blocks up to the one interrupted
    assert [(b.node, b.kind) for b in placed.blocks] == list(zip(walk.nodes[:sent], walk.kinds[:sent], strict=True))
    kind = walk.kinds[sent - 1]
    side_steps = side_steps_before(walk, sent)
    assert_clean(placed, sent, http_steps=side_steps)
    reported = walk.decision is not None and side_steps > 0
    assert len(placed.reports) == (1 if reported else 0)
    if walk.flow == CONF:  # the participants are called after the announcement, not before
        assert len(placed.conferences) == side_steps
    if kind == "hangup":
        assert placed.call.outcome == "hung up by flow"
    elif kind == "transfer":
        # Hoiio reports a caller who leaves during a transfer as call_state=ended without a
        # transfer_status; the engine counts that as transferred (as in test_e2e_flows.py).
        assert placed.call.outcome in ("caller hung up", "transferred")
        assert placed.snapshot.end_reason == "caller_hangup"
    else:
        assert placed.call.outcome == "caller hung up"
        assert placed.snapshot.end_reason == "caller_hangup"
