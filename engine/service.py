"""The shell around the pure interpreter: one notification -> one transaction -> blocks to send.

Order of work for every notification (nothing is lost, nothing is done twice):

1. The raw request is kept in memory; it is stored in the first transaction the request commits
   (the main one below), or, if there is none (refused, invalid, or the main transaction rolled
   back), in a short transaction of its own together with its outcome. Either way it is stored.
2. Authenticity: ``X-Hoiio-Signature`` over the raw body (when verification is on) and the engine's
   own HMAC on the ``step`` pass-on parameter of the notify URL.
3. The body is parsed strictly (query-string values never override signed body values).
4. One write transaction: store the request and claim its dedupe key (one statement), lock the
   call's row, run the interpreter, store the new state and the blocks to send (outbox).
   Concurrent or repeated notifications for a call are serialised here; the loser sees a stale
   step and is ignored. When nothing is to be sent, the outcome is stored here too: one commit.
5. After commit the blocks are sent. A refusal from the provider is fed back to the interpreter as
   ``ProviderRejected`` (again one transaction), which may issue the error handler's block.
6. What the provider answered for each block and the request's outcome are stored together,
   written behind (``Database.record_sent``), so the answer does not wait for that commit. (A
   worker dying before it leaves the blocks ``sending``: the recovery pass resends.)

May import engine.core, engine.flowfile (via the registry), engine.providers, engine.storage.
Never Flask: the web layer hands over an ``Inbound`` value.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

from engine import observability as obs
from engine.config import Settings
from engine.core import interpreter
from engine.core.actions import Block, HttpCall, SideCall
from engine.core.events import HttpResult, MonitorReady, Notification, ProviderRejected, SideCallResult
from engine.core.flow import Flow
from engine.core.state import CallState
from engine.httpstep import HttpStepRunner
from engine.providers.base import form_encode
from engine.providers.hoiio import wire
from engine.providers.hoiio.client import HoiioClientError
from engine.providers.hoiio.signature import SIGNATURE_HEADER, sign_step, verify_body, verify_step
from engine.providers.hoiio.statuses import classify
from engine.providers.hoiio.wire import BlockError
from engine.providers.voipnow import wire as voipnow_wire
from engine.registry import FlowRegistry
from engine.storage import (
    ConcurrentUpdate,
    Database,
    DatabaseUnavailable,
    StorageBusy,
    make_dedupe_key,
)

log = logging.getLogger("engine.service")
_T = TypeVar("_T")

APOLOGY = "Sorry, something went wrong. Please call again later. Goodbye."
_SINGLE_HEADERS_KEPT = ("content-type", "content-length", "user-agent", SIGNATURE_HEADER.lower(),
                        "x-forwarded-for", "x-request-id")


@dataclass(frozen=True)
class Inbound:
    """A webhook request as the web layer saw it."""

    route: str  # "answer" | "notify" | "monitor"
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    flow_hint: str | None = None  # /hoiio/answer/<flow>
    remote_addr: str | None = None


@dataclass
class Outcome:
    http_status: int
    body: dict[str, Any]
    record: str = "accepted"  # notifications.outcome
    reason: str | None = None
    session: str | None = None
    step: int | None = None


class Rejected(Exception):
    def __init__(self, http_status: int, record: str, reason: str, session: str | None = None) -> None:
        super().__init__(reason)
        self.http_status = http_status
        self.record = record
        self.reason = reason
        self.session = session


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _utcnow() -> datetime:
    return datetime.now(UTC)


#: The answer to a flow's ``voipnow/...`` side call when VOIPNOW_URL is not set.
VOIPNOW_NOT_CONFIGURED = "error_voipnow_not_configured"


def voipnow_client(settings: Any) -> Any:
    """The VoipNow client the settings describe (VOIPNOW_URL, VOIPNOW_TOKEN, VOIPNOW_EXTENSION), or
    None when VoipNow is not configured."""
    url, token, extension = (getattr(settings, f"voipnow_{name}", None) for name in ("url", "token", "extension"))
    if not (url and token and extension):
        return None
    from engine.providers.voipnow.client import VoipNowClient

    return VoipNowClient(url, token, extension)


def parse_form(body: bytes) -> dict[str, list[str]]:
    """Parse an application/x-www-form-urlencoded body strictly (Werkzeug would return an empty
    form for bytes it cannot read, which must not look like a notification without fields)."""
    if not body:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "invalid", "the request body is not readable form data (not UTF-8)") from None
    if _CONTROL_CHARS.search(text):
        raise Rejected(400, "invalid", "the request body contains control characters")
    try:
        return parse_qs(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "invalid", "the request body is not application/x-www-form-urlencoded") from None


@dataclass
class _Pending:
    """What one request still has to write: the request itself until a transaction that stored it
    commits, the provider's answers to the blocks it sent, and its outcome."""

    raw: dict[str, Any]
    started: float
    session: str | None = None  # the call it names, once parsed
    record_id: int | None = None  # the stored request, once its transaction committed
    finished: bool = False  # its outcome is stored too
    marks: list[dict[str, Any]] = field(default_factory=list)  # tx.mark_block(**mark), still to write
    staged_id: int | None = None
    staged_finished: bool = False

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    def write_marks(self, tx: Any) -> None:
        marks, self.marks = self.marks, []
        try:
            for mark in marks:
                tx.mark_block(**mark)
        except BaseException:
            self.marks[:0] = marks
            raise


@dataclass(frozen=True)
class _Decision:
    """The interpreter's step for one notification, and the state to store (None: unchanged)."""

    flow: Flow
    result: interpreter.Step
    new_state: dict[str, Any] | None


@dataclass
class Dispatch:
    """Blocks actually sent while handling one request (for the JSON answer)."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = ""


class CallService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        flows: FlowRegistry,
        client: Any,
        *,
        http: HttpStepRunner | None = None,
        now: Callable[[], datetime] = _utcnow,
        voipnow: Any = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.flows = flows
        self.client = client
        #: the VoipNow client for the flows' ``voipnow/...`` side calls (and the API's invites);
        #: None when VOIPNOW_URL is not set
        self.voipnow = voipnow if voipnow is not None else voipnow_client(settings)
        self.http = http or HttpStepRunner(allow_private=settings.http_allow_private)
        self.now = now

    def remember_flow_versions(self) -> None:
        """Store the source of every loaded flow version, so calls can be inspected (and replayed)
        against the exact version they ran on."""
        for flow in list(self.flows.versions.values()):
            self.db.record_flow_version(flow.name, flow.version, _source_of(flow))

    # ------------------------------------------------------------------ URLs
    def notify_url(self, key: str, step: int, *, route: str = "notify", ref: bool = False) -> str:
        params = {"step": str(step), "sig": sign_step(self.settings.step_secret, key, step)}
        if ref:
            params["ref"] = key
        return f"{self.settings.public_url}/hoiio/{route}?{form_encode(params.items())}"

    # ------------------------------------------------------------------ entry
    def handle(self, req: Inbound) -> Outcome:
        started = time.monotonic()
        headers = {k: v for k, v in req.headers.items() if k.lower() in _SINGLE_HEADERS_KEPT}
        query_string = form_encode([(k, v) for k, vs in req.query.items() for v in vs])
        meta: dict[str, Any] = {}
        pending = _Pending(raw={"route": f"{req.method} {req.path}", "method": req.method,
                                "query_string": query_string, "headers": headers, "body": req.body},
                           started=started)  # fmt: skip
        try:
            outcome = self._handle(req, pending, meta)
        except (StorageBusy, DatabaseUnavailable) as exc:
            log.error("database trouble while handling a notification: %s", exc)
            outcome = Outcome(503, {"status": "error", "error": "the database is unavailable; nothing was done"},
                              record="error", reason=type(exc).__name__)
        except Rejected as exc:
            outcome = Outcome(
                exc.http_status,
                {"status": "error", "error": exc.reason},
                record=exc.record,
                reason=exc.reason,
                session=exc.session,
            )
        except Exception as exc:  # a bug must not leave the worker or the caller hanging
            log.exception("unexpected error while handling a notification")
            outcome = Outcome(500, {"status": "error", "error": "internal error; the call was sent to "
                                    "the error handler"}, record="error", reason=type(exc).__name__)
        try:
            self._settle(pending, outcome)
        except (StorageBusy, DatabaseUnavailable) as exc:  # the answer stands; only its record is lost
            log.error("could not record how a notification was handled: %s", exc)
        self._observe(req, outcome, meta, time.monotonic() - started)
        return outcome

    def _settle(self, pending: _Pending, outcome: Outcome) -> None:
        """Store what is still unstored about a request: the provider's answers to the blocks sent
        with the outcome, written behind (``Database.record_sent``); otherwise, in one transaction,
        the request with its outcome (or just the outcome) and any answers."""
        if pending.record_id is not None and pending.finished and not pending.marks:
            return
        if pending.record_id is not None and not pending.finished and pending.marks:
            # the usual case: blocks sent; written behind (the answer does not wait for it)
            self.db.record_sent(pending.marks, self._finish_values(pending.record_id, outcome, pending))
            pending.marks = []
            return
        with self.db.transaction() as tx:
            pending.write_marks(tx)
            if pending.record_id is None:
                tx.record_notification(**pending.raw, session=outcome.session or pending.session, step=outcome.step,
                                       outcome=outcome.record, reason=outcome.reason, response=outcome.body,
                                       duration_ms=pending.elapsed_ms())  # fmt: skip
            elif not pending.finished:
                self._finish_in(tx, pending.record_id, outcome, pending)

    @classmethod
    def _finish_in(cls, tx: Any, record_id: int, outcome: Outcome, pending: _Pending) -> None:
        tx.finish_notification(**cls._finish_values(record_id, outcome, pending))

    @staticmethod
    def _finish_values(record_id: int, outcome: Outcome, pending: _Pending) -> dict[str, Any]:
        return {"notification_id": record_id, "outcome": outcome.record, "reason": outcome.reason,
                "response": outcome.body, "session": outcome.session, "step": outcome.step,
                "duration_ms": pending.elapsed_ms()}

    def _main_write(self, pending: _Pending, body: Callable[[Any], _T]) -> _T:
        """``body(tx)`` in a write transaction (``Database.write``: on SQLite it may share its commit
        with other notifications'); it may store the request (``pending.staged_id``) and its outcome
        (``pending.staged_finished``): both count only once it has committed."""
        pending.staged_id, pending.staged_finished = None, False
        done = self.db.write(body)
        pending.record_id, pending.finished = pending.staged_id, pending.staged_finished
        return done

    def _done_in(self, tx: Any, pending: _Pending, outcome: Outcome) -> Outcome:
        """The request's outcome, stored in its main transaction (nothing is left to send)."""
        if pending.staged_id is not None:
            self._finish_in(tx, pending.staged_id, outcome, pending)
            pending.staged_finished = True
        return outcome

    def _observe(self, req: Inbound, outcome: Outcome, meta: Mapping[str, Any], seconds: float) -> None:
        block = meta.get("block", "unparsed") if req.route != "monitor" else "monitor"
        obs.NOTIFICATIONS.labels(block, outcome.record).inc()
        obs.WEBHOOK_SECONDS.labels(req.route).observe(seconds)
        if outcome.record in ("refused", "invalid"):
            obs.REFUSED.labels("signature" if outcome.http_status == 403 else f"http_{outcome.http_status}").inc()
        body = outcome.body
        fields = {
            "event": "notification",
            "route": req.route,
            "http_status": outcome.http_status,
            "session": outcome.session or body.get("session"),
            "txn_ref": meta.get("txn_ref"),
            "flow": body.get("flow"),
            "node": body.get("node"),
            "block": meta.get("block"),
            "call_state": meta.get("call_state"),
            "caller": obs.mask_number(meta.get("caller")),
            "outcome": body.get("outcome") or outcome.record,
            "sent": [b.get("endpoint") for b in body.get("blocks", [])],
            "duration_ms": round(seconds * 1000, 1),
        }
        if outcome.reason:
            fields["reason"] = outcome.reason
        level = logging.WARNING if outcome.http_status >= 400 else logging.INFO
        log.log(level, "notification %s", outcome.record, extra={"ivr": fields})

    def _handle(self, req: Inbound, pending: _Pending, meta: dict) -> Outcome:
        if self.settings.verify_signatures:
            signature = next((v for k, v in req.headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
            if not verify_body(req.body, signature, self.settings.hoiio_access_token):
                raise Rejected(403, "refused", f"missing or wrong {SIGNATURE_HEADER}")
        fields = parse_form(req.body)
        # Pass-on parameters come back in the query string; they never override signed body fields,
        # and the engine's own parameters are taken from the query only.
        # With signatures on, only the signed body is trusted: the engine's notify URLs carry no
        # pass-on parameters of their own but ``step``/``sig``/``ref`` (verified separately), so
        # anything else in the query string is unsigned and ignored.
        ours = {"step", "sig", "ref"}
        merged = {} if self.settings.verify_signatures else {
            k: v for k, v in req.query.items() if k not in fields and k not in ours}
        merged.update({k: v for k, v in fields.items() if k not in ours})
        try:
            if req.route == "monitor":
                ready = wire.parse_monitor_ready(merged)
                pending.session = ready.session
                step, key = self._verified_step(req, ready.session)
                return self._advance(key, MonitorReady(session=key, record_url=ready.record_url),
                                     dedupe=f"monitor:{key}:{step}", pending=pending)
            event = wire.parse_notification(merged)
            pending.session = event.session
            meta.update(block=event.block or "none", txn_ref=event.txn_ref, caller=event.caller,
                        call_state=event.call_state)
        except wire.NotificationError as exc:
            raise Rejected(400, "invalid", f"{exc.field}: {exc.reason}") from None
        step, key = self._verified_step(req, event.session)
        if req.route == "answer":
            if step is not None:
                raise Rejected(400, "invalid", "an answer notification carries no step")
            return self._answer(req, event, pending)
        if step is None:
            raise Rejected(400, "invalid", "this notification URL has no step; Hoiio numbers must point "
                           "at /hoiio/answer")
        event = dataclasses.replace(event, step=step)
        dedupe = make_dedupe_key(key, step, req.body.decode("latin-1"))
        return self._advance(key, event, dedupe=dedupe, pending=pending)

    def _verified_step(self, req: Inbound, session: str) -> tuple[int | None, str]:
        raw = req.query.get("step")
        if raw is None:
            return None, session
        if len(raw) != 1 or not (raw[0].isascii() and raw[0].isdigit()) or len(raw[0]) > 9:
            raise Rejected(400, "invalid", "step must be one whole number")
        key = (req.query.get("ref") or [session])[0]
        step = int(raw[0])
        if not verify_step(self.settings.step_secret, key, step, (req.query.get("sig") or [None])[0]):
            raise Rejected(403, "refused", "the step parameter of the notify URL is not signed by this server",
                           session=session)
        return step, key

    # ------------------------------------------------------------------ answer
    def _answer(self, req: Inbound, event: Notification, pending: _Pending) -> Outcome:
        if req.flow_hint is not None:
            flow = self.flows.get(req.flow_hint)
            if flow is None:
                raise Rejected(404, "invalid", f"there is no flow named {req.flow_hint!r}", event.session)
        else:
            flow = self.flows.for_number(event.called)
            if flow is None:
                raise Rejected(404, "invalid", f"no flow lists the dialled number {event.called!r} in its "
                               "numbers", event.session)
        if flow.outbound:
            raise Rejected(400, "invalid", f"flow {flow.name!r} starts with a dial node: it is for outbound "
                           "calls only", event.session)
        if event.call_state == "ended":
            raise Rejected(404, "stale", "the call ended before it was answered", event.session)
        dedupe = make_dedupe_key(event.session, 0, req.body.decode("latin-1"))
        call = {k: v for k, v in (("from", event.caller), ("to", event.called), ("txn_ref", event.txn_ref)) if v}
        result = interpreter.start(flow, session=event.session, call=call, now=self.now())
        state = result.state.to_dict()

        new_call = {"session": event.session, "flow": flow.name, "flow_version": flow.version, "direction": "inbound",
                    "state": state, "node": result.state.node, "step": result.state.step,
                    "status": result.state.status, "caller": event.caller, "called": event.called, "dest": None,
                    "txn_ref": event.txn_ref}

        def body(tx: Any) -> Outcome | None:
            pending.staged_id, claimed, row = tx.start_call(dedupe, **pending.raw, session=event.session, step=0,
                                                            call=new_call,
                                                            queue=self._outbox_rows(event.session, result.actions))
            if not claimed:
                return self._done_in(tx, pending, self._ignored(event.session, None, "duplicate",
                                                                "this notification was already handled"))
            if row is None:  # answered before, or a racing copy of this answer won on another worker
                return self._done_in(tx, pending, self._ignored(event.session, None, "duplicate",
                                                                "this call was already answered"))
            if not result.actions:
                return self._done_in(tx, pending, self._after_commit(flow, event.session, result))
            return None

        done = self._main_write(pending, body)
        return done if done is not None else self._after_commit(flow, event.session, result, pending)

    # ------------------------------------------------------------------ later steps
    def _advance(self, key: str, event: Any, *, dedupe: str, pending: _Pending) -> Outcome:
        step = getattr(event, "step", None)

        def body(tx: Any) -> Outcome | _Decision:
            pending.staged_id, claimed, row = tx.claim_and_lock(dedupe, **pending.raw, session=key, step=step,
                                                                lock=key)
            if not claimed:
                return self._done_in(tx, pending, self._ignored(key, step, "duplicate",
                                                                "this notification was already handled"))
            if row is None:
                raise Rejected(404, "invalid", "unknown session: no call with this session was started here",
                               key)
            decision = self._decide(key, row, event)
            result = decision.result
            ignored = result.outcome.startswith("ignored")
            done: Outcome | None = None
            if ignored:
                done = self._ignored(key, step, "stale", result.outcome)
            elif not result.actions:  # nothing to carry out: only the answer is built
                done = self._after_commit(decision.flow, key, result)
            if decision.new_state is not None:
                # the update is the transaction's last statement: with the request's outcome when
                # there is nothing to send, else with its blocks (sent after the commit); on
                # PostgreSQL the transaction then commits with it, in the same round trip
                finish = None
                if done is not None and pending.staged_id is not None:
                    finish = self._finish_values(pending.staged_id, done, pending)
                tx.update_call(
                    key, state=decision.new_state, node=result.state.node, step=result.state.step,
                    status=result.state.status, outcome=result.state.outcome,
                    billing=dict(result.state.billing) or None, expected_row_version=row.row_version,
                    queue=() if done is not None else self._outbox_rows(key, result.actions),
                    finish=finish, commit=done is None or finish is not None,
                )
                if finish is not None:
                    pending.staged_finished = True
                    return done
            if done is not None:
                return self._done_in(tx, pending, done)
            return decision

        done = self._main_write(pending, body)
        if isinstance(done, Outcome):
            return done
        return self._after_commit(done.flow, key, done.result, pending)

    def _decide(self, key: str, row: Any, event: Any) -> _Decision:
        """What the interpreter makes of ``event`` for the call stored as ``row`` (pure: no writes)."""
        flow = self._flow_for(row.flow, row.flow_version)
        state = CallState.from_dict(row.state)
        if isinstance(event, Notification) and not state.call.get("session") and event.session != key:
            # outbound: the dial's notification may overtake the dial request's own answer
            state = state.evolve(call={**state.call, "session": event.session})
        result = interpreter.step(flow, state, event, now=self.now())
        if (result.outcome == "ignored: call already ended" and isinstance(event, Notification)
                and event.billing is not None and not state.billing):
            # Hoiio's last word on a call we already consider over: keep its billing.
            billing = {k: v for k, v in vars(event.billing).items() if v is not None}
            result = dataclasses.replace(result, state=state.evolve(billing=billing))
        as_dict = result.state.to_dict()
        new_state = as_dict if result.state != state or as_dict != row.state else None
        return _Decision(flow=flow, result=result, new_state=new_state)

    def _ignored(self, session: str, step: int | None, record: str, reason: str) -> Outcome:
        return Outcome(200, {"status": "ignored", "session": session, "reason": reason, "blocks": []},
                       record=record, reason=reason, session=session, step=step)

    def _flow_for(self, name: str, version: str) -> Flow:
        """The exact version a call started on: in memory, or re-compiled from the stored source
        (after a restart or a reload), so an in-flight call never switches versions mid-call."""
        flow = self.flows.versions.get((name, version))
        if flow is None:
            source = self.db.get_flow_source(name, version)
            if source:
                flow = self.flows.compile_stored(name, version, source)
        if flow is None:
            flow = self.flows.get(name)
            if flow is None:
                raise Rejected(409, "error", f"flow {name!r} is no longer loaded")
            log.warning("version %s of flow %s is gone; continuing on %s", version, name, flow.version)
        return flow

    def reload_flows(self) -> list:
        """Reload the flows folder. A flow that fails its checks keeps its running version; the
        errors are logged, counted and shown on /readyz. Returns the errors."""
        errors = self.flows.reload()
        obs.FLOW_RELOADS.labels("failed" if errors else "ok").inc()
        for finding in errors:
            log.error("flow reload: %s (the running version is kept)", finding)
        self.remember_flow_versions()
        log.info("flows reloaded: %s", ", ".join(f"{n}@{f.version}" for n, f in sorted(self.flows.current.items())))
        return errors

    def _queue_blocks(self, tx: Any, key: str, actions: tuple) -> None:
        for block in self._outbox_rows(key, actions):
            tx.add_block(**block)

    @staticmethod
    def _outbox_rows(key: str, actions: tuple) -> list[dict[str, Any]]:
        # Recorded as already "sending": this worker sends them right after commit, and the recovery
        # pass treats a "sending" block with no news as possibly lost.
        return [{"session": key, "step": action.step, "node": action.node, "kind": action.kind,
                 "endpoint": action.endpoint, "params": dict(action.params), "status": "sending"}
                for action in actions if isinstance(action, Block)]

    # ------------------------------------------------------------------ sending
    def _after_commit(self, flow: Flow, key: str, result: interpreter.Step, pending: _Pending | None = None) -> Outcome:
        """Carry out the actions of a committed step (send blocks, run http steps and side calls,
        feed their results back) and build the answer. With ``pending`` the provider's answers are
        stored later, with the request's outcome (``_settle``); without, each at once."""
        sent: list[dict[str, Any]] = []
        outcome = result.outcome
        todo = list(result.actions)
        state = result.state
        guard = 0
        while todo and guard < 50:
            guard += 1
            action = todo.pop(0)
            feedback: Any = None
            if isinstance(action, Block):
                feedback = self._send(key, state, action, sent, claimed=True, pending=pending)
            elif isinstance(action, HttpCall):
                feedback = self.http.run(action)
            elif isinstance(action, SideCall):
                feedback = self._side_call(key, action)
            if feedback is not None:
                nxt = self._feed(key, feedback, pending)
                if nxt is None:
                    break
                outcome = nxt.outcome
                state = nxt.state
                todo.extend(nxt.actions)
        body = {
            "status": "ok",
            "session": key,
            "flow": flow.name,
            "node": state.node,
            "step": state.step,
            "call_status": state.status,
            "outcome": outcome,
            "blocks": sent,
        }
        return Outcome(200, body, record="accepted", session=key, step=state.step)

    def _side_call(self, key: str, action: SideCall) -> SideCallResult:
        """Carry out a flow's side call; its answer goes back to the interpreter. ``voipnow/<api>``
        goes to the VoipNow client, anything else to the Hoiio client (which, once the API is
        installed, is a ``SideCallRecorder``: it stores the side call, linked to ``key``)."""
        if action.api.startswith("voipnow/"):
            return self._voipnow_side_call(key, action)
        params = list(action.params)
        try:
            if getattr(self.client, "accepts_session", False):
                res = self.client.call(action.api, params, session=key)
            else:
                res = self.client.call(action.api, params)
        except (BlockError, HoiioClientError) as exc:
            return SideCallResult(step=action.step, ok=False, status="error_invalid_request",
                                  data={"error": str(exc)[:500]})  # fmt: skip
        return SideCallResult(step=action.step, ok=res.ok, status=res.status, data=res.data or {})

    def _voipnow_side_call(self, key: str, action: SideCall) -> SideCallResult:
        """A ``voipnow_invite`` node's request, stored as a side call of the session ``key`` (kind
        ``voipnow/invite`` for a conferenceInvite, as the API stores its own, so the invite can be
        queried and hung up through ``/api/conferences/voipnow/invites/<id>``). Never raises for a
        refusal: without VoipNow, or for a request VoipNow could never accept, the answer is a failure
        (``error_voipnow_not_configured``, ``error_invalid_request``) and the flow takes its failed
        exit or its error handler."""
        api = action.api.removeprefix("voipnow/")
        params = [(str(k), str(v)) for k, v in action.params]
        given = dict(params)
        request: dict[str, Any] = {"number": given.pop("destination", None), **given, "origin": "flow",
                                   "node": action.node}  # fmt: skip
        wait = request.get("wait_for_pickup")
        if isinstance(wait, str) and wait.isascii() and wait.isdigit():
            request["wait_for_pickup"] = int(request["wait_for_pickup"])
        kind = "voipnow/invite" if api == "conferenceInvite" else action.api
        client = self.voipnow
        if client is None:
            why = "VoipNow is not configured: set VOIPNOW_URL, VOIPNOW_TOKEN and VOIPNOW_EXTENSION"
            log.error("%s: %s (node %s)", key, why, action.node)
            ref = self.db.add_side_call(kind, request, session=key, status="failed")
            self.db.update_side_call(ref, "failed", {"status": VOIPNOW_NOT_CONFIGURED, "meaning": why})
            return SideCallResult(step=action.step, ok=False, status=VOIPNOW_NOT_CONFIGURED, data={"error": why})
        request["extension"] = client.extension
        ref = self.db.add_side_call(kind, request, session=key, status="sending")
        try:
            res = client.call(api, params)
        except voipnow_wire.InviteError as exc:  # refused before any I/O
            self.db.update_side_call(ref, "failed", {"status": "error_invalid_request", "error": str(exc)[:500]})
            return SideCallResult(step=action.step, ok=False, status="error_invalid_request",
                                  data={"error": str(exc)[:500]})  # fmt: skip
        ids = [i for i in (res.data or {}).get("ids", []) if isinstance(i, str)]
        status = "sent" if res.ok else ("unknown" if res.maybe_delivered else "failed")
        response = {"status": res.status, "meaning": res.meaning, "http_status": res.http_status,
                    "attempts": res.attempts, "data": dict(res.data or {})}  # fmt: skip
        self.db.update_side_call(ref, status, response, txn_ref=ids[0] if ids else None)
        return SideCallResult(step=action.step, ok=res.ok, status=res.status, data=res.data or {})

    def _send(self, key: str, state: CallState, block: Block, sent: list, *, claimed: bool = False,
              resend: bool = False, prior_attempts: int = 0, pending: _Pending | None = None) -> Any:
        # Claim the outbox row first: if a recovery pass (or another worker) already owns it, the
        # block is theirs to send, and sending it here too would do it twice.
        if not claimed and not self.db.mark_block(session=key, step=block.step, status="sending",
                                                  from_status=("pending",)):
            return None
        hoiio_session = state.call.get("session") or state.session
        notify = None
        monitor = None
        if block.awaits_notification:
            notify = self.notify_url(key, block.step, ref=(key != hoiio_session or block.kind == "dial"))
        if block.kind == "monitor":
            monitor = self.notify_url(key, block.step, route="monitor", ref=(key != hoiio_session))
        try:
            res = self.client.send_block(block, session=hoiio_session, notify_url=notify, monitor_notify_url=monitor)
        except (BlockError, HoiioClientError) as exc:
            log.error("block %s for %s could not be sent: %s", block.kind, key, exc)
            self._mark(pending, session=key, step=block.step, status="failed", http_status=None,
                       provider_status="error_invalid_block", response=None, duration_ms=0,
                       attempts=0, error=str(exc)[:500])
            sent.append({"endpoint": block.endpoint, "params": {}, "provider_status": "error_invalid_block"})
            return ProviderRejected(step=block.step, status="error_invalid_block")
        if resend and not res.ok and res.status == "error_session_not_ready":
            # Hoiio is still carrying out the first copy: it did arrive, and its notification will come.
            res = dataclasses.replace(res, ok=True)
        status = "sent" if res.ok else ("unknown" if res.maybe_delivered else "failed")
        obs.PROVIDER_SECONDS.labels(block.endpoint).observe((res.elapsed_ms or 0) / 1000)
        if not res.ok:
            known = classify(res.status).known or res.status in ("error_timeout", "error_connection",
                                                                  "error_bad_response")
            obs.PROVIDER_ERRORS.labels(res.status if known else "other").inc()
        self._mark(
            pending, session=key, step=block.step, status=status, http_status=res.http_status,
            provider_status=res.status, response=res.data, duration_ms=res.elapsed_ms,
            attempts=prior_attempts + res.attempts, error=None if res.ok else res.status,
        )
        sent.append({
            "endpoint": block.endpoint,
            "params": dict(res.request_params),
            "provider_status": res.status,
        })
        if res.ok and block.kind == "dial":
            self._remember_dial(key, res.data or {})
        if res.ok or res.maybe_delivered:
            return None
        return ProviderRejected(step=block.step, status=res.status)

    def _mark(self, pending: _Pending | None, **mark: Any) -> None:
        if pending is None:
            self.db.mark_block(**mark)
        else:
            pending.marks.append(mark)

    def _remember_dial(self, key: str, data: Mapping[str, Any]) -> None:
        """Store the Hoiio session and txn_ref a dial request returned, so later blocks use them.

        The dial's first notification may have overtaken this answer and stored the session already
        (``_decide``): what it did not bring is still stored, the txn_ref above all (the call's
        status queries and its lookup by txn_ref need it)."""
        hoiio_session = data.get("session")
        if not isinstance(hoiio_session, str) or not hoiio_session:
            return
        txn_ref = data.get("txn_ref") if isinstance(data.get("txn_ref"), str) else None
        with self.db.transaction() as tx:
            row = tx.lock_call(key)
            if row is None:
                return
            state = CallState.from_dict(row.state)
            call = {**state.call, "session": state.call.get("session") or hoiio_session}
            if txn_ref and not call.get("txn_ref"):
                call["txn_ref"] = txn_ref
            if call == state.call and (row.txn_ref or not call.get("txn_ref")):
                return  # nothing to add to the state, and the txn_ref column has one or none is known
            new = state.evolve(call=call)
            tx.update_call(key, state=new.to_dict(), node=new.node, step=new.step, status=new.status,
                           outcome=new.outcome, billing=dict(new.billing) or None,
                           expected_row_version=row.row_version, txn_ref=call.get("txn_ref"))

    # ------------------------------------------------------------------ crash recovery
    def recover_stuck_blocks(self, older_than_seconds: float = 10.0, *, max_attempts: int = 3) -> int:
        """Deal with blocks whose fate is unknown, so no caller is left in silence:

        * ``pending``: committed but never sent (the process died right after commit): send it;
        * ``sending``: the process died mid-send: send again;
        * ``unknown``: the connection dropped or timed out after the request may have reached Hoiio,
          and no notification came back for that step: send again. If Hoiio is still carrying out
          the first copy it answers ``error_session_not_ready``, which proves the first copy arrived.

        Each block is claimed atomically, so several workers (or machines) can run this at once. A
        block whose call has moved on or ended is left alone. After ``max_attempts`` the call goes
        to its error handler. Returns how many blocks were sent again."""
        resent = 0
        rows = self.db.blocks_in_status(("pending", "sending", "unknown"), older_than_seconds=older_than_seconds)
        for row in rows:
            call = self.db.get_call(row.session)
            if call is None or call.status != "active" or call.step != row.step:
                if row.status != "unknown":
                    self.db.mark_block(row.id, "unknown", error="call moved on before the block was sent",
                                       from_status=(row.status,))
                continue
            try:
                flow = self._flow_for(call.flow, call.flow_version)
            except Rejected:
                continue
            if row.attempts >= max_attempts:
                if self.db.mark_block(row.id, "failed", error=f"gave up after {row.attempts} attempts",
                                      from_status=(row.status,)):
                    nxt = self._feed(row.session, ProviderRejected(step=row.step, status="error_connection"))
                    if nxt is not None and nxt.actions:
                        self._after_commit(flow, row.session, nxt)
                continue
            claim_to = "unknown" if row.status == "sending" else "sending"
            if not self.db.mark_block(row.id, claim_to, from_status=(row.status,)):
                continue  # someone else took it
            state = CallState.from_dict(call.state)
            block = Block(kind=row.kind, params=tuple((k, str(v)) for k, v in row.params.items()),
                          step=row.step, node=row.node)
            log.warning("resending block %s (step %s, was %s) for %s", row.kind, row.step, row.status, row.session)
            feedback = self._send(row.session, state, block, [], claimed=True, resend=True,
                                  prior_attempts=row.attempts)
            resent += 1
            if feedback is not None:
                nxt = self._feed(row.session, feedback)
                if nxt is not None and nxt.actions:
                    self._after_commit(flow, row.session, nxt)
        return resent

    def _feed(self, key: str, event: HttpResult | SideCallResult | ProviderRejected,
              pending: _Pending | None = None) -> interpreter.Step | None:  # fmt: skip
        try:
            with self.db.transaction() as tx:
                if pending is not None:
                    pending.write_marks(tx)  # the refusal that led here is stored before what follows it
                row = tx.lock_call(key)
                if row is None:
                    return None
                flow = self._flow_for(row.flow, row.flow_version)
                state = CallState.from_dict(row.state)
                result = interpreter.step(flow, state, event, now=self.now())
                if result.outcome.startswith("ignored"):
                    return None
                tx.update_call(
                    key, state=result.state.to_dict(), node=result.state.node, step=result.state.step,
                    status=result.state.status, outcome=result.state.outcome,
                    billing=dict(result.state.billing) or None, expected_row_version=row.row_version,
                )
                self._queue_blocks(tx, key, result.actions)
            return result
        except ConcurrentUpdate:
            return None

    # ------------------------------------------------------------------ outbound
    def start_outbound(self, flow_name: str, *, to: str, vars: Mapping[str, Any] | None = None,
                       caller_id: str | None = None, tag: str | None = None) -> Outcome:
        flow = self.flows.get(flow_name)
        if flow is None or not flow.outbound:
            raise Rejected(404, "invalid", f"there is no outbound flow named {flow_name!r}")
        missing = [name for name in flow.inputs if name not in (vars or {})]
        if missing:
            raise Rejected(400, "invalid", f"vars: flow {flow_name!r} needs {', '.join(missing)}")
        key = f"out-{uuid.uuid4().hex[:20]}"
        call = {"dest": to}
        if caller_id:
            call["caller_id"] = caller_id
        if tag:
            call["tag"] = tag
        result = interpreter.start(flow, session=key, call=call, vars=dict(vars or {}), now=self.now())
        with self.db.transaction() as tx:
            tx.insert_call(
                session=key, flow=flow.name, flow_version=flow.version, direction="outbound",
                state=result.state.to_dict(), node=result.state.node, step=result.state.step,
                status=result.state.status, caller=None, called=None, dest=to, txn_ref=None,
            )
            self._queue_blocks(tx, key, result.actions)
        return self._after_commit(flow, key, result)


def _source_of(flow: Flow) -> str:
    try:
        with open(flow.source, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


__all__ = ["CallService", "Inbound", "Outcome", "Rejected", "parse_form"]
