"""Outbound example flows (a ``dial`` start node), placed through the HTTP API (``POST /api/calls``).

The engine runs under gunicorn with ``IVR_API_TOKEN`` set; the strict fake Hoiio (in this process)
plays the person called (``FakeHoiio.script_outbound``: answers or not, keys, hang-ups). The
booking flow reports to a "bookings service" (a recording HTTP server in this process): its ``api``
variable is given with the call (the API takes any variable), and ``IVR_HTTP_ALLOW_PRIVATE=1`` lets
the flow's ``http`` step reach loopback.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from e2e_support import APP_ID, FLOWS, Hit, RecordingServer, Server, query_of, start_gunicorn

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
def bookings() -> Iterator[RecordingServer]:
    """The bookings service the booking flow reports to (500 for booking ids starting with FAIL)."""
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
    decision: str | None = None  # what the booking flow reports, None: no report
    booking: str = "B42"
    says: dict[int, str] = field(default_factory=dict)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(b.split(":")[0] for b in self.blocks)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(b.split(":")[1] for b in self.blocks)


OTP = "two_factor_voice"
BOOKING = "booking_confirmation"
OTP_CODE = "482913"

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
         "hung up by flow", keys=("1",), decision="confirmed",
         says={1: "Hello Tan, this is Acme Bistro calling about your booking for 4 on 24 November at 7 pm.",
               3: "your booking is confirmed"}),
    Walk("booking-cancelled", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "goodbye_cancelled:hangup"),
         "hung up by flow", keys=("2",), decision="cancelled"),
    Walk("booking-no-input", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "confirm_menu:gather", "goodbye_later:hangup"),
         "hung up by flow", keys=(None, None), decision="no_response"),
    Walk("booking-invalid", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "confirm_menu:gather", "confirm_menu:gather",
          "goodbye_later:hangup"), "hung up by flow", keys=("7", "8", "9"), decision="no_response",
         says={3: "Please press 1 or 2."}),
    Walk("booking-report-fails", BOOKING,
         ("call_customer:dial", "details:play", "confirm_menu:gather", "goodbye_confirmed:hangup"),
         "hung up by flow", keys=("1",), decision="confirmed", booking="FAIL7"),
    Walk("booking-unanswered", BOOKING, ("call_customer:dial",), "dial unanswered", dial="unanswered",
         decision="not_reached"),
    Walk("booking-busy", BOOKING, ("call_customer:dial",), "dial busy", dial="busy", decision="not_reached"),
    Walk("booking-failed", BOOKING, ("call_customer:dial",), "dial failed", dial="failed", decision="not_reached"),
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


def place(walk: Walk, fake: FakeHoiio, server: Server, db: Database, bookings: RecordingServer,
          hangup_after: int | None = None) -> Placed:
    to = next_number()
    fake.script_outbound(CallerScript(dial=walk.dial, keys=walk.keys, hangup_after=hangup_after), dest=to)
    if walk.flow == OTP:
        variables = {"code": OTP_CODE}
    else:
        variables = {"customer_name": "Tan", "booking_id": walk.booking, "booking_date": "24 November",
                     "booking_time": "7 pm", "party_size": "4", "api": f"{bookings.url}/api"}
    before = len(bookings.snapshot())
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
    requests_ = [r for r in fake.log if r.params.get("session") == hoiio_session
                 or (r.endpoint == "ivr/start/dial" and r.params["dest"] == to)]
    notifications = [n for n in fake.notifications if n.session == hoiio_session]
    reports = [h for h in bookings.snapshot()[before:] if f"/{walk.booking}/" in h.path]
    return Placed(key, hoiio_session, body, snapshot, db.get_call(key), db.blocks_for(key), requests_,
                  notifications, reports)


def assert_clean(placed: Placed, sent: int, http_steps: int = 0) -> None:
    """``sent`` blocks, all accepted; their steps increase by one, except that each ``http`` step the
    flow ran in between took a step number of its own."""
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
    """A dial-started flow added to flows/, or a node added to one, needs a walk here. The booking
    flow's ``end`` (a forced hangup after not reaching the customer) is never sent: the call is
    already over when the run reaches it (asserted by the not-answered walks)."""
    walked: dict[str, set[str]] = {}
    for walk in WALKS:
        walked.setdefault(walk.flow, set()).update(walk.nodes)
    for flow, node in ERROR_HANDLERS.values():
        walked.setdefault(flow, set()).add(node)
    for path in sorted(FLOWS.glob("*.yaml")):
        flow = yaml.safe_load(path.read_text())
        if flow["nodes"][flow["start"]]["type"] != "dial":
            continue
        assert path.stem in walked, f"{path.name} is not walked by any test"
        block_nodes = {n for n, spec in flow["nodes"].items()
                       if spec["type"] not in ("set", "branch", "hours", "goto", "http", "conference")}
        missing = block_nodes - walked[path.stem] - ({"end"} if path.stem == BOOKING else set())
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
                       bookings: RecordingServer) -> None:
    placed = place(walk, fake_hoiio, api_server, db, bookings)
    assert [(b.node, b.kind) for b in placed.blocks] == list(zip(walk.nodes, walk.kinds, strict=True))
    assert placed.snapshot.block_names == walk.kinds[1:]  # the fake lists the blocks after the dial
    reported_in_call = walk.flow == BOOKING and walk.dial == "answered"
    assert_clean(placed, len(walk.blocks), http_steps=1 if reported_in_call else 0)
    assert placed.call.outcome == walk.outcome
    assert placed.call.flow == walk.flow
    dial = placed.requests[0]
    assert dial.endpoint == "ivr/start/dial" and dial.params["caller_id"] == "+6531580000"
    for index, text in walk.says.items():
        msg = placed.snapshot.blocks[index - 1].params.get("msg", "")
        assert text in msg, (index, msg)
    if walk.flow == BOOKING:
        assert len(placed.reports) == 1, placed.reports
        report = placed.reports[0]
        assert report.method == "POST" and report.path == f"/api/bookings/{walk.booking}/confirmation"
        sent = report.json()
        assert sent["decision"] == walk.decision
        if walk.dial == "answered":
            assert report.headers.get("X-Source") == "ivr"
            assert sent["session"] == placed.key
        else:
            assert sent["dial_status"] == walk.dial
    else:
        assert placed.reports == []
    if walk.dial != "answered":
        assert placed.snapshot.end_reason == walk.dial
        assert len(placed.blocks) == 1  # nothing but the dial: the forced hangup is never sent


#: walk -> (flow, on_error node) reached when the first block after the dial is refused
ERROR_HANDLERS = {"otp-once": (OTP, "sorry"), "booking-confirmed": (BOOKING, "sorry")}


@pytest.mark.parametrize("walk_id", sorted(ERROR_HANDLERS))
def test_refused_block_after_the_dial_reaches_the_error_handler(
    walk_id: str, fake_hoiio: FakeHoiio, api_server: Server, db: Database, bookings: RecordingServer
) -> None:
    walk = next(w for w in WALKS if w.id == walk_id)
    first = walk.kinds[1]
    fake_hoiio.inject(f"ivr/middle/{first}", status="error_msg_invalid_xml", times=1)
    try:
        placed = place(walk, fake_hoiio, api_server, db, bookings)
    finally:
        fake_hoiio.clear_faults()
    assert [f"{b.node}:{b.kind}" for b in placed.blocks] == [*walk.blocks[:2], "sorry:hangup"]
    assert placed.blocks[1].provider_status == "error_msg_invalid_xml"
    assert "Sorry" in placed.requests[-1].params["msg"]
    assert placed.call.status == "ended" and placed.call.state["errors"] == 1
    assert placed.snapshot.end_reason == "hangup"
    assert placed.reports == []


@pytest.mark.parametrize(("walk", "hangup_after"), HANGUPS)
def test_callee_hangs_up(walk: Walk, hangup_after: int, fake_hoiio: FakeHoiio, api_server: Server, db: Database,
                         bookings: RecordingServer) -> None:
    """The person called hangs up during block ``hangup_after`` after the dial: the call is over, no
    block follows, and the booking flow sends no report (its http step comes after the menu)."""
    placed = place(walk, fake_hoiio, api_server, db, bookings, hangup_after=hangup_after)
    sent = hangup_after + 2  # the dial, then the blocks up to the one interrupted
    assert [(b.node, b.kind) for b in placed.blocks] == list(zip(walk.nodes[:sent], walk.kinds[:sent], strict=True))
    kind = walk.kinds[sent - 1]
    reported = walk.flow == BOOKING and kind == "hangup"  # the report runs just before the goodbye
    assert_clean(placed, sent, http_steps=1 if reported else 0)
    assert len(placed.reports) == (1 if reported else 0)
    if kind == "hangup":
        assert placed.call.outcome == "hung up by flow"
    else:
        assert placed.call.outcome == "caller hung up"
        assert placed.snapshot.end_reason == "caller_hangup"
