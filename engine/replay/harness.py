"""Runs replay cases through the real engine, in process, and compares what it sends.

Each case gets the real Flask app (``create_app``) on a fresh SQLite database (a copy of one
migrated template), the real ``HoiioClient`` on top of a recording transport (so what is compared is
exactly what would go on the wire), notification signatures switched on, the engine's clock fixed
at the case's ``now`` and a stub for the flow's ``http`` steps that answers from the case's ``http:``
map (anything else: no connection). Notifications are signed and posted like Hoiio does: the
``answer`` notification to ``/hoiio/answer`` (or ``/hoiio/answer/<flow>`` when no number leads to
the flow), every later one to the ``notify_url`` of the last block sent, a monitor recording to the
last ``monitor_notify_url``; an outbound case starts with ``CallService.start_outbound``.

May import ``engine.web`` (create_app), ``engine.service``, ``engine.config``, ``engine.registry``,
``engine.flowfile``, ``engine.providers``, ``engine.storage``, ``engine.core``,
``engine.replay.case``, requests and the standard library. Never click.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import shutil
import tempfile
import threading
import time
import traceback
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from requests.adapters import BaseAdapter

from engine.config import Settings
from engine.core.actions import AWAITED_BLOCKS, BLOCK_ENDPOINTS, HttpCall
from engine.core.events import HttpResult
from engine.core.flow import Flow
from engine.flowfile import load_flow
from engine.providers.hoiio.client import HoiioClient
from engine.providers.hoiio.signature import SIGNATURE_HEADER, sign_body
from engine.registry import FlowLoadError, FlowRegistry
from engine.replay.case import Case, CaseError, blocks_text, inline, render_case, update_expectations, wire_order
from engine.service import Rejected
from engine.storage import Database

__all__ = [
    "APP_ID",
    "DEFAULT_CALLER",
    "DEFAULT_SESSION",
    "PUBLIC_URL",
    "TOKEN",
    "CaseResult",
    "RecordingTransport",
    "ReplayApp",
    "Replayer",
    "StepResult",
    "StubHttp",
    "notification_defaults",
    "strip_params",
    "write_update",
]

APP_ID = "replay-app"
TOKEN = "replay-token"  # noqa: S105 - signs the replay's own notifications, guards nothing
API_URL = "https://hoiio.replay.invalid/open"
PUBLIC_URL = "https://ivr.replay.invalid"
DEFAULT_SESSION = "S1000"
DEFAULT_CALLER = "+6591234567"
#: Sent with every request but compared for presence only.
PRESENCE_ONLY = ("app_id", "access_token", "session", "notify_url", "monitor_notify_url")
_KIND_OF_ENDPOINT = {endpoint: kind for kind, endpoint in BLOCK_ENDPOINTS.items()}


# ------------------------------------------------------------------------------------------ doubles
class RecordingTransport(BaseAdapter):
    """Hoiio's HTTP API as a requests transport: records every request, answers from a script
    (per endpoint, in order), else ``success_ok`` (a dial also returns the session and txn_ref).

    An answer is a status (``error_dest_invalid``), a whole JSON answer (a mapping with ``status``),
    or ``timeout`` / ``connection_refused`` for an answer lost on the way back / a request that never
    arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._script: dict[str, deque] = defaultdict(deque)
        self.dial_answer: dict[str, Any] = {"status": "success_ok"}
        self._lock = threading.Lock()

    def reset(self, *, dial_answer: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.dial_answer = dict(dial_answer or {"status": "success_ok"})

    def script(self, answers: Mapping[str, Iterable[Any]]) -> None:
        with self._lock:
            for endpoint, listed in answers.items():
                self._script[endpoint].extend(listed)

    def leftover(self) -> dict[str, list[Any]]:
        """Scripted answers no request used (and forgets them)."""
        with self._lock:
            left = {endpoint: list(queue) for endpoint, queue in self._script.items() if queue}
            self._script.clear()
        return left

    def send(self, request, **kwargs):  # noqa: ARG002 - requests' adapter signature
        endpoint = urlsplit(request.url).path.split("/open/", 1)[-1]
        body = request.body or ""
        if isinstance(body, bytes):
            body = body.decode()
        params = dict(parse_qsl(body, keep_blank_values=True))
        with self._lock:
            self.requests.append((endpoint, params))
            queue = self._script.get(endpoint)
            scripted = queue.popleft() if queue else None
        if isinstance(scripted, BaseException):
            raise scripted
        if scripted == "timeout":
            raise requests.exceptions.ReadTimeout("replay: the answer was lost (scripted timeout)", request=request)
        if scripted == "connection_refused":
            raise requests.exceptions.ConnectionError(ConnectionRefusedError("replay: connection refused"),
                                                      request=request)
        if scripted is None:
            payload: Any = dict(self.dial_answer) if endpoint == "ivr/start/dial" else {"status": "success_ok"}
        elif isinstance(scripted, dict):
            payload = scripted
        else:
            payload = {"status": scripted}
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass

    def session_factory(self) -> Callable[[], requests.Session]:
        def factory() -> requests.Session:
            session = requests.Session()
            session.mount("http://", self)
            session.mount("https://", self)
            return session

        return factory


class StubHttp:
    """Answers a flow's ``http`` steps from a map of URL -> answers (used in order, the last one
    repeating); a URL not in the map gets no connection, like a host that does not resolve."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Mapping[str, Any]]] = {}
        self.used: dict[str, int] = {}
        self.calls: list[HttpCall] = []
        #: Consulted for URLs not in ``answers`` (``ivr export`` uses it to learn the URLs).
        self.fallback: Callable[[HttpCall], HttpResult | None] | None = None

    def reset(self, answers: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> None:
        self.answers = {url: list(listed) for url, listed in (answers or {}).items()}
        self.used = {}
        self.calls = []
        self.fallback = None

    def run(self, call: HttpCall) -> HttpResult:
        self.calls.append(call)
        listed = self.answers.get(call.url)
        if not listed:
            if self.fallback is not None:
                found = self.fallback(call)
                if found is not None:
                    return found
            return HttpResult(call.step, None, None, "request failed: ConnectionError (replay: the case's "
                              "http: has no answer for this URL)")
        index = min(self.used.get(call.url, 0), len(listed) - 1)
        self.used[call.url] = index + 1
        answer = listed[index]
        return HttpResult(call.step, answer.get("status"), answer.get("json"), answer.get("error"))


def strip_params(params: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in PRESENCE_ONLY}


def _missing(endpoint: str, params: Mapping[str, str]) -> list[str]:
    kind = _KIND_OF_ENDPOINT.get(endpoint)
    needed = ["app_id", "access_token"]
    if kind is not None and kind != "dial":
        needed.append("session")
    if kind in AWAITED_BLOCKS:
        needed.append("notify_url")
    if kind == "monitor":
        needed.append("monitor_notify_url")
    return [name for name in needed if not params.get(name)]


# ------------------------------------------------------------------------------------------ results
def _norm(blocks: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, tuple]]:
    return [(b["endpoint"], tuple(sorted((b.get("params") or {}).items()))) for b in blocks or ()]


@dataclass
class StepResult:
    index: int
    line: int
    kind: str
    fields: Mapping[str, Any]  # the notification's fields as the case gives them
    expected: list[dict[str, Any]] | None
    actual: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # missing presence-only parameters, routing
    notes: list[str] = field(default_factory=list)  # unused provider answers, ...
    http_status: int | None = None
    response: Any = None
    http_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The step as a reader sees it in a report (``gather {digits: '1'}``); formatted on demand."""
        return "start: outbound" if self.kind == "start" else f"{self.kind} {inline(self.fields)}"

    @property
    def ok(self) -> bool:
        return self.expected is not None and _norm(self.expected) == _norm(self.actual) and not self.problems

    def diff(self, where: str = "") -> list[str]:
        if self.expected is None:
            head = ["no expect: for this step (run ivr replay --update to record what the engine sends)"]
            return head + ["actual:"] + ["  " + line for line in blocks_text(self.actual)] + self.problems
        lines: list[str] = []
        if _norm(self.expected) != _norm(self.actual):
            lines.extend(difflib.unified_diff(
                blocks_text(self.expected), blocks_text(self.actual),
                fromfile=f"expected ({where or 'case'})", tofile="actual (sent by the engine)", lineterm="", n=3))
        return lines + self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.index + 1, "line": self.line, "kind": self.kind, "notification": self.label,
            "ok": self.ok, "http_status": self.http_status, "expected": self.expected, "actual": self.actual,
            "problems": self.problems, "notes": self.notes, "http_calls": self.http_calls,
        }


@dataclass
class CaseResult:
    case: Case
    flow: Flow | None = None
    steps: list[StepResult] = field(default_factory=list)
    call: dict[str, Any] | None = None  # the stored call at the end: status, outcome, vars, path
    nodes_sent: list[str] = field(default_factory=list)  # node of every block queued for the call
    call_problems: list[str] = field(default_factory=list)
    error: str | None = None
    updated: bool = False

    @property
    def passed(self) -> bool:
        return self.error is None and all(s.ok for s in self.steps) and not self.call_problems

    @property
    def status(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.updated:
            return "UPDATED"
        return "PASS" if self.passed else "FAIL"

    def report(self) -> str:
        """Text for people: the verdict, then per failing step a unified diff."""
        counted = f"{len(self.steps)} step{'s' if len(self.steps) != 1 else ''}"
        head = f"{self.status} {self.case.name}"
        if self.error is not None:
            return f"{head}\n  {self.error}"
        lines = [f"{head} ({counted}" + (f", {self.call['outcome']}" if self.call and self.call.get("outcome")
                                          else "") + ")"]
        for step in self.steps:
            for note in step.notes:
                lines.append(f"  note: step {step.index + 1} (line {step.line}): {note}")
            if step.ok or self.updated:
                continue
            lines.append(f"  step {step.index + 1} (line {step.line}): {step.label}")
            lines.extend("    " + line for line in step.diff(self.case.where(step.line)))
        if self.call_problems and not self.updated:
            lines.append("  expect_call:")
            lines.extend("    " + line for line in self.call_problems)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case.name, "flow": self.case.flow, "status": self.status, "passed": self.passed,
            "error": self.error, "steps": [s.to_dict() for s in self.steps],
            "call": self.call, "call_problems": self.call_problems,
        }

    def new_expect_call(self) -> dict[str, Any] | None:
        """``expect_call`` as it would have to be for this run: status, outcome and the variables the
        case already checks."""
        if self.call is None:
            return self.case.expect_call
        wanted = self.case.expect_call or {}
        out: dict[str, Any] = {"status": self.call.get("status"), "outcome": self.call.get("outcome")}
        if "vars" in wanted:
            names = list((wanted.get("vars") or {}).keys())
            out["vars"] = {name: self.call["vars"].get(name) for name in names}
        return out


def _check_call(expected: Mapping[str, Any] | None, call: Mapping[str, Any] | None) -> list[str]:
    if expected is None:
        return []
    if call is None:
        return ["no call was stored for this case (was the first notification refused?)"]
    want: list[str] = []
    got: list[str] = []
    for key in ("status", "outcome"):
        if key in expected and expected[key] != call.get(key):
            want.append(f"{key}: {expected[key]!r}")
            got.append(f"{key}: {call.get(key)!r}")
    for name, value in (expected.get("vars") or {}).items():
        actual = call["vars"].get(name)
        if actual != value:
            want.append(f"vars.{name}: {value!r}")
            got.append(f"vars.{name}: {actual!r}")
    if not want:
        return []
    return list(difflib.unified_diff(want, got, fromfile="expected", tofile="actual", lineterm="", n=0))


# ------------------------------------------------------------------------------------------ the app
class ReplayApp:
    """One real app (database, transport, clock, http stub) that can play many cases in turn."""

    def __init__(self, registry: FlowRegistry, database_url: str, *, quiet: bool = True) -> None:
        from engine.web import create_app, service_of

        self.registry = registry
        self.transport = RecordingTransport()
        self.http = StubHttp()
        #: Answers http steps whose URL the case does not list (``ivr export`` learns URLs with it).
        self.http_fallback: Callable[[HttpCall], HttpResult | None] | None = None
        self._now = datetime(2026, 1, 1, tzinfo=UTC)
        options: dict[str, Any] = {
            "hoiio_app_id": APP_ID, "hoiio_access_token": TOKEN, "hoiio_api_url": API_URL,
            "database_url": database_url, "flows_dir": registry.folder, "public_url": PUBLIC_URL,
            "verify_signatures": True,
            "recovery_interval": 0,  # no background resending: a replay is one thread, start to end
        }
        known = {f.name for f in dataclasses.fields(Settings)}
        settings = Settings(**{k: v for k, v in options.items() if k in known})
        self._started = time.monotonic()
        # Stored timestamps run on from the case's clock (so an exported call keeps its ``now``)
        # while staying in order; the engine itself sees the fixed ``now``.
        self.db = Database.open(database_url, clock=lambda: self._now + timedelta(
            seconds=time.monotonic() - self._started))
        client = HoiioClient(API_URL, APP_ID, TOKEN, session_factory=self.transport.session_factory(),
                             sleep=lambda seconds: None)
        engine_log = logging.getLogger("engine")
        self._log_level = engine_log.level
        self.app = create_app(settings, db=self.db, client=client, flows=registry, http=self.http,
                              now=lambda: self._now)
        if quiet:  # the engine's own log lines (one per notification) would drown the report
            engine_log.setLevel(logging.CRITICAL)
        self.service = service_of(self.app)
        self.client = self.app.test_client()

    def close(self) -> None:
        self.db.close()
        logging.getLogger("engine").setLevel(self._log_level)

    # -- one case ----------------------------------------------------------------------------------
    def play(self, case: Case, *, session: str | None = None) -> CaseResult:
        result = CaseResult(case=case)
        flow = self.registry.get(case.flow)
        if flow is None:
            known = ", ".join(sorted(self.registry.current)) or "none"
            result.error = f"there is no flow named {case.flow!r} in {self.registry.folder} (flows: {known})"
            return result
        result.flow = flow
        if flow.outbound and not case.outbound:
            result.error = (f"flow {flow.name!r} is an outbound flow: start the steps with `- start: outbound` "
                            "and give dest: (the number called)")
            return result
        if case.outbound and not flow.outbound:
            result.error = f"flow {flow.name!r} is for incoming calls: it cannot start with `start: outbound`"
            return result
        session = session or case.session or DEFAULT_SESSION
        txn_ref = case.txn_ref or f"AA-{session}"
        self._now = case.now
        self._started = time.monotonic()
        self.http.reset(case.http)
        self.http.fallback = self.http_fallback
        self.transport.reset(dial_answer={"status": "success_ok", "txn_ref": txn_ref, "session": session})
        defaults = notification_defaults(case, flow, session, txn_ref)
        key: str | None = None if flow.outbound else session
        try:
            for index, step in enumerate(case.steps):
                outcome_key = self._play_step(case, flow, index, step, defaults, result)
                key = outcome_key or key
        except Exception as exc:  # a harness or engine bug: report it against the case, keep going
            trace = traceback.format_exception_only(type(exc), exc)[-1].strip()
            result.error = f"step {len(result.steps) + 1} raised {trace}"
            return result
        if key is not None:
            row = self.db.get_call(key)
            if row is not None:
                state = row.state
                result.call = {
                    "session": key, "status": row.status, "outcome": row.outcome, "node": row.node,
                    "vars": dict(state.get("vars") or {}), "path": [list(p) for p in state.get("path") or ()],
                }
                result.nodes_sent = [block.node for block in self.db.blocks_for(key)]
        result.call_problems = _check_call(case.expect_call, result.call)
        return result

    def _play_step(self, case: Case, flow: Flow, index: int, step: Any, defaults: Mapping[str, str | None],
                   result: CaseResult) -> str | None:
        mark = len(self.transport.requests)
        http_mark = len(self.http.calls)
        self.transport.script(step.provider)
        sr = StepResult(index=index, line=step.line, kind=step.kind, fields=step.fields, expected=step.expect)
        result.steps.append(sr)
        key = None
        if step.kind == "start":
            try:
                outcome = self.service.start_outbound(case.flow, to=case.dest or "", vars=case.vars,
                                                      caller_id=case.caller_id, tag=case.tag)
                sr.http_status, sr.response, key = outcome.http_status, outcome.body, outcome.session
            except Rejected as exc:
                sr.http_status, sr.response = exc.http_status, {"status": "error", "error": exc.reason}
        else:
            fields = self._fields(step, defaults)
            target = self._target(case, flow, step, fields)
            if target is None:
                sr.problems.append(f"nowhere to post this {step.kind}: no block sent so far carried a "
                                   f"{'monitor_notify_url' if step.kind == 'monitor' else 'notify_url'}")
            else:
                body = urlencode(list(fields.items())).encode()
                headers = {"Content-Type": "application/x-www-form-urlencoded",
                           SIGNATURE_HEADER: sign_body(body, TOKEN)}
                response = self.client.post(target, data=body, headers=headers)
                sr.http_status = response.status_code
                sr.response = response.get_json(silent=True)
        for endpoint, params in self.transport.requests[mark:]:
            sr.actual.append({"endpoint": endpoint, "params": wire_order(endpoint, strip_params(params))})
            missing = _missing(endpoint, params)
            if missing:
                sr.problems.append(f"{endpoint} was sent without {', '.join(missing)}")
        for call in self.http.calls[http_mark:]:
            sr.http_calls.append({"node": call.node, "method": call.method, "url": call.url,
                                  "json": call.json, "params": dict(call.params)})
        left = self.transport.leftover()
        if left:
            shown = ", ".join(f"{endpoint}: {answers}" for endpoint, answers in left.items())
            sr.notes.append(f"provider answers not used (no such request was sent): {shown}")
        if sr.http_status is not None and sr.http_status >= 400:
            error = sr.response.get("error") if isinstance(sr.response, dict) else None
            sr.notes.append(f"the engine answered HTTP {sr.http_status}" + (f": {error}" if error else ""))
        return key

    @staticmethod
    def _fields(step: Any, defaults: Mapping[str, str | None]) -> dict[str, str]:
        given = step.fields
        fields: dict[str, str | None] = {}
        if step.kind == "monitor":
            fields["session"] = given.get("session", defaults.get("session"))
            fields.update({k: v for k, v in given.items() if k != "session"})
        else:
            for name in ("ivr_block", "call_state"):
                if name in given:
                    fields[name] = given[name]
            for name, value in defaults.items():
                fields[name] = given.get(name, value)
            fields.update({k: v for k, v in given.items() if k not in fields})
        return {k: v for k, v in fields.items() if v is not None}

    def _target(self, case: Case, flow: Flow, step: Any, fields: Mapping[str, str]) -> str | None:
        if step.kind == "notify" and fields.get("ivr_block") == "answer":
            routed = self.registry.for_number(fields.get("to"))
            return "/hoiio/answer" if routed is not None and routed.name == flow.name else f"/hoiio/answer/{flow.name}"
        wanted = "monitor_notify_url" if step.kind == "monitor" else "notify_url"
        for _endpoint, params in reversed(self.transport.requests):
            if params.get(wanted):
                parts = urlsplit(params[wanted])
                return parts.path + (f"?{parts.query}" if parts.query else "")
        return None


def notification_defaults(case: Case, flow: Flow, session: str, txn_ref: str) -> dict[str, str | None]:
    """The fields the harness adds to each notification the case does not set itself."""
    if flow.outbound:
        return {"session": session, "txn_ref": txn_ref, "from": case.caller, "to": case.called, "dest": case.dest}
    called = case.called if case.called is not None else (flow.numbers[0] if flow.numbers else None)
    caller = case.caller if case.caller is not None else DEFAULT_CALLER
    return {"session": session, "txn_ref": txn_ref, "from": caller, "to": called, "dest": case.dest}


# ------------------------------------------------------------------------------------------ the runner
class Replayer:
    """Plays case files, each on a fresh database, against the flows of one folder (optionally
    with one flow replaced by another file). Use as a context manager, or call ``close()``."""

    def __init__(self, flows_dir: str | Path = "flows", *, registry: FlowRegistry | None = None) -> None:
        self.flows_dir = Path(flows_dir)
        self.registry = registry or FlowRegistry.load(self.flows_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="ivr-replay-")
        self._template: Path | None = None
        self._count = 0
        self.replaced: dict[str, Path] = {}  # flow name -> file it was replaced with

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tmp.cleanup()

    def replace_flow(self, name: str, file: str | Path) -> Flow:
        """Replay ``name``'s cases against ``file`` instead (a changed flow). Raises ``FlowLoadError``."""
        flow, findings = load_flow(file)
        if flow is None:
            raise FlowLoadError(findings)
        flow = replace(flow, name=name)
        current = dict(self.registry.current)
        current[name] = flow
        registry = FlowRegistry(self.registry.folder)
        registry.current = current
        registry.versions = dict(self.registry.versions)
        registry.versions[(name, flow.version)] = flow
        for flow_name, item in sorted(current.items()):
            for number in item.numbers:
                registry.by_number.setdefault(number, flow_name)
        self.registry = registry
        self.replaced[name] = Path(file)
        return flow

    def _database(self) -> str:
        if self._template is None:
            self._template = Path(self._tmp.name) / "template.sqlite3"
            Database.open(f"sqlite:///{self._template}").close()
        self._count += 1
        path = Path(self._tmp.name) / f"case-{self._count}.sqlite3"
        shutil.copyfile(self._template, path)
        return f"sqlite:///{path}"

    def open_app(self) -> ReplayApp:
        """A fresh app on a fresh database (close it when done)."""
        return ReplayApp(self.registry, self._database())

    def run(self, case: Case) -> CaseResult:
        app = self.open_app()
        try:
            return app.play(case)
        finally:
            app.close()
            database = Path(app.db.url.database or "")
            for leftover in database.parent.glob(f"{database.name}*"):
                leftover.unlink(missing_ok=True)


def write_update(result: CaseResult) -> bool:
    """Rewrite the case file's expectations with what the engine sent in ``result``."""
    case = result.case
    if case.path is None:
        return False
    expects = [s.actual for s in result.steps]
    try:
        new_text = update_expectations(case.text, expects, result.new_expect_call())
    except CaseError:  # steps written in flow style: write the whole case out again
        header = [line[1:].strip() for line in case.text.splitlines() if line.startswith("#")]
        steps = [dataclasses.replace(step, expect=blocks) for step, blocks in zip(case.steps, expects, strict=True)]
        new_text = render_case(dataclasses.replace(case, steps=steps, expect_call=result.new_expect_call()),
                               header=header)
    if new_text != case.text:
        case.path.write_text(new_text, encoding="utf-8")
        result.updated = True
    return result.updated
