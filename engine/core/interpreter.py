"""The interpreter: walks a compiled flow, one event at a time, without doing any I/O.

Theory of operation
-------------------
A call is a ``CallState`` value. ``start()`` makes the first one for a new call; ``step()`` takes the
current state and one event and returns a ``Step``: the next state, the actions to perform (Hoiio
blocks, HTTP calls, side calls), a short outcome, the ``(node, exit)`` pairs taken and log lines.
Nothing here reads a clock, a database or the network: time comes in as ``now``, results come back
as events.

A *run* goes from node to node. Entering a node is looked up in ``ENTER_NODE`` (node kind ->
handler). Engine nodes (set, branch, hours, goto) return the exit to follow at once; ``http``,
``conference`` and ``voipnow_invite`` issue an ``HttpCall`` / ``SideCall``; block nodes issue one
``Block``. The run stops at the first action that awaits an answer (``hold`` awaits nothing: the run
goes on, and the next block must be ``unhold``). When the answer arrives, ``NODE_RESULT`` (node kind
-> handler) turns it into an exit, and a new run starts from that exit's target.

Every action gets ``step = state.step + 1`` and the state remembers the newest one. An event for any
other step is *stale* and changes nothing, which also makes duplicate notifications harmless. Two
facts are never stale while the call is active, because they are true whatever step they mention:
``call_state=ended`` (for the current or an earlier step, or without a step) and a provider saying
the session is over.

Failures (a template that cannot render, a bad transfer destination, a rejected block without an
exit of its own, more than ``MAX_ENGINE_TRANSITIONS`` engine transitions in one run) go to the error
handler: the first failure of a call goes to the flow's ``on_error`` node; later ones (or any, in a
flow without ``on_error``) hang up with ``DEFAULT_APOLOGY``; if even that fails the call is hung up
with ``force=enabled`` and then given up. A caller on hold is first taken off hold (an ``unhold``
block), because Hoiio accepts nothing else while holding. A ``conference`` whose numbers Hoiio would
refuse (not 1 to 8 different E.164 numbers once rendered, usually because of values given with the
call) takes its ``failed`` exit, as when Hoiio refuses them; without that exit it is a failure too.

A call is *live* while blocks can be sent to it: an incoming call from the start, an outbound call
once the callee answered. When an outbound dial ends unanswered, busy or failed, the matching exit is
followed through engine nodes only (to report the result over HTTP, say); the first block node
reached ends the run. While that happens the state is still ``active`` but already has an
``outcome``.

``Step.outcome`` is one of ``started``, ``advanced``, ``error handled``, ``ended`` (the call ended
during this step; ``state.outcome`` says how), ``monitor recording saved``, or ``ignored: stale`` /
``ignored: call already ended`` / ``ignored: unexpected event`` / ``noted: hold rejected`` (state
returned unchanged; a rejected hold is harmless: the caller just hears no music, the rest of the
batch should still be sent, and the later unhold's ``error_session_not_on_hold`` counts as done).
``state.outcome`` is one of ``caller hung up``, ``hung up by flow``, ``hung up after error``,
``transferred``, ``transfer failed``, ``provider ended session``, ``dial unanswered|busy|failed``,
``dial rejected: <status>``, ``not dialled: <why>``, ``gave up after repeated errors``.

Imports: the standard library and ``engine.core`` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.core.actions import Action, Block, HttpCall, SideCall
from engine.core.events import (
    Event,
    HttpResult,
    MonitorReady,
    Notification,
    ProviderRejected,
    SideCallResult,
)
from engine.core.flow import (
    Branch,
    Collect,
    Conference,
    Dial,
    Flow,
    Goto,
    Hangup,
    Hold,
    Hours,
    Http,
    Menu,
    Monitor,
    Node,
    Play,
    Prompt,
    Record,
    RenderError,
    Retry,
    Say,
    Set,
    Template,
    Transfer,
    Unhold,
    VoipNowInvite,
)
from engine.core.prompts import (
    PromptProblem,
    conference_numbers_problem,
    is_phone_number,
    is_room_id,
    is_transfer_destination,
    render_prompt,
    split_numbers,
)
from engine.core.state import ENDED, CallState

__all__ = [
    "BUILTINS",
    "DEFAULT_APOLOGY",
    "ENTER_NODE",
    "MAX_ENGINE_TRANSITIONS",
    "NODE_RESULT",
    "WAITS_FOR",
    "Step",
    "context_for",
    "start",
    "step",
]

MAX_ENGINE_TRANSITIONS = 100
DEFAULT_APOLOGY = "Sorry, something went wrong. Please call again later. Goodbye."

#: Template names the engine provides; always present, ``""`` until known. They win over flow
#: variables of the same name.
BUILTINS = ("caller", "called", "dest", "session", "digits", "transfer_status", "dial_status")

#: Hoiio statuses meaning the session no longer exists: nothing more can be sent.
SESSION_OVER = frozenset({"error_session_ended", "error_invalid_session", "error_session_access_denied"})
DIAL_FAILURES = ("unanswered", "busy", "failed")

#: What a node waits for once entered: a Hoiio block kind, ``http`` or ``side``.
WAITS_FOR: dict[str, str] = {
    "play": "play",
    "menu": "gather",
    "collect": "gather",
    "record": "record",
    "monitor": "monitor",
    "unhold": "unhold",
    "transfer": "transfer",
    "hangup": "hangup",
    "dial": "dial",
    "http": "http",
    "conference": "side",
    "voipnow_invite": "side",
}

# Step outcomes
ADVANCED = "advanced"
STARTED = "started"
STALE = "ignored: stale"
WRONG_BLOCK = "ignored: notification for another block"
ALREADY_ENDED = "ignored: call already ended"
UNEXPECTED = "ignored: unexpected event"
HOLD_REJECTED = "noted: hold rejected"
CALL_ENDED = "ended"
ERROR_HANDLED = "error handled"
MONITOR_SAVED = "monitor recording saved"


@dataclass(frozen=True)
class Step:
    """What one event did: the new state and what the service must do now."""

    state: CallState
    actions: tuple[Action, ...] = ()
    outcome: str = ADVANCED
    trace: tuple[tuple[str, str], ...] = ()
    log: tuple[str, ...] = ()


class FlowFailure(Exception):
    """Something in the flow cannot be carried out at call time; the error handler takes over."""


# --------------------------------------------------------------------------------------------------
# The run: a small accumulator for one call to start() or step()


class _Run:
    """Everything one call to ``start()``/``step()`` produces, gathered while nodes run."""

    def __init__(self, flow: Flow, state: CallState, now: datetime) -> None:
        self.flow = flow
        self.state = state
        self.now = now
        self.live = _is_live(flow, state)
        self.actions: list[Action] = []
        self.trace: list[tuple[str, str]] = []
        self.log: list[str] = []
        self.error_handled = False

    # state changes
    def update(self, **changes: Any) -> None:
        self.state = self.state.evolve(**changes)

    def set_vars(self, values: Mapping[str, Any]) -> None:
        self.update(vars={**self.state.vars, **values})

    def set_call(self, **facts: str) -> None:
        self.update(call={**self.state.call, **facts})

    def finish(self, outcome: str) -> None:
        self.update(status=ENDED, outcome=outcome, waiting=None, on_hold=False)
        self.note(f"call ended: {outcome}")

    # trace
    def mark(self, node_id: str, exit_name: str) -> None:
        self.trace.append((node_id, exit_name))
        self.update(path=(*self.state.path, (node_id, exit_name)))

    def follow(self, node: Node, exit_name: str) -> str:
        """Take an exit of ``node``; returns the target. Counters reset when the node changes."""
        target = node.exits().get(exit_name)
        if target is None:
            raise FlowFailure(f"node {node.id!r} has no {exit_name!r} exit")
        self.mark(node.id, exit_name)
        if target != node.id:
            self.update(no_input=0, invalid=0)
        return target

    def note(self, line: str) -> None:
        self.log.append(line)

    # actions
    def next_step(self) -> int:
        return self.state.step + 1

    def issue_block(self, node_id: str, kind: str, params: list[tuple[str, str]]) -> None:
        self._check_hold_rule(kind, params)
        block = Block(kind, tuple(params), self.next_step(), node_id)
        self.actions.append(block)
        waiting = kind if block.awaits_notification else None
        self.update(step=block.step, node=node_id, waiting=waiting, on_hold=kind == "hold")
        shown = " ".join(f"{k}={v!r}" for k, v in block.params)
        self.note(f"{node_id}: {kind} {shown} (step {block.step})".replace("  ", " ").rstrip())

    def _check_hold_rule(self, kind: str, params: list[tuple[str, str]]) -> None:
        if kind == "hold" and self.state.on_hold:
            raise FlowFailure("the caller is already on hold")
        forced_hangup = kind == "hangup" and ("force", "enabled") in params
        if self.state.on_hold and kind != "unhold" and not forced_hangup:
            raise FlowFailure(f"the caller is on hold: the next block must be unhold, not {kind}")

    def issue(self, action: HttpCall | SideCall, waiting: str) -> None:
        self.actions.append(action)
        self.update(step=action.step, node=action.node, waiting=waiting)

    # results
    def context(self) -> dict[str, Any]:
        return context_for(self.state)

    def result(self, outcome: str = ADVANCED) -> Step:
        if self.state.status == ENDED:
            outcome = CALL_ENDED
        elif self.error_handled:
            outcome = ERROR_HANDLED
        return Step(
            state=self.state,
            actions=tuple(self.actions),
            outcome=outcome,
            trace=tuple(self.trace),
            log=_masked(self.log, self.state),
        )


def _is_live(flow: Flow, state: CallState) -> bool:
    """Can blocks be sent? Not once the call is over, nor before an outbound callee answered."""
    if state.status == ENDED or state.outcome is not None:
        return False
    return not flow.outbound or state.call.get("dial_status") == "answered"


def context_for(state: CallState) -> dict[str, Any]:
    """Template context: the call's variables, then the built-ins (``BUILTINS``) over them."""
    call = state.call
    context = dict(state.vars)
    context.update(
        caller=call.get("from") or "",
        called=call.get("to") or "",
        dest=call.get("dest") or "",
        session=state.session,
        digits=call.get("digits") or "",
        transfer_status=call.get("transfer_status") or "",
        dial_status=call.get("dial_status") or "",
    )
    return context


def _masked(lines: list[str], state: CallState) -> tuple[str, ...]:
    """Log lines with the value of every sensitive variable replaced by ``***``.

    Only whole values are replaced (not the ``1234`` inside ``+6561234567``)."""
    secrets = sorted(
        {str(state.vars[name]) for name in state.sensitive if state.vars.get(name) not in (None, "")},
        key=len,
        reverse=True,
    )
    if not secrets:
        return tuple(lines)
    pattern = re.compile(r"(?<![0-9A-Za-z])(?:" + "|".join(map(re.escape, secrets)) + r")(?![0-9A-Za-z])")
    return tuple(pattern.sub("***", line) for line in lines)


# --------------------------------------------------------------------------------------------------
# Public entry points


def start(
    flow: Flow,
    *,
    session: str,
    call: Mapping[str, str],
    vars: Mapping[str, Any] = MappingProxyType({}),
    now: datetime,
) -> Step:
    """A new call: an incoming one just answered, or an outbound one about to be dialled.

    ``call`` holds what is known of it (``from``, ``to``, ``dest``, ``txn_ref``); ``vars`` are the
    outbound inputs, applied over the flow's own ``vars``.
    """
    state = CallState(
        flow=flow.name,
        version=flow.version,
        session=session,
        node=None,
        call={k: str(v) for k, v in call.items() if v is not None},
    )
    run = _Run(flow, state, now)
    run.note(f"call started on flow {flow.name!r}" + (" (outbound)" if flow.outbound else ""))
    try:
        run.set_vars(_initial_vars(flow, run.context(), vars))
    except RenderError as exc:
        _fail(run, flow.start, f"cannot set the flow's variables: {exc}")
        return run.result(STARTED)
    if flow.outbound:
        _dial(run, flow.nodes[flow.start])
    else:
        _run_from(run, flow.start)
    return run.result(STARTED)


def step(flow: Flow, state: CallState, event: Event, *, now: datetime) -> Step:
    """React to one event for an existing call."""
    if isinstance(event, MonitorReady):
        return _monitor_ready(flow, state, event)
    if state.status == ENDED:
        return _ignored(state, ALREADY_ENDED, f"{_describe(event)}: the call has already ended")
    reason = _why_not_admitted(flow, state, event)
    if reason is not None:
        return _ignored(state, reason, f"{_describe(event)}: {reason} (current step {state.step})")
    run = _Run(flow, state, now)
    if isinstance(event, Notification):
        _absorb_call_facts(run, event)
    node = flow.nodes.get(state.node or "")
    if node is None:
        _fail(run, state.node or flow.start, f"node {state.node!r} is not in this version of the flow")
    elif isinstance(event, Notification):
        _on_notification(run, node, event)
    elif isinstance(event, ProviderRejected):
        _on_rejected(run, node, event)
    else:
        _dispatch(run, node, event)
    return run.result()


def _ignored(state: CallState, outcome: str, line: str) -> Step:
    return Step(state=state, outcome=outcome, log=_masked([line], state))


def _describe(event: Event) -> str:
    if isinstance(event, Notification):
        return f"{event.block or 'notification'} ({event.call_state}, step {event.step})"
    if isinstance(event, ProviderRejected):
        return f"rejection {event.status} (step {event.step})"
    return f"{type(event).__name__} (step {getattr(event, 'step', None)})"


def _why_not_admitted(flow: Flow, state: CallState, event: Event) -> str | None:
    """None when the event belongs to the step in progress, else why it is ignored."""
    if isinstance(event, Notification):
        if state.outcome is not None:  # an outbound call that was never answered, finishing up
            return ALREADY_ENDED
        if event.call_state == "ended" and (event.step is None or event.step <= state.step):
            return None
        if event.step != state.step or state.waiting not in WAITS_FOR.values():
            return STALE
        if state.waiting in ("http", "side"):
            return UNEXPECTED
        if event.block and event.block != state.waiting:
            # A signed body of one block posted to the (signed) URL of another: both halves are
            # genuine, together they are not what Hoiio said about this step.
            return WRONG_BLOCK
        return None
    if isinstance(event, ProviderRejected):
        if event.status in SESSION_OVER and event.step <= state.step and state.outcome is None:
            return None
        if event.step < state.step:
            # Blocks are sent in order and an awaited block ends a batch, so an earlier step
            # rejected now is a ``hold`` sent just before the current action.
            return HOLD_REJECTED
        if event.step != state.step or state.waiting in (None, "http", "side"):
            return STALE
        return None
    expected = "http" if isinstance(event, HttpResult) else "side"
    if event.step != state.step:
        return STALE
    if state.waiting != expected:
        return UNEXPECTED
    return None


def _absorb_call_facts(run: _Run, event: Notification) -> None:
    reported = {"from": event.caller, "to": event.called, "dest": event.dest, "txn_ref": event.txn_ref}
    facts = {key: value for key, value in reported.items() if value and run.state.call.get(key) != value}
    if facts:
        run.set_call(**facts)
    if event.billing is not None:
        billing = {k: v for k, v in asdict(event.billing).items() if v is not None}
        run.update(billing=billing)


# --------------------------------------------------------------------------------------------------
# Running nodes


def _run_from(run: _Run, node_id: str) -> None:
    """Enter ``node_id`` and keep going until something awaits an answer or the call ends."""
    transitions = 0
    while True:
        node = run.flow.nodes.get(node_id)
        if node is None:
            _fail(run, node_id, f"there is no node {node_id!r}")
            return
        if node.is_block and not run.live:
            run.note(f"{node.id}: not sent, the call is over")
            run.finish(run.state.outcome or "ended")
            return
        try:
            exit_name = ENTER_NODE[node.kind](run, node)
            if exit_name is None:
                return
            target = run.follow(node, exit_name)
        except (RenderError, FlowFailure, PromptProblem) as exc:
            _fail(run, node.id, str(exc))
            return
        if not node.is_block:
            transitions += 1
            if transitions > MAX_ENGINE_TRANSITIONS:
                _fail(
                    run,
                    node.id,
                    f"endless loop: more than {MAX_ENGINE_TRANSITIONS} engine steps without waiting",
                )
                return
        node_id = target


def _dispatch(run: _Run, node: Node, event: Event) -> None:
    """Turn the answer for ``node`` into an exit and run on from its target."""
    try:
        exit_name = NODE_RESULT[node.kind](run, node, event)
        if exit_name is None:
            return
        target = run.follow(node, exit_name)
    except (RenderError, FlowFailure, PromptProblem) as exc:
        _fail(run, node.id, str(exc))
        return
    _run_from(run, target)


def _prompt(run: _Run, prompt: Prompt) -> list[tuple[str, str]]:
    msg = render_prompt(prompt, run.context(), run.flow.voice)
    return [("msg", msg)] if msg else []


def _tag(node: Node) -> list[tuple[str, str]]:
    return [("tag", node.tag)] if node.tag else []


def _optional(name: str, value: object) -> list[tuple[str, str]]:
    return [] if value is None or value == "" else [(name, str(value))]


# Entering nodes: each returns the exit to follow now, or None when the run stops here.


def _enter_play(run: _Run, node: Play) -> str | None:
    run.issue_block(node.id, "play", _prompt(run, node.prompt) + _tag(node))
    return None


def _gather(run: _Run, node: Menu | Collect, prompt: Prompt, max_digits: int) -> None:
    params = [
        *_prompt(run, prompt),
        ("max_digits", str(max_digits)),
        ("timeout", str(node.timeout)),
        ("attempts", "1"),
        *_tag(node),
    ]
    run.issue_block(node.id, "gather", params)


def _menu_digits(node: Menu) -> int:
    return max((len(key) for key in node.options), default=1)


def _enter_menu(run: _Run, node: Menu) -> str | None:
    _gather(run, node, node.prompt, _menu_digits(node))
    return None


def _enter_collect(run: _Run, node: Collect) -> str | None:
    _gather(run, node, node.prompt, node.max_length)
    return None


def _enter_record(run: _Run, node: Record) -> str | None:
    params = [*_prompt(run, node.prompt), ("max_duration", str(node.max_duration)), *_tag(node)]
    run.issue_block(node.id, "record", params)
    return None


def _enter_monitor(run: _Run, node: Monitor) -> str | None:
    run.issue_block(node.id, "monitor", _prompt(run, node.prompt) + _tag(node))
    return None


def _enter_hold(run: _Run, node: Hold) -> str | None:
    run.issue_block(node.id, "hold", _prompt(run, node.music))
    return "next"  # Hoiio sends no notification for hold


def _enter_unhold(run: _Run, node: Unhold) -> str | None:
    run.issue_block(node.id, "unhold", _tag(node))
    return None


def _enter_transfer(run: _Run, node: Transfer) -> str | None:
    dest = node.to.render(run.context()).strip()
    if not is_transfer_destination(dest):
        raise FlowFailure(
            f"cannot transfer to {dest!r}: expected +<8-15 digits> or room:<up to 32 of A-Z a-z 0-9 . _>"
        )
    params = [
        ("dest", dest),
        *_prompt(run, node.prompt),
        *_optional("caller_id", node.caller_id),
        ("on_failure", node.on_failure),
        *_optional("ring_time", node.ring_time),
        *_optional("room_profile", node.room_profile),
        *_tag(node),
    ]
    run.issue_block(node.id, "transfer", params)
    return None


def _enter_hangup(run: _Run, node: Hangup) -> str | None:
    params = [("force", "enabled")] if node.force else _prompt(run, node.prompt)
    run.issue_block(node.id, "hangup", params + _tag(node))
    return None


def _enter_dial(run: _Run, node: Dial) -> str | None:
    raise FlowFailure("a dial node can only be the start of an outbound flow")


def _dial(run: _Run, node: Node) -> None:
    """The first block of an outbound flow. Nothing to apologise to yet: failures end the call.

    ``caller_id`` and ``tag`` given when the call is placed (in ``call``) win over the node's."""
    assert isinstance(node, Dial)
    dest = run.state.call.get("dest", "")
    if not is_phone_number(dest):
        run.mark(node.id, "error")
        run.finish(f"not dialled: {dest!r} is not a phone number (+ and 8-15 digits)")
        return
    try:
        msg = _prompt(run, node.prompt)
    except (RenderError, PromptProblem) as exc:
        run.mark(node.id, "error")
        run.finish(f"not dialled: {exc}")
        return
    call = run.state.call
    params = [
        ("dest", dest),
        *msg,
        *_optional("caller_id", call.get("caller_id") or node.caller_id),
        *_optional("max_duration", node.max_duration),
        *_optional("tag", call.get("tag") or node.tag),
    ]
    run.issue_block(node.id, "dial", params)


def _enter_set(run: _Run, node: Set) -> str | None:
    for name, template in node.values.items():
        run.set_vars({name: template.render(run.context())})
    run.note(f"{node.id}: set {', '.join(node.values)}")
    return "next"


def _enter_branch(run: _Run, node: Branch) -> str | None:
    context = run.context()
    for number, case in enumerate(node.cases, start=1):
        if case.when.evaluate(context):
            return f"case {number}"
    return "otherwise"


def _enter_goto(run: _Run, node: Goto) -> str | None:
    return "next"


def _enter_hours(run: _Run, node: Hours) -> str | None:
    try:
        zone = ZoneInfo(node.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FlowFailure(f"unknown time zone {node.timezone!r}") from exc
    now = run.now if run.now.tzinfo is not None else run.now.replace(tzinfo=UTC)
    local = now.astimezone(zone)
    if local.date() in node.holidays:
        return "holiday" if node.holiday else "closed"
    return "open" if _within(node, local) else "closed"


def _within(node: Hours, local: datetime) -> bool:
    moment = local.time().replace(tzinfo=None)
    for interval in node.weekly.get(local.weekday(), ()):
        # ``time.max`` stands for 24:00: the end is exclusive everywhere else.
        if interval.start <= moment and (moment < interval.end or interval.end == time.max):
            return True
    return False


def _enter_http(run: _Run, node: Http) -> str | None:
    context = run.context()
    url = node.url.render(context).strip()
    headers = {name: value.render(context) for name, value in node.headers.items()}
    body = {name: value.render(context) for name, value in (node.body or {}).items()}
    sends_json = node.method in ("POST", "PUT", "PATCH")
    call = HttpCall(
        step=run.next_step(),
        node=node.id,
        method=node.method,
        url=url,
        headers=headers,
        json=body if sends_json and node.body is not None else None,
        params={} if sends_json else body,
        timeout=float(node.timeout),
    )
    run.issue(call, "http")
    run.note(f"{node.id}: {node.method} {url} (step {call.step})")
    return None


def _conference_numbers(numbers: tuple[Template, ...] | Template, context: Mapping[str, Any]) -> list[str]:
    """The numbers a conference node dials: one per item of a list (each item stripped, never
    split), or the items of one text separated by commas and/or whitespace (empty ones dropped).
    Not checked: see ``conference_numbers_problem``."""
    if isinstance(numbers, tuple):
        return [number.render(context).strip() for number in numbers]
    return split_numbers(numbers.render(context))


def _enter_conference(run: _Run, node: Conference) -> str | None:
    context = run.context()
    numbers = _conference_numbers(node.numbers, context)
    room = node.room.render(context).strip().removeprefix("room:")
    if not is_room_id(room):
        raise FlowFailure(f"{room!r} is not a conference room id (up to 32 of A-Z a-z 0-9 . _)")
    problem = conference_numbers_problem(numbers)
    if problem is not None:
        # numbers Hoiio would refuse (usually given with the call): as if it had refused them
        reason = f"cannot dial into a conference: {problem}"
        if node.failed is None:
            raise FlowFailure(f"{reason}, and the node has no failed exit")
        run.note(f"{node.id}: {reason}; nobody was dialled")
        return "failed"
    params = (
        ("dest", ",".join(numbers)),
        *_optional("room", room),
        *_optional("caller_id", node.caller_id),
        *_tag(node),
    )
    side = SideCall(step=run.next_step(), node=node.id, api="conference/call", params=params)
    run.issue(side, "side")
    run.note(f"{node.id}: conference/call {len(numbers)} number(s) into room {room!r} (step {side.step})")
    return None


#: What VoipNow's conferenceInvite accepts (the same rules as POST /api/conferences/voipnow/invites).
VOIPNOW_NUMBER = re.compile(r"\+[1-9][0-9]{7,14}|[0-9]{1,10}(?:\*[0-9]{1,10})?")
VOIPNOW_CONFERENCE_NUMBER = re.compile(r"[0-9]{1,10}")
VOIPNOW_PIN = re.compile(r"[0-9]{1,16}")


def _enter_voipnow_invite(run: _Run, node: VoipNowInvite) -> str | None:
    context = run.context()
    number = node.number.render(context).strip()
    if not VOIPNOW_NUMBER.fullmatch(number):
        raise FlowFailure(f"cannot invite {number!r} into a VoipNow conference: expected + and 8-15 digits, "
                          "or an extension number (211, 0003*211)")  # fmt: skip
    # an optional value that renders empty is left out: VoipNow then asks the callee for it
    conference_number = (node.conference_number.render(context).strip() if node.conference_number else "") or None
    if conference_number is not None and not VOIPNOW_CONFERENCE_NUMBER.fullmatch(conference_number):
        raise FlowFailure(f"{conference_number!r} is not a VoipNow conference number (1 to 10 digits)")
    pin = (node.pin.render(context).strip() if node.pin else "") or None
    if pin is not None and not VOIPNOW_PIN.fullmatch(pin):
        raise FlowFailure("the conference PIN must be 1 to 16 digits")  # the value itself is not logged
    params = (
        ("destination", number),
        *_optional("conference_number", conference_number),
        *_optional("pin", pin),
        *_optional("wait_for_pickup", node.wait_for_pickup),
        *_optional("caller_id", node.caller_id),
    )
    side = SideCall(step=run.next_step(), node=node.id, api="voipnow/conferenceInvite", params=params)
    run.issue(side, "side")
    into = f" into conference {conference_number!r}" if conference_number else ""
    run.note(f"{node.id}: voipnow/conferenceInvite {number!r}{into} (step {side.step})")
    return None


ENTER_NODE: dict[str, Callable[[_Run, Any], str | None]] = {
    "play": _enter_play,
    "menu": _enter_menu,
    "collect": _enter_collect,
    "record": _enter_record,
    "monitor": _enter_monitor,
    "hold": _enter_hold,
    "unhold": _enter_unhold,
    "transfer": _enter_transfer,
    "hangup": _enter_hangup,
    "dial": _enter_dial,
    "set": _enter_set,
    "branch": _enter_branch,
    "goto": _enter_goto,
    "hours": _enter_hours,
    "http": _enter_http,
    "conference": _enter_conference,
    "voipnow_invite": _enter_voipnow_invite,
}


# --------------------------------------------------------------------------------------------------
# Results: each handler returns the exit to follow, or None when it has already done what is needed.


def _on_notification(run: _Run, node: Node, event: Notification) -> None:
    waiting = run.state.waiting
    current = event.step == run.state.step
    if waiting == "hangup":
        _hung_up(run, node)
    elif event.call_state == "ended" and not (current and waiting in ("transfer", "dial")):
        _caller_hung_up(run, node, event)
    elif waiting != WAITS_FOR.get(node.kind):
        # The unhold sent by the error handler before it could do anything else.
        _handle_error(run, node.id)
    else:
        _dispatch(run, node, event)


def _hung_up(run: _Run, node: Node) -> None:
    # The error handler's own hangup is issued right after the failure was recorded in the path.
    after_error = run.state.path[-1:] == ((node.id, "error"),)
    run.finish("hung up after error" if after_error else "hung up by flow")


def _caller_hung_up(run: _Run, node: Node, event: Notification) -> None:
    if isinstance(node, Record) and run.state.waiting == "record" and event.record_url:
        run.set_vars({node.var: event.record_url})  # a partial recording is still a message
    run.mark(node.id, "hang-up")
    run.finish("caller hung up")


def _after_play(run: _Run, node: Node, event: Notification) -> str | None:
    return "next"


def _after_menu(run: _Run, node: Menu, event: Notification) -> str | None:
    digits = event.digits or ""
    run.set_call(digits=digits)
    if not digits:
        return _retry(run, node, "no input")
    if digits not in node.options:
        run.note(f"{node.id}: {digits!r} is not an option")
        return _retry(run, node, "invalid")
    return f"key {digits}"


def _after_collect(run: _Run, node: Collect, event: Notification) -> str | None:
    digits = event.digits or ""
    run.set_call(digits="" if node.sensitive else digits)
    if not digits:
        return _retry(run, node, "no input")
    problem = _input_problem(node, digits)
    if problem:
        shown = "input" if node.sensitive else repr(digits)
        run.note(f"{node.id}: {shown} {problem}")
        return _retry(run, node, "invalid")
    run.set_vars({node.var: digits})
    if node.sensitive:
        run.update(sensitive=run.state.sensitive | {node.var})
        run.note(f"{node.id}: {len(digits)} digits into {node.var} (sensitive)")
    else:
        run.note(f"{node.id}: {digits!r} into {node.var}")
    return "next"


def _input_problem(node: Collect, digits: str) -> str | None:
    if not node.min_length <= len(digits) <= node.max_length:
        return f"has {len(digits)} digits, expected {node.min_length} to {node.max_length}"
    if node.pattern is not None:
        try:
            matches = re.fullmatch(node.pattern, digits) is not None
        except re.error as exc:
            raise FlowFailure(f"pattern {node.pattern!r} is not a valid regular expression: {exc}") from exc
        if not matches:
            return f"does not match {node.pattern!r}"
    return None


def _retry(run: _Run, node: Menu | Collect, kind: str) -> str | None:
    """Count a no-input/invalid attempt: leave by that exit after ``tries``, else ask again."""
    counter = "no_input" if kind == "no input" else "invalid"
    retry: Retry = getattr(node, counter)
    count = getattr(run.state, counter) + 1
    run.update(**{counter: count})
    if count >= retry.tries:
        return kind
    run.mark(node.id, f"retry {kind}")
    again = node.repeat_prompt if node.repeat_prompt is not None else node.prompt
    max_digits = _menu_digits(node) if isinstance(node, Menu) else node.max_length
    _gather(run, node, retry.say + again, max_digits)
    return None


def _after_record(run: _Run, node: Record, event: Notification) -> str | None:
    run.set_vars({node.var: event.record_url or ""})
    return "next"


def _after_transfer(run: _Run, node: Transfer, event: Notification) -> str | None:
    status = event.transfer_status or ""
    if event.call_state == "ended":
        if status:
            run.set_call(transfer_status=status)
        if not status:
            # Hoiio reports a completed transfer with transfer_status=answered; an ended call
            # without any status is the caller hanging up before the transfer connected.
            run.finish("caller hung up")
            return None
        run.finish("transferred" if status == "answered" else "transfer failed")
        return None
    # The session came back to us: the transfer failed and on_failure is ``continue``.
    run.set_call(transfer_status=status if status and status != "answered" else "failed")
    if node.failed is None:
        raise FlowFailure("the transfer failed and the node has no failed exit")
    return "failed"


def _after_hangup(run: _Run, node: Hangup, event: Notification) -> str | None:
    _hung_up(run, node)
    return None


def _after_dial(run: _Run, node: Dial, event: Notification) -> str | None:
    status = event.dial_status or ""
    if event.call_state != "ended":
        run.set_call(dial_status="answered")
        run.live = True
        return "answered"
    if status == "answered":  # answered, then gone before the flow could say anything
        _caller_hung_up(run, node, event)
        return None
    status = status if status in DIAL_FAILURES else "failed"
    run.set_call(dial_status=status)
    run.update(outcome=f"dial {status}")
    if status in node.exits():
        return status  # followed through engine nodes only: the run is not live
    run.finish(f"dial {status}")
    return None


def _after_http(run: _Run, node: Http, event: HttpResult) -> str | None:
    if event.status is None or not 200 <= event.status < 300:
        why = f"{event.status or 'no response'}" + (f": {event.error}" if event.error else "")
        run.note(f"{node.id}: failed ({why})")
        return "failed"
    saved: dict[str, Any] = {}
    for name, path in node.save.items():
        found, value = _lookup(event.json, path)
        if not found:
            run.note(f"{node.id}: the response has no {path!r} for {name}")
            return "failed"
        saved[name] = value
    run.set_vars(saved)
    if saved:
        run.note(f"{node.id}: saved {', '.join(saved)}")
    return "next"


def _lookup(document: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted path (``booking.time``, ``items.0.id``) into parsed JSON."""
    value = document
    for key in path.split("."):
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return False, None
    return True, value


def _after_conference(run: _Run, node: Conference, event: SideCallResult) -> str | None:
    if event.ok:
        return "next"
    run.note(f"{node.id}: conference/call failed ({event.status})")
    if node.failed is None:
        raise FlowFailure(f"conference/call failed ({event.status}) and the node has no failed exit")
    return "failed"


def _after_voipnow_invite(run: _Run, node: VoipNowInvite, event: SideCallResult) -> str | None:
    if event.ok:
        ids = event.data.get("ids") if isinstance(event.data, Mapping) else None
        if ids:
            run.note(f"{node.id}: VoipNow is calling ({', '.join(str(i) for i in ids)})")
        return "next"
    run.note(f"{node.id}: voipnow/conferenceInvite failed ({event.status})")
    if node.failed is None:
        raise FlowFailure(f"voipnow/conferenceInvite failed ({event.status}) and the node has no failed exit")
    return "failed"


NODE_RESULT: dict[str, Callable[[_Run, Any, Any], str | None]] = {
    "play": _after_play,
    "menu": _after_menu,
    "collect": _after_collect,
    "record": _after_record,
    "monitor": _after_play,
    "unhold": _after_play,
    "transfer": _after_transfer,
    "hangup": _after_hangup,
    "dial": _after_dial,
    "http": _after_http,
    "conference": _after_conference,
    "voipnow_invite": _after_voipnow_invite,
}


def _on_rejected(run: _Run, node: Node, event: ProviderRejected) -> None:
    waiting = run.state.waiting
    if waiting == "dial":
        run.mark(node.id, "error")
        run.finish(f"dial rejected: {event.status}")
    elif event.status in SESSION_OVER:
        run.note(f"{node.id}: Hoiio says {event.status}")
        run.finish("provider ended session")
    elif waiting == "unhold" and event.status == "error_session_not_on_hold":
        # The hold never took effect; being off hold is what unhold wanted.
        if isinstance(node, Unhold):
            _run_from(run, run.follow(node, "next"))
        else:
            _handle_error(run, node.id)
    elif isinstance(node, Transfer) and waiting == "transfer" and node.failed is not None:
        run.note(f"{node.id}: transfer rejected ({event.status})")
        run.set_call(transfer_status=event.status)
        _run_from(run, run.follow(node, "failed"))
    else:
        _fail(run, node.id, f"Hoiio rejected the {waiting} block: {event.status}")


def _monitor_ready(flow: Flow, state: CallState, event: MonitorReady) -> Step:
    name = _monitor_var(flow, state)
    new = state.evolve(vars={**state.vars, name: event.record_url})
    return Step(state=new, outcome=MONITOR_SAVED, log=_masked([f"monitor recording saved into {name}"], new))


def _monitor_var(flow: Flow, state: CallState) -> str:
    """The ``into`` of the monitor node the call went through most recently."""
    candidates = [state.node] + [node_id for node_id, _ in reversed(state.path)]
    for node_id in candidates:
        node = flow.nodes.get(node_id or "")
        if isinstance(node, Monitor):
            return node.var
    return "monitor_url"


# --------------------------------------------------------------------------------------------------
# Errors


def _fail(run: _Run, node_id: str, reason: str) -> None:
    """A runtime failure at ``node_id``: hand the call to the error handler."""
    run.error_handled = True
    run.mark(node_id, "error")
    run.update(errors=run.state.errors + 1, no_input=0, invalid=0)
    run.note(f"{node_id}: error: {reason}")
    if not run.live:
        run.finish(run.state.outcome or f"error: {reason}")
    elif run.state.on_hold and run.state.errors < 3:
        run.note("taking the caller off hold first")
        run.issue_block(node_id, "unhold", [])
    else:
        _handle_error(run, node_id)


def _handle_error(run: _Run, node_id: str) -> None:
    """Escalate: ``on_error`` once per call, then the apology, then a forced hangup, then give up."""
    errors = run.state.errors
    if errors == 1 and run.flow.on_error:
        _run_from(run, run.flow.on_error)
    elif errors <= 2:
        apology = (Say(_Constant(DEFAULT_APOLOGY)),)
        run.issue_block(node_id, "hangup", _prompt(run, apology))
    elif errors == 3:
        run.issue_block(node_id, "hangup", [("force", "enabled")])
    else:
        run.finish("gave up after repeated errors")


class _Constant:
    """A fixed text that satisfies ``engine.core.flow.Template``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def render(self, context: Mapping[str, Any]) -> str:
        return self.source

    def variables(self) -> frozenset[str]:
        return frozenset()


def _initial_vars(flow: Flow, builtins: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The flow's ``vars`` rendered in order (they may use the inputs), then the inputs over them."""
    values: dict[str, Any] = {}
    for name, template in flow.vars.items():
        values[name] = template.render({**inputs, **values, **builtins})
    values.update(inputs)
    return values
