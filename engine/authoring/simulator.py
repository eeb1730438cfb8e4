"""A simulated call through the real engine, for ``ivr try``.

Theory of operation. ``Simulation`` starts what a real deployment has, on the loopback interface: the
strict fake Hoiio (``engine.fakes``) on a free port, the real Flask app (``create_app``) served by
werkzeug in a thread on another free port, SQLite in a temporary file, signatures checked. The call
then goes the real way: the fake posts the Answer (or, outbound, the engine dials through the fake),
the engine answers each signed notification with a Hoiio block, and so on until the call ends.

Everything the person at the terminal sees or decides passes through one queue to the thread that
called ``run_inbound``/``run_outbound`` (the main thread: only it receives Ctrl-C):

* the engine's Hoiio client is wrapped (``_WatchedClient``): each block it sends is shown before it
  goes out (what the caller hears), and before a Transfer leaves, the person decides how it ends;
* the fake's ``CallerScript.ask`` hook asks for the keys at each Gather;
* the engine's ``http`` steps are answered here (``_SimulatedHttp``, ``--http`` stubs): simulated, never
  sent, unless asked;
* warnings the engine logs, and what the interpreter notes about the call (``_InterpreterProbe``:
  an invalid key, why a node failed), are shown as notes; the engine nodes passed (set, branch,
  hours, ...) are read from the engine's stored state as each block goes out.

A question is answered by the ``ui`` (``engine.authoring.console``), which may type, read a script or
hang up (``HANGUP``). Hanging up uses ``FakeHoiio.hangup_caller`` during the current block, so the
engine hears ``call_state=ended`` exactly as it would from Hoiio. The summary (``CallResult``) is read
from the engine's own database row at the end: the path (node, exit) the interpreter recorded, the
variables and the outcome.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import queue
import re
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from engine.core.actions import Block, HttpCall
from engine.core.events import HttpResult
from engine.core.flow import Collect, Flow, Menu, Node
from engine.fakes import CallerScript, FakeHoiio

HANGUP = "hang up"  # what a ui answers to hang up instead
TRANSFER_OUTCOMES = ("answered", "busy", "unanswered", "failed")
DIAL_OUTCOMES = TRANSFER_OUTCOMES
DIAL_WORDS = {"answered": "answers", "busy": "is busy", "unanswered": "does not answer", "failed": "cannot be reached"}
DEFAULT_CALLER = "+6591234567"
DEFAULT_NUMBER = "+6531580000"
APP_ID = "ivr-try"

#: Seconds to wait for the engine and the fake to agree that the call is over, once one of them says so.
SETTLE_SECONDS = 3.0
#: Seconds the engine has to take the call before the simulation gives up.
ANSWER_TIMEOUT = 15.0


# --------------------------------------------------------------------------------------------------
# What the caller hears


@dataclass(frozen=True)
class Heard:
    """One part of a prompt: spoken text (with its voice, when set) or an audio file."""

    text: str = ""
    language: str | None = None
    gender: str | None = None
    audio: str | None = None


_MARKUP = re.compile(r"<speech(?P<attrs>[^>]*)>(?P<speech>.*?)</speech>|<url>(?P<url>.*?)</url>", re.DOTALL)
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def heard(msg: str | None) -> list[Heard]:
    """Split a Hoiio ``msg`` (plain text, ``<speech ...>`` and ``<url>`` parts) into what is heard."""
    parts: list[Heard] = []
    if not msg:
        return parts
    at = 0

    def plain(text: str) -> None:
        if text.strip():
            parts.append(Heard(text=text.strip()))

    for match in _MARKUP.finditer(msg):
        plain(msg[at:match.start()])
        at = match.end()
        if match.group("url") is not None:
            parts.append(Heard(audio=match.group("url").strip()))
        else:
            attrs = dict(_ATTR.findall(match.group("attrs")))
            parts.append(Heard(text=match.group("speech").strip(), language=attrs.get("language"),
                               gender=attrs.get("gender")))
    plain(msg[at:])
    return parts


# --------------------------------------------------------------------------------------------------
# Events shown to the person, and questions put to them


@dataclass(frozen=True)
class BlockEvent:
    """The engine sent a Hoiio block (``kind``: play, gather, transfer, ...) for ``node``."""

    node: Node | None
    kind: str
    parts: tuple[Heard, ...]
    params: Mapping[str, str]


@dataclass(frozen=True)
class RefusedEvent:
    """Hoiio (the fake) refused a block or request: the engine handles it (error handler, ...)."""

    node: Node | None
    kind: str
    status: str


@dataclass(frozen=True)
class HttpEvent:
    node: Node | None
    method: str
    url: str
    body: Any
    status: int | None
    response: Any
    simulated: bool
    error: str | None = None


@dataclass(frozen=True)
class SideCallEvent:
    node: Node | None
    api: str
    params: Mapping[str, str]
    status: str


@dataclass(frozen=True)
class PassEvent:
    """The call went through an engine node (set, branch, hours, goto, http, conference): no block,
    nothing heard, but the way it went matters."""

    node: Node
    exit: str
    target: str | None


@dataclass(frozen=True)
class NoteEvent:
    """Something worth telling: an engine warning, the caller hanging up, ..."""

    text: str
    level: str = "info"  # info | warning


@dataclass
class KeysQuestion:
    """A Gather: which keys does the caller press? (``None``: silence, ``HANGUP``: hang up)."""

    node: Node | None
    max_digits: int
    timeout: int
    answer: str | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)


@dataclass
class TransferQuestion:
    """A Transfer is about to ring ``dest``: how does it end? (one of ``TRANSFER_OUTCOMES``, or ``HANGUP``)."""

    node: Node | None
    dest: str
    ring_time: str | None
    answer: str | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)


Event = BlockEvent | RefusedEvent | HttpEvent | SideCallEvent | PassEvent | NoteEvent


class Ui(Protocol):
    def show(self, event: Event) -> None: ...

    def ask_keys(self, question: KeysQuestion) -> str | None: ...

    def ask_transfer(self, question: TransferQuestion) -> str: ...


# --------------------------------------------------------------------------------------------------
# HTTP steps


@dataclass(frozen=True)
class HttpStub:
    """``--http URL=STATUS:JSON``: the answer for requests whose URL (without the query) matches
    ``pattern`` (exact, or with ``*`` wildcards)."""

    pattern: str
    status: int
    json: Any = None

    _SPEC = re.compile(r"^(?P<url>.+?)=(?P<status>[1-5][0-9][0-9])(?::(?P<json>.*))?$", re.DOTALL)

    @classmethod
    def parse(cls, spec: str) -> HttpStub:
        match = cls._SPEC.match(spec.strip())
        if not match:
            raise ValueError(f"{spec!r} is not URL=STATUS or URL=STATUS:JSON (e.g. "
                             "'https://api.example.com/*=200:{\"ok\": true}')")
        body = match.group("json")
        data = None
        if body not in (None, ""):
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise ValueError(f"the JSON after {match.group('status')}: in {spec!r} is not valid JSON: "
                                 f"{exc}") from None
        return cls(match.group("url"), int(match.group("status")), data)

    def matches(self, url: str) -> bool:
        bare = url.split("?", 1)[0]
        return fnmatch.fnmatchcase(bare, self.pattern) or fnmatch.fnmatchcase(url, self.pattern)


class _SimulatedHttp:
    """Stands in for the engine's ``HttpStepRunner``: answers from the stubs, else ``200 {}``
    (or, with ``real``, sends the request for real, public addresses only)."""

    def __init__(self, sim: Simulation, stubs: Sequence[HttpStub], real: bool) -> None:
        self.sim = sim
        self.stubs = list(stubs)
        self.real = None
        if real:
            from engine.httpstep import HttpStepRunner

            self.real = HttpStepRunner(allow_private=False)

    def run(self, call: HttpCall) -> HttpResult:
        node = self.sim.flow.nodes.get(call.node)
        self.sim.emit_progress()
        body = call.json if call.method != "GET" else dict(call.params)
        shown = _masked_body(self.sim.flow, node, body)
        stub = next((s for s in self.stubs if s.matches(call.url)), None)
        if stub is None and self.real is not None:
            result = self.real.run(call)
            self.sim.emit(HttpEvent(node, call.method, call.url, shown, result.status, result.json, False,
                                    result.error))
            return result
        status, data = (stub.status, stub.json) if stub else (200, {})
        self.sim.emit(HttpEvent(node, call.method, call.url, shown, status, data, True))
        return HttpResult(call.step, status, data, None)


def sensitive_variables(flow: Flow) -> frozenset[str]:
    """Variables the flow collects with ``sensitive: true``."""
    return frozenset(n.var for n in flow.nodes.values() if isinstance(n, Collect) and n.sensitive)


def _masked_body(flow: Flow, node: Node | None, body: Any) -> Any:
    templates = getattr(node, "body", None)
    secret = sensitive_variables(flow)
    if not isinstance(body, dict) or not templates or not secret:
        return body
    return {k: ("***" if k in templates and templates[k].variables() & secret else v) for k, v in body.items()}


# --------------------------------------------------------------------------------------------------
# The engine's Hoiio client, watched


class _WatchedClient:
    """The engine's real ``HoiioClient``; every block is shown first, a Transfer is decided first."""

    def __init__(self, inner: Any, sim: Simulation) -> None:
        self._inner = inner
        self._sim = sim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def send_block(self, block: Block, *, session: str, notify_url: str | None,
                   monitor_notify_url: str | None = None) -> Any:
        sim = self._sim
        node = sim.flow.nodes.get(block.node)
        params = dict(block.params)
        sim.emit_progress()
        sim.emit(BlockEvent(node, block.kind, tuple(heard(params.get("msg"))), params))
        decision = None
        if block.kind == "gather":
            sim.gather_node = node
        if block.kind == "transfer":
            decision = sim.decide_transfer(node, params)
            sim.outcomes.current = decision if decision in TRANSFER_OUTCOMES else "answered"
            if decision == HANGUP:
                sim.hang_up_during_next_block(session)
        result = self._inner.send_block(block, session=session, notify_url=notify_url,
                                        monitor_notify_url=monitor_notify_url)
        if not result.ok:
            sim.emit(RefusedEvent(node, block.kind, str(result.status)))
        elif block.kind == "dial":
            sim.emit(NoteEvent(f"{params.get('dest', '')} {DIAL_WORDS[sim.dial]} (--dial to change)"))
        return result

    def call(self, api: str, params: Sequence[tuple[str, str]]) -> Any:
        sim = self._sim
        sim.emit_progress()
        row = sim.engine_row()
        node = sim.flow.nodes.get(row.node) if row is not None and row.node else None
        result = self._inner.call(api, params)
        sim.emit(SideCallEvent(node, api, dict(params), str(result.status)))
        return result


# --------------------------------------------------------------------------------------------------
# The fake's caller script, with transfer outcomes decided as the call goes


class _Outcomes(Sequence[str]):
    """An endless list whose every item is the latest decision (read by the fake at each Transfer)."""

    def __init__(self) -> None:
        self.current = "answered"

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            raise TypeError("no slices")
        return self.current

    def __iter__(self) -> Iterator[str]:  # the fake only indexes; iterating gives the current decision once
        yield self.current


@dataclass(frozen=True)
class _LiveCaller(CallerScript):
    """A ``CallerScript`` whose Transfer outcomes are decided while the call runs (``_Outcomes``)
    instead of listed up front; everything else is the fake's ordinary scripted caller."""

    live_outcomes: _Outcomes | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.live_outcomes is not None:
            object.__setattr__(self, "transfers", self.live_outcomes)

    def hang_up_during_block(self, number: int) -> None:
        """The caller hangs up during the ``number``-th block (1-based), as ``hangup_after`` says."""
        object.__setattr__(self, "hangup_after", number - 1)


# --------------------------------------------------------------------------------------------------
# The summary


@dataclass
class CallResult:
    flow: Flow
    session: str | None
    path: tuple[tuple[str, str], ...] = ()
    node: str | None = None  # the node the call was at last
    vars: Mapping[str, Any] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()
    call: Mapping[str, str] = field(default_factory=dict)
    status: str = "not started"
    outcome: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def hops(self) -> list[tuple[str, str, str | None]]:
        """(node, exit, next node) in order; the next node is None where the call ended (hang-up)."""
        out: list[tuple[str, str, str | None]] = []
        for index, (node_id, exit_name) in enumerate(self.path):
            node = self.flow.nodes.get(node_id)
            target: str | None
            if exit_name == "hang-up":
                target = None
            elif exit_name.startswith("retry "):
                target = node_id
            elif node is not None and exit_name in node.exits():
                target = node.exits()[exit_name]
            elif index + 1 < len(self.path):
                target = self.path[index + 1][0]
            elif exit_name == "error":
                target = self.flow.on_error if self.flow.on_error != node_id else None
            else:
                target = self.node if self.node != node_id else None
            out.append((node_id, exit_name, target))
        return out

    @property
    def path_text(self) -> str:
        """``welcome → [next] → main_menu → [key 1] → sales``."""
        if not self.path:
            return self.node or "(nothing ran)"
        words: list[str] = []
        for node, exit_name, target in self.hops:
            if not words or words[-1] != node:
                words.append(node)
            words.append(f"[{exit_name}]")
            if target is not None:
                words.append(target)
        return " → ".join(words)

    @property
    def visited(self) -> list[str]:
        seen: dict[str, None] = {}
        for node, _exit, target in self.hops:
            seen.setdefault(node, None)
            if target is not None:
                seen.setdefault(target, None)
        if self.node and self.node in self.flow.nodes:
            seen.setdefault(self.node, None)
        return list(seen)

    def shown_vars(self) -> dict[str, str]:
        """Variables for display; sensitive ones as ``***``."""
        secret = self.sensitive | sensitive_variables(self.flow)
        return {name: ("***" if name in secret and value not in (None, "") else _short(value))
                for name, value in self.vars.items()}


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Plumbing


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _Dispatcher:
    """The served WSGI app, set once the app exists (the app needs the server's port first)."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.app(environ, start_response)


def _patient_transport(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """Posts the fake's notifications; the engine may be waiting on the person at the terminal (a
    Transfer question), so the read timeout is long."""
    response = requests.post(url, data=body, headers=dict(headers), timeout=(5, 24 * 3600), allow_redirects=False)
    response.close()
    return response.status_code


class _QueueLogHandler(logging.Handler):
    def __init__(self, sim: Simulation) -> None:
        super().__init__(logging.WARNING)
        self.sim = sim

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the simulation
            text = str(record.msg)
        self.sim.emit(NoteEvent(f"engine: {text}", "warning"))


_ROUTINE_NOTE = re.compile(r"\(step \d+\)$|^call (started|ended)\b|^[^:]+: set ")


class _InterpreterProbe:
    """The interpreter as the service sees it, passing on what it notes about a call (an invalid
    key, why a node failed, what an http step saved) so the transcript can say why a call went the
    way it did. The engine keeps these lines only in memory."""

    def __init__(self, real: Any, sim: Simulation) -> None:
        self._real = real
        self._sim = sim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _noted(self, result: Any) -> Any:
        for line in getattr(result, "log", ()):
            if not _ROUTINE_NOTE.search(line):
                self._sim.emit(NoteEvent(f"engine: {line}"))
        return result

    def start(self, *args: Any, **kwargs: Any) -> Any:
        return self._noted(self._real.start(*args, **kwargs))

    def step(self, *args: Any, **kwargs: Any) -> Any:
        return self._noted(self._real.step(*args, **kwargs))


class Clock:
    """The engine's clock: real time, or starting at ``at`` (an aware datetime) and running on."""

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        if self.at is None:
            return datetime.now(UTC)
        return (self.at + timedelta(seconds=time.monotonic() - self._t0)).astimezone(UTC)


# --------------------------------------------------------------------------------------------------
# The simulation


class Simulation:
    """One simulated call on one flow. Use as a context manager; then ``run_inbound`` or ``run_outbound``.

    ``caller``: the number calling in; ``number``: the Hoiio number called (default: the flow's first);
    ``clock``: the engine's clock (business hours); ``dial``: what the callee of an outbound flow
    does; ``http_stubs``/``real_http``: see ``_SimulatedHttp``.
    """

    def __init__(self, flow: Flow, ui: Ui, *, caller: str = DEFAULT_CALLER, number: str | None = None,
                 clock: Clock | None = None, http_stubs: Sequence[HttpStub] = (), real_http: bool = False,
                 dial: str = "answered") -> None:
        if dial not in DIAL_OUTCOMES:
            raise ValueError(f"dial must be one of {', '.join(DIAL_OUTCOMES)}")
        self.flow = flow
        self.ui = ui
        self.caller = caller
        self.number = number or (flow.numbers[0] if flow.numbers else DEFAULT_NUMBER)
        self.clock = clock or Clock()
        self.http_stubs = list(http_stubs)
        self.real_http = real_http
        self.dial = dial
        self.outcomes = _Outcomes()
        self.notes: list[str] = []
        self.gather_node: Node | None = None
        self.key: str | None = None  # the engine's session key
        self.fake_session: str | None = None
        self.hung_up = False
        self._path_seen = 0
        self._progress_lock = threading.Lock()
        self._events: queue.Queue[Any] = queue.Queue()
        self._closing = threading.Event()
        self._stack: list[Callable[[], None]] = []

    # ---------------------------------------------------------------- set-up
    def __enter__(self) -> Simulation:
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def _start(self) -> None:
        from engine.config import Settings
        from engine.providers.hoiio.client import HoiioClient
        from engine.registry import FlowRegistry
        from engine.storage import Database
        from engine.web import create_app

        tmp = tempfile.TemporaryDirectory(prefix="ivr-try-")
        self._stack.append(tmp.cleanup)
        token = secrets.token_hex(16)
        fake = FakeHoiio(app_id=APP_ID, access_token=token, transport=_patient_transport)
        api_url = fake.start("127.0.0.1", 0)
        self.fake = fake
        self._stack.append(fake.stop)

        dispatcher = _Dispatcher()
        server = make_server("127.0.0.1", 0, dispatcher, threaded=True, request_handler=_QuietHandler)
        server.daemon_threads = True
        self._stack.append(server.server_close)
        public = f"http://127.0.0.1:{server.port}"
        settings = Settings(
            hoiio_app_id=APP_ID, hoiio_access_token=token, hoiio_api_url=api_url,
            database_url=f"sqlite:///{Path(tmp.name) / 'try.sqlite3'}",
            flows_dir=Path(self.flow.source).parent if self.flow.source else Path("."),
            public_url=public, verify_signatures=True, recovery_interval=0,
        )
        registry = FlowRegistry(settings.flows_dir)
        registry.current = {self.flow.name: self.flow}
        registry.versions = {(self.flow.name, self.flow.version): self.flow}
        registry.by_number = {n: self.flow.name for n in self.flow.numbers}

        # The engine's log lines (JSON on stderr, set up by create_app) would bury the call: while it
        # runs, only its warnings are shown, as notes in the transcript. Afterwards the logger is as
        # it was before (without the handler create_app added, which writes to this run's stderr).
        engine_log = logging.getLogger("engine")
        saved = (list(engine_log.handlers), engine_log.propagate, engine_log.level)

        def restore_logging() -> None:
            engine_log.handlers, engine_log.propagate = saved[0], saved[1]
            engine_log.setLevel(saved[2])

        self._stack.append(restore_logging)
        db = Database.open(settings.database_url)
        self.db = db
        self._stack.append(db.close)
        client = _WatchedClient(HoiioClient(api_url, APP_ID, token), self)
        self.app = create_app(settings, db=db, client=client, flows=registry,
                              http=_SimulatedHttp(self, self.http_stubs, self.real_http), now=self.clock)
        engine_log.handlers = [_QueueLogHandler(self)]
        engine_log.propagate = False
        from engine import service as service_module

        real = getattr(service_module, "interpreter", None)
        if real is not None and hasattr(real, "start") and hasattr(real, "step"):
            service_module.interpreter = _InterpreterProbe(real, self)  # type: ignore[assignment]

            def restore_interpreter() -> None:
                service_module.interpreter = real  # type: ignore[assignment]

            self._stack.append(restore_interpreter)
        self.service = self.app.extensions["ivr"]
        dispatcher.app = self.app
        self.public_url = public
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="ivr-try-server", daemon=True)
        thread.start()

        def stop_server() -> None:
            server.shutdown()
            thread.join(5)

        self._stack.append(stop_server)

    def _stop(self) -> None:
        self._closing.set()
        fake = getattr(self, "fake", None)
        if fake is not None:
            fake.stop()  # no more notifications: the engine goes quiet before the rest stops
        while self._stack:
            undo = self._stack.pop()
            try:
                undo()
            except Exception:  # noqa: BLE001, S112 - best effort: stop everything else too
                continue

    # ---------------------------------------------------------------- the caller
    def _script(self) -> CallerScript:
        self._caller = _LiveCaller(dial=self.dial, ask=self._ask_keys, live_outcomes=self.outcomes)
        return self._caller

    def run_inbound(self) -> CallResult:
        """A person calls the flow's number (``number``) from ``caller``."""
        if self.flow.outbound:
            raise ValueError(f"{self.flow.name} starts with a dial node: it is an outbound flow")
        answer_url = f"{self.public_url}/hoiio/answer/{self.flow.name}"
        self.fake_session = self.fake.incoming_call(answer_url, caller=self.caller, to=self.number,
                                                    script=self._script())
        self.key = self.fake_session
        return self._run()

    def run_outbound(self, dest: str, inputs: Mapping[str, Any]) -> CallResult:
        """The engine places the call to ``dest`` with ``inputs``, as the outbound API would."""
        from engine.service import Rejected

        if not self.flow.outbound:
            raise ValueError(f"{self.flow.name} does not start with a dial node: it is an inbound flow")
        self.fake.script_outbound(self._script(), dest=dest)
        try:
            outcome = self.service.start_outbound(self.flow.name, to=dest, vars=dict(inputs))
        except Rejected as exc:
            self.notes.append(f"the engine refused to place the call: {exc.reason}")
            return CallResult(self.flow, None, notes=self.notes, status="refused")
        self.key = outcome.session
        return self._run()

    # ---------------------------------------------------------------- questions (other threads)
    def emit(self, event: Event) -> None:
        self._events.put(event)

    def emit_progress(self) -> None:
        """Show the engine nodes the call went through since last time (from the engine's stored
        state, committed before any block or request goes out)."""
        row = self.engine_row()
        if row is None:
            return
        path = row.state.get("path") or []
        with self._progress_lock:
            new, self._path_seen = path[self._path_seen:], max(self._path_seen, len(path))
        result = CallResult(self.flow, self.key, path=tuple(tuple(p) for p in new), node=row.node)
        for node_id, exit_name, target in result.hops:
            node = self.flow.nodes.get(node_id)
            if node is not None and not node.is_block:
                self.emit(PassEvent(node, exit_name, target))

    def _wait(self, question: KeysQuestion | TransferQuestion) -> None:
        self._events.put(question)
        while not question._done.wait(0.2):
            if self._closing.is_set():
                question.answer = HANGUP
                return

    def _ask_keys(self, _session: str, block: Any) -> str | None:
        """The fake's ``CallerScript.ask`` hook, in the fake's notification thread."""
        if self.hung_up:
            return None
        params = block.params
        question = KeysQuestion(self.gather_node, int(params.get("max_digits") or 0),
                                int(params.get("timeout") or 0))
        self._wait(question)
        return None if question.answer in (None, HANGUP) else question.answer

    def decide_transfer(self, node: Node | None, params: Mapping[str, str]) -> str:
        """How the Transfer about to be sent ends (in the engine's request thread)."""
        if self.hung_up:
            return HANGUP
        question = TransferQuestion(node, params.get("dest", ""), params.get("ring_time"))
        self._wait(question)
        return question.answer or "answered"

    def hang_up_during_next_block(self, session: str) -> None:
        """The caller hangs up during the block about to be sent (a Transfer that rings): the fake
        then reports that block ``call_state=ended``, whatever else happens meanwhile."""
        self.hung_up = True
        snapshot = self.fake.sessions.get(session)
        if snapshot is None or snapshot.ended:
            return
        self._caller.hang_up_during_block(len(snapshot.blocks) + 1)

    def hangup_now(self, session: str | None = None) -> None:
        """The caller hangs up (during the current block, when there is one)."""
        self.hung_up = True
        sid = session or self._fake_sid()
        if sid is None:
            return
        with contextlib.suppress(KeyError):  # the fake no longer knows it: already over
            self.fake.hangup_caller(sid)

    # ---------------------------------------------------------------- the loop (main thread)
    def _run(self) -> CallResult:
        started = time.monotonic()
        settling: float | None = None
        hung_up_at: float | None = None
        while True:
            try:
                try:
                    item = self._events.get(timeout=0.05)
                except queue.Empty:
                    over, one_side = self._over()
                    if over:
                        break
                    now = time.monotonic()
                    if one_side:
                        settling = settling or now
                        if now - settling > SETTLE_SECONDS:
                            self.hangup_now()
                            break
                    elif self.key is None or (self.engine_row() is None and now - started > ANSWER_TIMEOUT):
                        self.notes.append("the engine did not take the call")
                        break
                    if self.hung_up:
                        hung_up_at = hung_up_at or now
                        if now - hung_up_at > 2 * SETTLE_SECONDS:
                            self.notes.append("the call had not ended a few seconds after the hang-up")
                            break
                    continue
                self._handle(item)
            except KeyboardInterrupt:
                if self.hung_up:  # a second Ctrl-C: stop waiting
                    self.notes.append("stopped waiting for the call to end (Ctrl-C again)")
                    break
                self._hang_up_by_person("Ctrl-C")
        # Anything still queued (a last note, an HTTP step after the call ended) is shown; a question
        # left over is answered by hanging up.
        self.hung_up = True
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                break
            self._handle(item)
        return self._result()

    def _handle(self, item: Any) -> None:
        if isinstance(item, KeysQuestion | TransferQuestion):
            answer: str | None = HANGUP
            try:
                if self.hung_up:
                    answer = HANGUP
                elif isinstance(item, KeysQuestion):
                    answer = self.ui.ask_keys(item)
                else:
                    answer = self.ui.ask_transfer(item)
                if answer == HANGUP:
                    self._hang_up_by_person(None, during_transfer=isinstance(item, TransferQuestion))
            except (KeyboardInterrupt, EOFError) as exc:
                answer = HANGUP
                how = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "End of input"
                self._hang_up_by_person(how, during_transfer=isinstance(item, TransferQuestion))
            finally:
                item.answer = answer
                item._done.set()
        else:
            self.ui.show(item)

    def _hang_up_by_person(self, how: str | None, *, during_transfer: bool = False) -> None:
        if self.hung_up:
            return
        if how:  # the ui says so itself when it chose to hang up
            self.ui.show(NoteEvent(f"{how}: the caller hangs up"))
        if during_transfer:
            self.hung_up = True  # the engine's thread hangs up once the Transfer is out
            return
        self.hangup_now()

    def _fake_sid(self) -> str | None:
        if self.fake_session is None:
            sessions = self.fake.sessions
            if sessions:
                self.fake_session = next(iter(sessions))
        return self.fake_session

    def engine_row(self) -> Any:
        """The engine's stored row for this call (None before the engine took it)."""
        return self.db.get_call(self.key) if self.key else None

    def _over(self) -> tuple[bool, bool]:
        """(both the engine and Hoiio are done with the call, only one of them is)."""
        row = self.engine_row()
        engine_done = row is not None and row.status == "ended"
        sid = self._fake_sid()
        if sid is None:
            fake_done = self.key is not None and row is not None and row.status == "ended"
        else:
            try:
                self.fake.wait_until_ended(sid, timeout=0)
                fake_done = True
            except TimeoutError:
                fake_done = False
        return engine_done and fake_done, engine_done != fake_done

    def _result(self) -> CallResult:
        row = self.engine_row()
        if row is None:
            return CallResult(self.flow, self.key, notes=self.notes)
        state = row.call_state()
        return CallResult(
            flow=self.flow, session=self.key, path=tuple(state.path), node=state.node, vars=dict(state.vars),
            sensitive=frozenset(state.sensitive), call=dict(state.call), status=state.status,
            outcome=state.outcome, notes=self.notes,
        )


def menu_options(node: Node | None) -> list[tuple[str, str]]:
    """(key, target) of a menu, for showing the choices."""
    return list(node.options.items()) if isinstance(node, Menu) else []
