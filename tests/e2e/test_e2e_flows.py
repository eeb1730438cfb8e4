"""Scripted callers walk every inbound example flow over real HTTP on loopback.

The engine runs as its own process (gunicorn, 2 gthread workers, SQLite); the strict fake Hoiio runs
in this process (``FakeHoiio.start``) and plays the caller: it posts the Answer notification to
``/hoiio/answer`` for the flow's number, checks every block the engine sends, and posts each block's
signed notification back to the ``notify_url`` the engine chose.

Each walk lists the (node, block) pairs the engine must send, in order. Every walk is run to its end,
then once more for every block during which the caller can hang up (``hangup_after`` 0..N-1): the
call must be ``ended`` in the database, nothing may be sent after the hang-up, and the fake must not
have refused a single request.

Outbound flows (booking_confirmation, two_factor_voice, click_to_call, conference_outgoing: their
start node is a ``dial``) are walked in test_e2e_outbound.py, placed through ``POST /api/calls``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

import pytest
import yaml
from e2e_support import APP_ID, FLOWS, SINGAPORE, WEEKDAYS, Server, query_of, signed, wait_recorded

from engine.fakes import CallerScript, FakeHoiio
from engine.storage import Database

pytestmark = pytest.mark.slow

CALL_TIMEOUT = 15.0
CALLER = "+6591234567"

ACME_MAIN = "+6531580000"
CONFERENCE = "+6531580010"
FLORIST = "+6531580020"
FLORIST_OPEN = "+6531580021"
FLORIST_CLOSED = "+6531580022"
FLORIST_HOLIDAY = "+6531580023"

#: How a call ends when it runs to its last block.
TRANSFERRED = "transferred"
HUNG_UP_BY_FLOW = "hung up by flow"


@dataclass(frozen=True)
class Walk:
    """One way through a flow: the caller's script and the blocks the engine must send."""

    id: str
    number: str
    flow: str
    blocks: tuple[str, ...]  # "node:block" for each block sent, in order
    outcome: str
    keys: tuple[str | None, ...] = ()
    transfers: tuple[str, ...] = ()
    #: block index -> parameters that block must carry (subset), e.g. the transfer destination
    params: dict[int, dict[str, str]] = field(default_factory=dict)
    #: block index -> text the block's msg must contain
    says: dict[int, str] = field(default_factory=dict)
    #: flow variables the call must end with
    vars: dict[str, str] = field(default_factory=dict)

    def script(self, hangup_after: int | None = None) -> CallerScript:
        return CallerScript(keys=self.keys, transfers=self.transfers, hangup_after=hangup_after)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(b.split(":")[1] for b in self.blocks)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(b.split(":")[0] for b in self.blocks)


WALKS: tuple[Walk, ...] = (
    # ---------------------------------------------------------------- auto_attendant (+6531580000)
    Walk("acme-sales", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "sales:transfer"), TRANSFERRED, keys=("1",),
         params={1: {"max_digits": "1", "timeout": "6", "tag": "main-menu"},
                 2: {"dest": "+6531580001", "on_failure": "continue", "ring_time": "25", "tag": "sales"}},
         says={0: "Thank you for calling Acme.", 1: "For sales, press 1.", 2: "Connecting you to sales."}),
    Walk("acme-support", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "support:transfer"), TRANSFERRED, keys=("2",),
         params={2: {"dest": "+6531580002"}}),
    Walk("acme-accounts", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "accounts:transfer"), TRANSFERRED, keys=("3",),
         params={2: {"dest": "+6531580003"}}),
    Walk("acme-voicemail", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "voicemail:record", "goodbye:hangup"), HUNG_UP_BY_FLOW, keys=("0",),
         params={2: {"max_duration": "120", "tag": "voicemail"}},
         says={3: "We will call you back"}),
    Walk("acme-sales-busy", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "sales:transfer", "nobody_free:play", "voicemail:record",
          "goodbye:hangup"), HUNG_UP_BY_FLOW, keys=("1",), transfers=("busy",),
         says={3: "everyone in that team is busy"}),
    Walk("acme-support-unanswered", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "support:transfer", "nobody_free:play", "voicemail:record",
          "goodbye:hangup"), HUNG_UP_BY_FLOW, keys=("2",), transfers=("unanswered",)),
    Walk("acme-accounts-failed", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "accounts:transfer", "nobody_free:play", "voicemail:record",
          "goodbye:hangup"), HUNG_UP_BY_FLOW, keys=("3",), transfers=("failed",)),
    Walk("acme-no-input", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "main_menu:gather", "voicemail:record", "goodbye:hangup"),
         HUNG_UP_BY_FLOW, keys=(None, None),
         says={2: "Sorry, I didn't hear anything."}),
    Walk("acme-invalid", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "main_menu:gather", "main_menu:gather", "voicemail:record",
          "goodbye:hangup"), HUNG_UP_BY_FLOW, keys=("9", "8", "7"),
         says={2: "Sorry, that is not one of the options.", 3: "Press 1 for sales, 2 for support"}),
    Walk("acme-no-input-invalid-then-support", ACME_MAIN, "auto_attendant",
         ("welcome:play", "main_menu:gather", "main_menu:gather", "main_menu:gather", "support:transfer"),
         TRANSFERRED, keys=(None, "7", "2"), params={4: {"dest": "+6531580002"}}),
    # ---------------------------------------------------------------- conference_incoming (+6531580010)
    Walk("conf-team", CONFERENCE, "conference_incoming",
         ("welcome:gather", "team_room:transfer"), TRANSFERRED, keys=("2",),
         params={1: {"dest": "room:team.daily", "room_profile": "ringing", "on_failure": "continue"}}),
    Walk("conf-code", CONFERENCE, "conference_incoming",
         ("welcome:gather", "ask_code:gather", "join_room:transfer"), TRANSFERRED, keys=("1", "123456"),
         params={1: {"max_digits": "6", "timeout": "15"}, 2: {"dest": "room:R123456", "room_profile": "music"}},
         says={2: "Joining meeting 1 2 3 4 5 6."}, vars={"room_code": "123456"}),
    Walk("conf-code-retry", CONFERENCE, "conference_incoming",
         ("welcome:gather", "ask_code:gather", "ask_code:gather", "ask_code:gather", "join_room:transfer"),
         TRANSFERRED, keys=("1", None, "12", "654321#"),
         params={4: {"dest": "room:R654321"}}, says={2: "I didn't get a code.", 3: "That is not a 6-digit code."}),
    Walk("conf-code-invalid", CONFERENCE, "conference_incoming",
         ("welcome:gather", "ask_code:gather", "ask_code:gather", "ask_code:gather", "goodbye:hangup"),
         HUNG_UP_BY_FLOW, keys=("1", "12", "1", "99")),
    Walk("conf-code-no-input", CONFERENCE, "conference_incoming",
         ("welcome:gather", "ask_code:gather", "ask_code:gather", "goodbye:hangup"), HUNG_UP_BY_FLOW,
         keys=("1", None, None)),
    Walk("conf-menu-no-input", CONFERENCE, "conference_incoming",
         ("welcome:gather", "welcome:gather", "goodbye:hangup"), HUNG_UP_BY_FLOW, keys=(None, None)),
    Walk("conf-menu-invalid", CONFERENCE, "conference_incoming",
         ("welcome:gather", "welcome:gather", "welcome:gather", "goodbye:hangup"), HUNG_UP_BY_FLOW,
         keys=("5", "5", "5"), says={1: "Please press 1 or 2."}),
    Walk("conf-room-failed", CONFERENCE, "conference_incoming",
         ("welcome:gather", "ask_code:gather", "join_room:transfer", "room_failed:hangup"), HUNG_UP_BY_FLOW,
         keys=("1", "123456"), transfers=("failed",), says={3: "could not connect you to the meeting"}),
    # ---------------------------------------------------------------- small_business, clock-independent copies
    Walk("florist-open-info-then-operator", FLORIST_OPEN, "small_business_open",
         ("main_menu:gather", "info:play", "main_menu:gather", "operator:transfer"), TRANSFERRED, keys=("1", "0"),
         params={3: {"dest": "+6562345678", "ring_time": "20"}},
         says={0: "Welcome to Acme Florist.", 1: "10 Orchard Road"}),
    Walk("florist-open-nobody-answers", FLORIST_OPEN, "small_business_open",
         ("main_menu:gather", "operator:transfer", "backup_operator:transfer", "nobody_free:play",
          "voicemail:record", "goodbye:hangup"), HUNG_UP_BY_FLOW, keys=("0",), transfers=("busy", "unanswered"),
         params={2: {"dest": "+6591234567"}, 4: {"max_duration": "180"}}),
    Walk("florist-open-no-input", FLORIST_OPEN, "small_business_open",
         ("main_menu:gather", "main_menu:gather", "operator:transfer"), TRANSFERRED, keys=(None, None)),
    Walk("florist-open-invalid", FLORIST_OPEN, "small_business_open",
         ("main_menu:gather", "main_menu:gather", "main_menu:gather", "operator:transfer"), TRANSFERRED,
         keys=("5", "5", "5")),
    Walk("florist-closed", FLORIST_CLOSED, "small_business_closed",
         ("closed_message:play", "voicemail:record", "goodbye:hangup"), HUNG_UP_BY_FLOW,
         says={0: "We are open Monday to Friday", 2: "Thank you for calling Acme Florist. Goodbye."}),
    Walk("florist-holiday", FLORIST_HOLIDAY, "small_business_holiday",
         ("holiday_message:play", "voicemail:record", "goodbye:hangup"), HUNG_UP_BY_FLOW,
         says={0: "closed today for the public holiday"}),
)  # fmt: skip

HANGUPS = [pytest.param(walk, k, id=f"{walk.id}-during-{k}-{walk.blocks[k]}")
           for walk in WALKS for k in range(len(walk.blocks))]  # fmt: skip


# ------------------------------------------------------------------------------------------ helpers


@dataclass
class Placed:
    session: str
    snapshot: Any
    call: Any
    blocks: list
    requests: list
    notifications: list


def place_call(fake: FakeHoiio, server: Server, db: Database, number: str, script: CallerScript) -> Placed:
    """The caller dials ``number``; returns once the call is over and every notification answered."""
    sid = fake.incoming_call(f"{server.url}/hoiio/answer", caller=CALLER, to=number, script=script)
    try:
        snapshot = fake.wait_until_ended(sid, timeout=CALL_TIMEOUT)
    except TimeoutError:
        fake.hangup_caller(sid)  # never leave a live call behind for the next test
        raise
    wait_recorded(db, sid)
    requests_ = [r for r in fake.log if r.params.get("session") == sid]
    notifications = [n for n in fake.notifications if n.session == sid]
    return Placed(sid, snapshot, db.get_call(sid), db.blocks_for(sid), requests_, notifications)


def assert_clean_exchange(placed: Placed, sent: int) -> None:
    """Exactly ``sent`` blocks went out, all accepted by the strict fake, with contiguous steps, and
    every notification the fake posted was answered 200 and recorded as accepted."""
    sid = placed.session
    refused = [(r.endpoint, r.status) for r in placed.requests if r.status != "success_ok"]
    assert refused == [], f"the fake refused requests for {sid}: {refused}"
    assert len(placed.requests) == sent, [r.endpoint for r in placed.requests]
    assert len(placed.snapshot.blocks) == sent
    assert [b.step for b in placed.blocks] == list(range(1, sent + 1))
    assert all(b.status == "sent" and b.provider_status == "success_ok" for b in placed.blocks), [
        (b.step, b.status, b.provider_status) for b in placed.blocks
    ]
    steps = [int(query_of(r.params["notify_url"])["step"]) for r in placed.requests]
    assert steps == list(range(1, sent + 1)), steps
    assert all(r.params.get("app_id") == APP_ID and r.params.get("access_token") == "***" for r in placed.requests)
    # the Answer notification plus one per block (the last one says call_state=ended)
    assert len(placed.notifications) == sent + 1
    assert [n.http_status for n in placed.notifications] == [200] * (sent + 1), [
        (n.fields.get("ivr_block"), n.http_status, n.error) for n in placed.notifications
    ]
    assert placed.notifications[-1].fields["call_state"] == "ended"
    assert placed.call is not None and placed.call.status == "ended"
    assert placed.call.step == sent


def msg_of(placed: Placed, index: int) -> str:
    return placed.snapshot.blocks[index].params.get("msg", "")


# ------------------------------------------------------------------------------------------ tests

#: Node types the engine runs itself: they send no block.
ENGINE_NODES = frozenset({"set", "branch", "hours", "goto", "http", "conference"})


def example_flows() -> dict[str, dict]:
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted(FLOWS.glob("*.yaml"))}


def test_every_inbound_example_flow_is_walked_through_every_block_node() -> None:
    """A flow added to flows/, or a node added to one, needs a walk here. Outbound flows (a dial
    start node) are walked in test_e2e_outbound.py; each flow's on_error node is reached in
    test_e2e_faults.py."""
    walked: dict[str, set[str]] = {}
    for walk in WALKS:
        base = walk.flow.removesuffix("_open").removesuffix("_closed").removesuffix("_holiday")
        walked.setdefault(base, set()).update(walk.nodes)
    for name, flow in example_flows().items():
        if flow["nodes"][flow["start"]]["type"] == "dial":
            assert name not in walked
            continue
        assert name in walked, f"flows/{name}.yaml is not walked by any test"
        block_nodes = {n for n, spec in flow["nodes"].items() if spec["type"] not in ENGINE_NODES}
        missing = block_nodes - walked[name] - {flow.get("on_error")}
        assert not missing, f"flows/{name}.yaml: no walk sends a block from {sorted(missing)}"



def test_server_is_ready_with_every_flow(sqlite_server: Server) -> None:
    ready = sqlite_server.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ok" and body["checks"]["database"] == "ok"
    expected = {p.stem for p in FLOWS.glob("*.yaml")} | {
        "small_business_open", "small_business_closed", "small_business_holiday",
    }  # fmt: skip
    assert set(body["checks"]["flows"]) == expected
    assert sqlite_server.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("walk", WALKS, ids=[w.id for w in WALKS])
def test_walk_to_the_end(walk: Walk, fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database) -> None:
    placed = place_call(fake_hoiio, sqlite_server, sqlite_db, walk.number, walk.script())

    assert placed.snapshot.block_names == walk.kinds
    assert [(b.node, b.kind) for b in placed.blocks] == list(zip(walk.nodes, walk.kinds, strict=True))
    assert_clean_exchange(placed, len(walk.blocks))

    call = placed.call
    assert call.flow == walk.flow and call.direction == "inbound"
    assert (call.caller, call.called) == (CALLER, walk.number)
    assert call.outcome == walk.outcome
    assert call.ended_at is not None
    assert call.billing and call.billing.get("currency") == "SGD"
    expected_end = "transferred" if walk.outcome == TRANSFERRED else "hangup"
    assert placed.snapshot.end_reason == expected_end

    for index, wanted in walk.params.items():
        sent = placed.snapshot.blocks[index].params
        assert {k: sent.get(k) for k in wanted} == wanted, (index, dict(sent))
    for index, text in walk.says.items():
        assert text in msg_of(placed, index), (index, msg_of(placed, index))
    state_vars = call.state["vars"]
    for name, value in walk.vars.items():
        assert state_vars.get(name) == value
    if "voicemail:record" in walk.blocks:
        # the recording's address the fake reported is kept in the flow variable
        record_url = next(n.fields["record_url"] for n in placed.notifications if n.fields.get("ivr_block") == "record")
        name = "voicemail_url" if walk.flow == "auto_attendant" else "recording_url"
        assert state_vars.get(name) == record_url

    recorded = sqlite_db.recent_notifications(50, session=placed.session)
    assert len(recorded) == len(walk.blocks) + 1
    assert {n.outcome for n in recorded} == {"accepted"}


@pytest.mark.parametrize(("walk", "hangup_after"), HANGUPS)
def test_caller_hangs_up(
    walk: Walk, hangup_after: int, fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """The caller hangs up during block ``hangup_after`` (0-based): the call is over and nothing more
    is sent."""
    placed = place_call(fake_hoiio, sqlite_server, sqlite_db, walk.number, walk.script(hangup_after))
    sent = hangup_after + 1

    assert placed.snapshot.block_names == walk.kinds[:sent]
    assert [(b.node, b.kind) for b in placed.blocks] == list(zip(walk.nodes[:sent], walk.kinds[:sent], strict=True))
    assert_clean_exchange(placed, sent)

    kind = walk.kinds[hangup_after]
    outcome = placed.call.outcome
    if kind == "hangup":
        assert outcome == HUNG_UP_BY_FLOW
        assert placed.snapshot.end_reason == "hangup"
    elif kind == "transfer":
        # Hoiio reports a caller who leaves during a transfer as call_state=ended without a
        # transfer_status; the engine counts that as transferred (see the test report).
        assert outcome in ("caller hung up", TRANSFERRED)
        assert placed.snapshot.end_reason == "caller_hangup"
    else:
        assert outcome == "caller hung up"
        assert placed.snapshot.end_reason == "caller_hangup"
        assert [list(p) for p in placed.call.state["path"]][-1] == [walk.nodes[hangup_after], "hang-up"]
    if kind == "record":
        ended = placed.notifications[-1].fields
        name = "voicemail_url" if walk.flow == "auto_attendant" else "recording_url"
        assert placed.call.state["vars"].get(name) == ended["record_url"]  # a partial message is kept


def test_notification_without_the_engines_step_is_refused(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """A notification posted to /hoiio/notify without the signed step of a notify URL is refused
    (400) and nothing is sent."""
    fields = {"ivr_block": "play", "session": "S-unknown-1", "txn_ref": "AA-unknown-1", "call_state": "ended",
              "from": CALLER, "to": ACME_MAIN}
    body, headers = signed(fields)
    before = len(fake_hoiio.log)
    answer = sqlite_server.post("/hoiio/notify", data=body, headers=headers)
    assert answer.status_code == 400  # no step: notify URLs are the engine's own
    assert len(fake_hoiio.log) == before
    assert sqlite_db.get_call("S-unknown-1") is None


# ------------------------------------------------------------------------------------------ the real clock


def florist_branch(now: datetime) -> str:
    """Which exit flows/small_business.yaml's hours node takes at ``now`` (open / closed / holiday)."""
    flow = yaml.safe_load((FLOWS / "small_business.yaml").read_text())
    hours = flow["nodes"]["check_hours"]
    local = now.astimezone(SINGAPORE)
    if local.date().isoformat() in hours.get("holidays", []):
        return "holiday"
    for key, ranges in hours["weekly"].items():
        first, _, last = key.partition("-")
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days = [(start + i) % 7 for i in range((end - start) % 7 + 1)]
        if local.weekday() not in days:
            continue
        for text in ranges if isinstance(ranges, list) else [ranges]:
            begin, _, finish = text.partition("-")
            lo = time.fromisoformat(begin)
            if finish == "24:00":
                inside = local.time() >= lo
            else:
                inside = lo <= local.time() < time.fromisoformat(finish)
            if inside:
                return "open"
    return "closed"


FLORIST_BY_BRANCH = {
    "open": ("main_menu:gather", "operator:transfer", "backup_operator:transfer", "nobody_free:play",
             "voicemail:record", "goodbye:hangup"),
    "closed": ("closed_message:play", "voicemail:record", "goodbye:hangup"),
    "holiday": ("holiday_message:play", "voicemail:record", "goodbye:hangup"),
}  # fmt: skip


def test_small_business_as_shipped_follows_the_clock(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """flows/small_business.yaml itself, on its own number: the branch taken is the one its opening
    hours give for the current time in Singapore."""
    before = florist_branch(datetime.now(SINGAPORE))
    placed = place_call(fake_hoiio, sqlite_server, sqlite_db, FLORIST,
                        CallerScript(keys=("0",), transfers=("busy", "busy")))
    after = florist_branch(datetime.now(SINGAPORE))
    taken = [f"{b.node}:{b.kind}" for b in placed.blocks]
    assert taken in ([*FLORIST_BY_BRANCH[before]], [*FLORIST_BY_BRANCH[after]]), (before, after, taken)
    assert_clean_exchange(placed, len(taken))
    assert placed.call.flow == "small_business"
    assert placed.call.outcome == HUNG_UP_BY_FLOW
    assert [list(p) for p in placed.call.state["path"]][0][0] == "check_hours"


def test_outbound_flows_are_refused_on_the_answer_url(
    fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database
) -> None:
    """An incoming call cannot start a flow whose start node is a dial: 400, nothing sent."""
    outbound = sorted(name for name, flow in example_flows().items() if flow["nodes"][flow["start"]]["type"] == "dial")
    assert outbound == ["booking_confirmation", "click_to_call", "conference_outgoing", "two_factor_voice"]
    for flow in outbound:
        fields = {"ivr_block": "answer", "call_state": "ringing", "session": f"S-out-{flow}",
                  "txn_ref": f"AA-out-{flow}", "from": CALLER, "to": ACME_MAIN}
        body, headers = signed(fields)
        before = len(fake_hoiio.log)
        answer = sqlite_server.post(f"/hoiio/answer/{flow}", data=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert "outbound" in answer.json()["error"]
        assert len(fake_hoiio.log) == before
        assert sqlite_db.get_call(f"S-out-{flow}") is None


def test_forged_notifications_are_refused(fake_hoiio: FakeHoiio, sqlite_server: Server, sqlite_db: Database) -> None:
    """Over real HTTP with verification on: a body signed with another key, and a genuine body whose
    notify-URL step was changed, are refused (403); nothing is sent and no call starts or moves."""
    answer = {"ivr_block": "answer", "call_state": "ringing", "session": "S-forged-1", "txn_ref": "AA-forged-1",
              "from": CALLER, "to": ACME_MAIN}
    body, headers = signed(answer, token="not-the-token")
    before = len(fake_hoiio.log)
    refused = sqlite_server.post("/hoiio/answer", data=body, headers=headers)
    assert refused.status_code == 403, refused.text
    assert sqlite_db.get_call("S-forged-1") is None

    # a real call, waiting in the menu; its gather notification replayed with step+1 and the same sig
    placed_sid = fake_hoiio.incoming_call(f"{sqlite_server.url}/hoiio/answer", caller=CALLER, to=ACME_MAIN,
                                          script=CallerScript(keys=("1",), hangup_after=1))
    fake_hoiio.wait_until_ended(placed_sid, timeout=CALL_TIMEOUT)
    gather = next(r for r in fake_hoiio.log if r.params.get("session") == placed_sid and r.endpoint.endswith("gather"))
    query = query_of(gather.params["notify_url"])
    tampered = f"/hoiio/notify?step={int(query['step']) + 1}&sig={query['sig']}"
    fields = {"ivr_block": "gather", "session": placed_sid, "call_state": "ongoing", "digits": "1"}
    body, headers = signed(fields)
    refused = sqlite_server.post(tampered, data=body, headers=headers)
    assert refused.status_code == 403, refused.text
    assert [r for r in fake_hoiio.log[before:] if r.params.get("session") in ("S-forged-1",)] == []
    assert sqlite_db.get_call(placed_sid).outcome == "caller hung up"
    assert len(sqlite_db.blocks_for(placed_sid)) == 2
