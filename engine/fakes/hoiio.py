"""A strict fake of the Hoiio REST API (IVR blocks, voice and conference) for tests, demos and ``ivr try``.

Theory of operation. ``FakeHoiio`` holds the account: apps and their tokens, IVR sessions, voice and
conference calls, rooms. Each API request goes: HTTP method -> parameter bytes -> credentials ->
the endpoint's stateless rules (``hoiio_rules.check_params``) -> session / limit rules -> accepted.
Every refusal carries a status from ``hoiio_rules.STATUSES``; nothing else ever goes out. An
accepted IVR block leaves the session *waiting*; once the HTTP response has been written the fake
waits ``notify_delay`` seconds in a background thread and then posts the block's notification,
signed ``X-Hoiio-Signature: hex(HMAC-SHA256(body, access_token))``, to the block's ``notify_url``
(pass-on query parameters stay in that URL). The session is ready again as soon as the notification
is posted, before the receiver answers, so a receiver may send its next block from inside the
webhook. What the far end does (keys, transfer outcomes, recordings, hang-ups) comes from a
``CallerScript``. ``hold`` posts nothing; a block without ``notify_url`` ends the call after the block
and posts nothing, as Hoiio documents.

Modelling choices where the docs are silent (each marked in the code): a forced hangup drops the
interrupted block's notification; a block sent while a Transfer with ``on_failure=hangup`` runs gets
``error_session_ended`` (it can only end), with ``on_failure=continue`` ``error_session_not_ready``;
the concurrent-call limit counts each live IVR session, each transfer to a number while it rings or
talks, each ``voice/call`` and each ``conference/call`` participant; a Monitor recording is posted
to ``monitor_notify_url`` (else ``notify_url``) after the call ends.

Usable in-process (``fake.wsgi_app`` is a Flask app: ``fake.wsgi_app.test_client()``) or over HTTP
(``fake.start()`` -> ``http://127.0.0.1:PORT/open``). Neighbours: ``hoiio_rules`` (statuses and
stateless checks), ``hoiio_calls`` (scripts and records), ``hoiio_state`` (bookkeeping, billing),
``hoiio_voice`` (voice and conference endpoints), ``hoiio_web`` (routes, faults, ``/_fake`` API).

May import the standard library, ``engine.fakes``, ``engine.providers.hoiio.signature``, Flask,
werkzeug and requests.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from engine.fakes.hoiio_calls import (
    BlockRecord,
    CallerScript,
    CallLimitReached,
    CallSnapshot,
    NotificationRecord,
    RequestRecord,
    SessionSnapshot,
    gathered_digits,
)
from engine.fakes.hoiio_rules import (
    ENDPOINTS,
    FORM_CONTENT_TYPE,
    STATUSES,
    SUCCESS,
    Refused,
    block_name,
    check_params,
    is_e164,
    is_http_url,
    parse_params,
    redact,
    room_of,
    unknown_params,
)
from engine.fakes.hoiio_state import (
    INCOMING_RATE,
    OUTGOING_RATE,
    Call,
    Delivery,
    Fault,
    Monitor,
    Pending,
    Session,
    billing_fields,
)
from engine.fakes.hoiio_voice import VoiceConferenceApi
from engine.fakes.hoiio_web import create_app, run_after_response
from engine.providers.hoiio.signature import SIGNATURE_HEADER, sign_body

__all__ = ["FakeHoiio", "CallerScript", "CallLimitReached"]

Transport = Callable[[str, bytes, Mapping[str, str]], int]
log = logging.getLogger(__name__)

RATE_LIMITED = frozenset({"voice/hangup", "conference/moderate"})  # "60 request(s) per minute"


def default_transport(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    response = requests.post(url, data=body, headers=dict(headers), timeout=10, allow_redirects=False)
    response.close()
    return response.status_code


class _Handler(WSGIRequestHandler):
    def connection_dropped(self, error: BaseException, environ: dict[str, Any] | None = None) -> None:
        run_after_response(environ)  # the client vanished: what Hoiio carried out still goes on


class _QuietHandler(_Handler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class FakeHoiio(VoiceConferenceApi):
    """One fake Hoiio account.

    ``app_id``/``access_token``: the credentials every request must carry (the token also signs the
    notifications); ``extra_apps`` adds more apps to the same account (``{app_id: token}``), whose
    sessions and txn_refs are refused to each other. ``notify_delay``: seconds a block "takes"
    before its notification. ``call_limit``: concurrent calls. ``clock``: epoch seconds, for billing
    dates and durations, logs and the rate limit. ``registered_number``: the default ``dest1`` of
    voice/call. ``transport(url, body, headers) -> http_status`` posts notifications (default:
    ``requests``; tests may deliver in-process). ``rate_limit``: requests per minute for
    voice/hangup and conference/moderate.

    Driving it from a test::

        fake = FakeHoiio()
        api_url = fake.start()                 # or in-process: fake.wsgi_app.test_client()
        sid = fake.incoming_call(f"{engine_url}/hoiio/answer", script=CallerScript(keys=["1"]))
        ...                                     # the engine answers with blocks
        state = fake.wait_until_ended(sid)
        assert state.block_names == ("gather", "transfer")
        assert [n.fields["ivr_block"] for n in fake.notifications] == ["answer", "gather", "transfer"]
        fake.stop()
    """

    def __init__(
        self,
        app_id: str = "fake-app",
        access_token: str = "fake-token",  # noqa: S107 - a fake account's well-known token
        *,
        notify_delay: float = 0.0,
        call_limit: int = 8,
        clock: Callable[[], float] = time.time,
        registered_number: str = "+6560000000",
        extra_apps: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        rate_limit: int = 60,
        quiet: bool = True,
    ) -> None:
        if not is_e164(registered_number):
            raise ValueError("registered_number must be an E.164 number")
        self.app_id = app_id
        self.access_token = access_token
        self.notify_delay = notify_delay
        self.call_limit = call_limit
        self.registered_number = registered_number
        self.rate_limit = rate_limit
        self._clock = clock
        self._apps = {app_id: access_token, **(extra_apps or {})}
        self._transport = transport or default_transport
        self._quiet = quiet
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._ids = itertools.count(1001)
        self._sessions: dict[str, Session] = {}
        self._session_by_txn: dict[str, str] = {}
        self._calls: dict[str, Call] = {}
        self._rooms: dict[tuple[str, str], set[str]] = {}
        self._outbound: list[tuple[str | None, CallerScript]] = []
        self._faults: list[Fault] = []
        self._log: list[RequestRecord] = []
        self._notifications: list[NotificationRecord] = []
        self._rate_windows: dict[tuple[str, str], deque[float]] = {}
        self._inflight = 0
        self._inflight_by: Counter[str | None] = Counter()
        self._threads: set[threading.Thread] = set()
        self._timers: set[threading.Event] = set()
        self._server: BaseWSGIServer | None = None
        self._server_thread: threading.Thread | None = None
        self.root_url: str | None = None
        self.base_url: str | None = None
        self.wsgi_app = create_app(self)

    # ------------------------------------------------------------------------------------------
    # Server

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve over HTTP in a daemon thread; returns the API base URL (``http://H:P/open``)."""
        if self._server is not None:
            raise RuntimeError("the fake is already serving")
        handler = _QuietHandler if self._quiet else _Handler
        server = make_server(host, port, self.wsgi_app, threaded=True, request_handler=handler)
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hoiio-server", daemon=True
        )
        thread.start()
        self._server_thread = thread
        shown = f"[{host}]" if ":" in host else host
        self.root_url = f"http://{shown}:{server.port}"
        self.base_url = f"{self.root_url}/open"
        return self.base_url

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and cancel notifications not yet posted. Final."""
        with self._changed:
            self._stopping.set()
            for cancel in self._timers:
                cancel.set()
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._server_thread is not None:
                self._server_thread.join(timeout)
            self._server = None
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FakeHoiio:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------
    # Simulated world

    def incoming_call(
        self,
        answer_url: str,
        *,
        caller: str = "+6591234567",
        to: str = "+6531580000",
        script: CallerScript | None = None,
        app_id: str | None = None,
    ) -> str:
        """A person calls the Hoiio Number ``to``: post the Answer notification to ``answer_url``
        (the number's forwarding URL). Returns the session ID."""
        if not is_http_url(answer_url):
            raise ValueError(f"answer_url {answer_url!r} is not an http(s) URL")
        if not (is_e164(caller) or caller == "private"):
            raise ValueError("caller must be an E.164 number or 'private'")
        if not is_e164(to):
            raise ValueError("to must be an E.164 number")
        app = app_id or self.app_id
        if app not in self._apps:
            raise ValueError(f"unknown app_id {app!r}")
        with self._lock:
            if self._active_calls() + 1 > self.call_limit:
                raise CallLimitReached(f"the account already has {self.call_limit} active calls")
            session = self._new_session(app, "incoming", script or CallerScript(), INCOMING_RATE)
            session.caller, session.to = caller, to
            pending = Pending("answer", answer_url)
            session.pending = pending
        self._arm(session, pending)
        return session.sid

    def script_outbound(self, script: CallerScript, *, dest: str | None = None) -> None:
        """How the next person called by ``ivr/start/dial``, ``voice/call`` or ``conference/call``
        behaves: for ``dest`` only, or (``dest=None``) for whoever is called next. Used once each, in
        order; people without a script answer and hang up at once."""
        if dest is not None and not is_e164(dest):
            raise ValueError("dest must be an E.164 number")
        with self._lock:
            self._outbound.append((dest, script))

    def hangup_caller(self, ref: str) -> None:
        """The far end hangs up now. ``ref`` is a session ID, its txn_ref, or the txn_ref of a
        voice/call or conference participant. During a block, that block's notification becomes
        ``call_state=ended``; between blocks, on hold or while ringing the call ends and nothing is
        posted (there is no URL to post to). No-op on ended calls."""
        deliveries: list[Delivery] = []
        with self._lock:
            sid = ref if ref in self._sessions else self._session_by_txn.get(ref)
            if sid is not None:
                deliveries = self._caller_hangs_up(self._sessions[sid])
            elif ref in self._calls:
                call = self._calls[ref]
                if call.active:
                    deliveries = self._end_call(call, "hangup")
            else:
                raise KeyError(f"no session or call {ref!r}")
            if deliveries:
                self._later(0, lambda: self._deliver_all(deliveries), sid or ref)

    def inject(
        self,
        endpoint: str,
        *,
        status: str | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int | None = 1,
        processed: bool = False,
    ) -> None:
        """A fault for the next ``times`` requests to ``endpoint`` (``"ivr/middle/play"``, or ``"*"``
        for any; ``times=None``: until ``clear_faults``). ``delay``: sleep before answering.
        ``status``: answer with that documented status. ``drop``: close the connection without an
        answer. With ``processed=True`` the request is carried out first and only its answer is
        replaced or lost (a lost response), otherwise nothing happens (a refused request)."""
        endpoint = endpoint.removeprefix("/").removeprefix("open/")
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        if status is not None and status not in STATUSES:
            raise ValueError(f"{status!r} is not a documented status")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._faults.append(Fault(endpoint, status, delay, drop, processed, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------------------------------
    # Observation

    @property
    def log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    @property
    def notifications(self) -> list[NotificationRecord]:
        with self._lock:
            return list(self._notifications)

    @property
    def sessions(self) -> dict[str, SessionSnapshot]:
        with self._lock:
            return {sid: self._snapshot(s) for sid, s in self._sessions.items()}

    @property
    def calls(self) -> dict[str, CallSnapshot]:
        """voice/call calls and conference/call participants by txn_ref."""
        with self._lock:
            return {ref: self._call_snapshot(c) for ref, c in self._calls.items()}

    @property
    def rooms(self) -> dict[str, frozenset[str]]:
        """Conference rooms of the main app and the txn_refs in each."""
        with self._lock:
            return {room: frozenset(refs) for (app, room), refs in self._rooms.items() if app == self.app_id}

    def active_calls(self) -> int:
        with self._lock:
            return self._active_calls()

    def wait_until_ended(self, session: str, timeout: float = 5.0) -> SessionSnapshot:
        """Wait for the session to end and for every notification due so far to be posted."""
        with self._changed:
            if session not in self._sessions:
                raise KeyError(f"no session {session!r}")
            done = self._changed.wait_for(
                lambda: self._sessions[session].state == "ended" and self._inflight_by[session] == 0, timeout
            )
            if not done:
                raise TimeoutError(f"session {session} did not end within {timeout}s: {self._sessions[session].state}")
            return self._snapshot(self._sessions[session])

    def wait_ready(self, session: str, timeout: float = 5.0) -> SessionSnapshot:
        """Wait until the session's notifications have all been posted (and answered) and no block is
        executing: it can take its next block, or it has ended."""

        def quiet() -> bool:
            pending = self._sessions[session].pending
            return (pending is None or pending.connected) and self._inflight_by[session] == 0

        with self._changed:
            if session not in self._sessions:
                raise KeyError(f"no session {session!r}")
            if not self._changed.wait_for(quiet, timeout):
                raise TimeoutError(f"session {session} still busy after {timeout}s")
            return self._snapshot(self._sessions[session])

    def wait_for_notifications(
        self,
        count: int = 1,
        *,
        timeout: float = 5.0,
        where: Callable[[NotificationRecord], bool] | None = None,
    ) -> list[NotificationRecord]:
        """Wait until ``count`` posted notifications (matching ``where``) exist; returns them all."""

        def matching() -> list[NotificationRecord]:
            return [n for n in self._notifications if n.done and (where is None or where(n))]

        with self._changed:
            if not self._changed.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"{len(matching())} of {count} notifications within {timeout}s")
            return matching()

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no notification is scheduled or being posted."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._inflight == 0, timeout):
                raise TimeoutError(f"notifications still pending after {timeout}s")

    def call_api(self, endpoint: str, *, method: str = "POST", auth: bool = True, **params: str) -> dict[str, Any]:
        """In-process request through the WSGI app (credentials added unless ``auth=False``)."""
        if auth:
            params = {"app_id": self.app_id, "access_token": self.access_token, **params}
        client = self.wsgi_app.test_client()
        path = f"/open/{endpoint}"
        if method == "GET":
            response = client.get(path, query_string=params)
        else:
            response = client.open(path, method=method, data=params)
        return response.get_json()

    # ------------------------------------------------------------------------------------------
    # Requests (called by the web layer)

    def take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (endpoint, "*"):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def handle(
        self, method: str, endpoint: str, query: bytes, body: bytes | None, content_type: str | None
    ) -> tuple[dict[str, Any], list[Callable[[], None]], dict[str, str], tuple[str, ...]]:
        """One API request -> (response, callbacks to run once it is sent, redacted params, ignored
        parameter names)."""
        after: list[Callable[[], None]] = []
        params: dict[str, str] = {}
        ignored: tuple[str, ...] = ()
        try:
            if method not in ("GET", "POST"):
                raise Refused("error_invalid_http_method")
            form = body if method == "POST" and _is_form(content_type) else None
            params = parse_params(query, form)
            app_id = self._authenticate(params)
            given = check_params(endpoint, params)
            ignored = unknown_params(endpoint, params)
            with self._lock:
                response = self._dispatch(endpoint, app_id, given, after)
        except Refused as refused:
            response = {"status": refused.status}
        return response, after, redact(params), ignored

    def record_request(self, record: RequestRecord) -> None:
        with self._changed:
            self._log.append(record)
            self._changed.notify_all()

    def now(self) -> float:
        return self._clock()

    def recording_url(self, name: str) -> str:
        root = self.root_url or "http://fake-hoiio.invalid"
        return f"{root}/_fake/recordings/{name}.wav"

    def run_after(self, callbacks: Iterable[Callable[[], None]]) -> None:
        for callback in callbacks:
            callback()

    # ------------------------------------------------------------------------------------------
    # Rules with state

    def _authenticate(self, params: Mapping[str, str]) -> str:
        app_id, token = params.get("app_id"), params.get("access_token")
        if not app_id:
            raise Refused("error_app_id_param_missing")
        if not token:
            raise Refused("error_access_token_param_missing")
        if app_id not in self._apps:
            raise Refused("error_invalid_app_id")
        if not hmac.compare_digest(token.encode(), self._apps[app_id].encode()):
            raise Refused("error_invalid_access_token")
        return app_id

    def _rate_check(self, app_id: str, endpoint: str) -> None:
        if endpoint not in RATE_LIMITED:
            return
        now = self._clock()
        window = self._rate_windows.setdefault((app_id, endpoint), deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.rate_limit:
            raise Refused("error_rate_limit_exceeded")
        window.append(now)

    def _active_calls(self) -> int:
        sessions = sum(1 + s.transfer_leg for s in self._sessions.values() if s.state != "ended")
        return sessions + sum(1 for c in self._calls.values() if c.active)

    def _need_lines(self, count: int) -> None:
        if self._active_calls() + count > self.call_limit:
            raise Refused("error_concurrent_call_limit_reached")

    def _dispatch(self, endpoint: str, app_id: str, given: dict[str, str], after: list[Callable[[], None]]) -> dict:
        self._rate_check(app_id, endpoint)
        if endpoint == "ivr/start/dial":
            return self._dial(app_id, given, after)
        if endpoint.startswith("ivr/"):
            session = self._ready_session(app_id, endpoint, given)
            return self._block(session, endpoint, given, after)
        if endpoint == "voice/call":
            return self._voice_call(app_id, given, after)
        if endpoint == "conference/call":
            return self._conference_call(app_id, given, after)
        if endpoint == "voice/query_status":
            return self._query_status(app_id, given["txn_ref"])
        if endpoint == "voice/hangup":
            return self._voice_hangup(app_id, given["txn_ref"], after)
        return self._moderate(app_id, given["txn_ref"], given["action"], after)

    def _ready_session(self, app_id: str, endpoint: str, given: Mapping[str, str]) -> Session:
        session = self._sessions.get(given["session"])
        if session is None:
            raise Refused("error_invalid_session")
        if session.app_id != app_id:
            raise Refused("error_session_access_denied")
        if session.state == "ended" or session.ending:
            raise Refused("error_session_ended")
        if endpoint == "ivr/end/hangup" and given.get("force") == "enabled":
            return session  # "may be sent at any time, even mid-block"
        if session.state == "on_hold":
            if endpoint != "ivr/middle/unhold":
                raise Refused("error_session_not_ready")
            return session
        if endpoint == "ivr/middle/unhold":
            raise Refused("error_session_not_on_hold")
        pending = session.pending
        if pending is not None:
            # [I] a Transfer with on_failure=hangup can only end the session
            if pending.block == "transfer" and pending.data["on_failure"] == "hangup":
                raise Refused("error_session_ended")
            raise Refused("error_session_not_ready")
        return session

    # ------------------------------------------------------------------------------------------
    # IVR

    def _new_id(self) -> int:
        return next(self._ids)

    def _new_session(self, app_id: str, direction: str, script: CallerScript, rate: Decimal) -> Session:
        number = self._new_id()
        session = Session(
            sid=f"S{number}",
            txn_ref=f"AA-C-{number}",
            app_id=app_id,
            direction=direction,
            script=script,
            created_at=self._clock(),
            rate=rate,
        )
        self._sessions[session.sid] = session
        self._session_by_txn[session.txn_ref] = session.sid
        return session

    def _take_outbound(self, dest: str) -> CallerScript:
        for index, (wanted, script) in enumerate(self._outbound):
            if wanted == dest:
                del self._outbound[index]
                return script
        for index, (wanted, script) in enumerate(self._outbound):
            if wanted is None:
                del self._outbound[index]
                return script
        return CallerScript()

    def _dial(self, app_id: str, given: Mapping[str, str], after: list[Callable[[], None]]) -> dict:
        self._need_lines(1)
        dest = given["dest"]
        session = self._new_session(app_id, "outgoing", self._take_outbound(dest), OUTGOING_RATE)
        session.dest = dest
        pending = Pending("dial", given.get("notify_url"), given.get("tag", ""))
        pending.data["outcome"] = session.script.dial
        self._set_pending(session, pending, after)
        return {"status": SUCCESS, "txn_ref": session.txn_ref, "session": session.sid}

    def _block(self, session: Session, endpoint: str, given: Mapping[str, str], after: list) -> dict:
        name = block_name(endpoint)
        response: dict[str, Any] = {"status": SUCCESS}
        room: str | None = None
        if name == "transfer":
            room = room_of(given["dest"])
            if room is None:
                self._need_lines(1)
        if name == "monitor" and session.monitor is not None:
            raise Refused("error_monitor_in_progress")
        # accepted from here on
        now = self._clock()
        params = {k: v for k, v in given.items() if k != "session"}
        session.blocks.append(BlockRecord(name, params, now))
        script = session.script
        hangs_up = script.hangup_after is not None and len(session.blocks) == script.hangup_after + 1
        if session.state == "ringing" and name != "hangup":  # any block but Hangup answers the call
            session.state, session.answered_at = "ongoing", now
        url, tag = given.get("notify_url"), given.get("tag", "")
        pending = Pending(name, url, tag, hangs_up)

        if name == "hangup":
            session.ending = True
            if given.get("force") == "enabled" and session.pending is not None:
                self._clear_pending(session)  # [I] the interrupted block posts nothing
            self._set_pending(session, pending, after)
        elif name == "hold":
            session.state = "on_hold"
            if hangs_up:
                self._end_session(session, "caller_hangup")  # nothing to post: Hold has no notify_url
        elif name == "transfer":
            if room is not None:
                room = room or self._new_room()
                self._rooms.setdefault((session.app_id, room), set()).add(session.txn_ref)
                session.room = room
                response["room"] = room
            else:
                session.transfer_leg = True
            pending.data.update(
                outcome=session.next("transfers") or "answered",
                on_failure=given.get("on_failure", "hangup"),
                to_number=room is None,
            )
            self._set_pending(session, pending, after)
        else:
            if session.state == "on_hold":  # unhold
                session.state = "ongoing"
            if name == "gather":
                max_digits = int(given.get("max_digits", "0"))
                if session.cursor["keys"] >= len(script.keys) and script.ask is not None:
                    pending.data.update(ask=script.ask, max_digits=max_digits, block=session.blocks[-1])
                pending.data["digits"] = gathered_digits(session.next("keys"), max_digits)
            elif name == "record":
                pending.data["record_url"] = session.next("records") or self.recording_url(
                    f"{session.sid}-{len(session.blocks)}"
                )
            elif name == "monitor":
                session.monitor = Monitor(
                    url=given.get("monitor_notify_url") or url,
                    tag=tag,
                    record_url=self.recording_url(f"{session.sid}-monitor"),
                )
            self._set_pending(session, pending, after)
        self._changed.notify_all()
        return response

    def _set_pending(self, session: Session, pending: Pending, after: list[Callable[[], None]]) -> None:
        session.pending = pending
        after.append(lambda: self._arm(session, pending))

    def _clear_pending(self, session: Session) -> None:
        if session.pending is not None:
            session.pending.cancel.set()
            session.pending = None

    def _arm(self, session: Session, pending: Pending) -> None:
        with self._lock:
            pending.armed = True
            delay = 0.0 if pending.interrupted else self.notify_delay
        self._later(delay, lambda: self._fire(session, pending), session.sid, pending.cancel)

    def _fire(self, session: Session, pending: Pending) -> None:
        ask = pending.data.get("ask")
        if ask is not None and not pending.caller_hangs_up:  # interactive: outside the lock
            try:
                keys = ask(session.sid, pending.data["block"])
            except Exception:  # a broken prompt must not leave the session waiting forever
                log.exception("CallerScript.ask failed for %s; the caller stays silent", session.sid)
                keys = None
            with self._lock:
                pending.data["digits"] = gathered_digits(keys, pending.data["max_digits"])
        with self._lock:
            deliveries = self._complete(session, pending)
        self._deliver_all(deliveries)

    def _caller_hangs_up(self, session: Session) -> list[Delivery]:
        if session.state == "ended":
            return []
        pending = session.pending
        if pending is None or pending.block == "answer":
            self._end_session(session, "caller_hangup")
            return []
        pending.caller_hangs_up = True
        if pending.armed or pending.connected:
            return self._complete(session, pending)
        pending.interrupted = True  # the response is not out yet: _arm posts the ended notification
        return []

    def _complete(self, session: Session, pending: Pending) -> list[Delivery]:
        """The block finished (or the caller hung up during it): update the session and return the
        notifications to post, in order."""
        if session.pending is not pending or session.state == "ended":
            return []
        out: list[Delivery] = []
        block, data = pending.block, pending.data
        if block == "answer":
            self._clear_pending(session)
            fields = [("ivr_block", "answer"), ("session", session.sid), ("txn_ref", session.txn_ref),
                      ("from", session.caller or ""), ("to", session.to or ""), ("call_state", "ringing")]  # fmt: skip
            out.append(Delivery(pending.url or "", tuple(fields), session.app_id, session.sid, session.txn_ref))
        elif block == "dial":
            outcome = data["outcome"]
            if outcome == "answered":
                session.answered_at = self._clock()
            if outcome == "answered" and not pending.caller_hangs_up:
                self._carry_on(session, pending, out, [("dial_status", "answered")])
            else:  # not answered, or answered and hung up during the dial's msg
                reason = "caller_hangup" if outcome == "answered" else outcome
                self._finish(session, pending, reason, out, [("dial_status", outcome)])
        elif block == "transfer":
            self._complete_transfer(session, pending, out)
        elif block == "hangup":
            self._finish(session, pending, "hangup", out)
        else:  # play, gather, record, monitor, unhold
            extras: list[tuple[str, str]] = []
            if block == "record":
                extras.append(("record_url", data["record_url"]))  # also a partial one on hang-up
            if pending.caller_hangs_up:
                self._finish(session, pending, "caller_hangup", out, extras)
            else:
                if block == "gather":
                    extras.append(("digits", data["digits"]))
                self._carry_on(session, pending, out, extras)
        self._changed.notify_all()
        return out

    def _complete_transfer(self, session: Session, pending: Pending, out: list[Delivery]) -> None:
        data = pending.data
        outcome = data["outcome"]
        if pending.connected:
            self._finish(session, pending, "transferred", out, [("transfer_status", "answered")])
        elif pending.caller_hangs_up:
            self._finish(session, pending, "caller_hangup", out)
        elif outcome == "answered":
            if data["to_number"]:
                session.extra_rate = OUTGOING_RATE
            if session.script.stay_on_line:
                pending.connected = True  # posted when someone hangs up
                return
            self._finish(session, pending, "transferred", out, [("transfer_status", "answered")])
        else:
            session.transfer_leg = False
            self._leave_room(session, forget=True)
            if data["on_failure"] == "continue":
                self._carry_on(session, pending, out, [("transfer_status", outcome)])
            else:
                self._finish(session, pending, f"transfer_{outcome}", out, [("transfer_status", outcome)])

    def _carry_on(self, session: Session, pending: Pending, out: list[Delivery], extras: list) -> None:
        """The block completed and the call goes on: post ``ongoing``; without a notify_url Hoiio
        hangs up after the block instead."""
        if pending.url is None:
            self._end_session(session, "no_notify_url", out)
            return
        self._clear_pending(session)
        session.state = "ongoing"
        out.append(self._ivr_delivery(session, pending, "ongoing", extras))

    def _finish(
        self, session: Session, pending: Pending, reason: str, out: list[Delivery], extras: list | None = None
    ) -> None:
        main: list[Delivery] = []
        self._end_session(session, reason, main)  # sets ended_at for the billing below
        if pending.url is not None:
            out.append(self._ivr_delivery(session, pending, "ended", extras or []))
        out.extend(main)  # the monitor recording comes after the call's last notification

    def _end_session(self, session: Session, reason: str, out: list[Delivery] | None = None) -> None:
        session.state = "ended"
        session.ended_at = self._clock()
        self._clear_pending(session)
        session.transfer_leg = False
        session.end_reason = reason
        self._leave_room(session)
        monitor = session.monitor
        if monitor is not None and monitor.url:
            fields = self._ivr_fields(session, "monitor", "ended", monitor.tag, [("record_url", monitor.record_url)])
            delivery = Delivery(monitor.url, fields, session.app_id, session.sid, session.txn_ref)
            if out is not None:
                out.append(delivery)
            else:
                self._later(self.notify_delay, lambda: self._deliver(delivery), session.sid)
        self._changed.notify_all()

    def _leave_room(self, session: Session, *, forget: bool = False) -> None:
        """Out of the room's participants; ``forget`` also for the session (a failed transfer)."""
        if session.room is not None:
            self._rooms.get((session.app_id, session.room), set()).discard(session.txn_ref)
            if forget:
                session.room = None

    def _ivr_delivery(self, session: Session, pending: Pending, call_state: str, extras: list) -> Delivery:
        fields = self._ivr_fields(session, pending.block, call_state, pending.tag, extras)
        return Delivery(pending.url or "", fields, session.app_id, session.sid, session.txn_ref)

    def _ivr_fields(
        self, session: Session, block: str, call_state: str, tag: str, extras: list[tuple[str, str]]
    ) -> tuple[tuple[str, str], ...]:
        fields = [("ivr_block", block), ("session", session.sid), ("txn_ref", session.txn_ref)]
        if session.direction == "incoming":
            fields += [("from", session.caller or ""), ("to", session.to or "")]
        else:
            fields.append(("dest", session.dest or ""))
        fields += [("call_state", call_state), ("tag", tag), *extras]
        if call_state == "ended":
            rate = session.rate + session.extra_rate
            fields += self._billing(session.created_at, session.answered_at, session.ended_at, rate)
        return tuple(fields)

    def _billing(
        self, started: float, answered: float | None, ended: float | None, rate: Decimal
    ) -> list[tuple[str, str]]:
        return billing_fields(started, answered, ended if ended is not None else self._clock(), rate)

    def _new_room(self) -> str:
        return f"R{self._new_id()}"

    # ------------------------------------------------------------------------------------------
    # Posting notifications

    def _later(
        self, delay: float, work: Callable[[], None], key: str | None = None, cancel: threading.Event | None = None
    ) -> None:
        """Run ``work`` in a daemon thread after ``delay`` seconds, unless ``cancel`` is set or the fake
        stops first. ``key`` (a session ID or txn_ref) lets waits follow one call's posts only."""
        cancel = cancel or threading.Event()
        with self._lock:
            if self._stopping.is_set():
                return
            self._inflight += 1
            self._inflight_by[key] += 1
            self._timers.add(cancel)

        def run() -> None:
            try:
                if delay > 0:
                    cancel.wait(delay)
                if not cancel.is_set() and not self._stopping.is_set():
                    work()
            finally:
                with self._changed:
                    self._inflight -= 1
                    self._inflight_by[key] -= 1
                    self._timers.discard(cancel)
                    self._threads.discard(threading.current_thread())
                    self._changed.notify_all()

        thread = threading.Thread(target=run, name="fake-hoiio-notify", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _deliver_all(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            self._deliver(delivery)

    def _deliver(self, delivery: Delivery) -> None:
        if self._stopping.is_set():
            return
        body = urlencode(delivery.fields).encode()
        signature = sign_body(body, self._apps[delivery.app_id])
        headers = {"Content-Type": FORM_CONTENT_TYPE, SIGNATURE_HEADER: signature, "User-Agent": "fake-hoiio"}
        record = NotificationRecord(
            time=self._clock(),
            url=delivery.url,
            body=body.decode(),
            fields=dict(delivery.fields),
            signature=signature,
            session=delivery.session,
            txn_ref=delivery.txn_ref,
        )
        with self._changed:
            index = len(self._notifications)
            self._notifications.append(record)
        try:
            done = replace(record, http_status=self._transport(delivery.url, body, headers), done=True)
        except Exception as exc:  # noqa: BLE001 - any failure to post is recorded, never re-sent
            done = replace(record, error=f"{type(exc).__name__}: {exc}", done=True)
        with self._changed:
            self._notifications[index] = done
            self._changed.notify_all()

    # ------------------------------------------------------------------------------------------
    # Snapshots

    def _snapshot(self, session: Session) -> SessionSnapshot:
        return SessionSnapshot(
            session=session.sid,
            txn_ref=session.txn_ref,
            app_id=session.app_id,
            direction=session.direction,
            state=session.state,
            waiting=session.pending is not None and not session.pending.connected,
            blocks=tuple(session.blocks),
            caller=session.caller,
            to=session.to,
            dest=session.dest,
            room=session.room,
            monitored=session.monitor is not None,
            muted=session.muted,
            end_reason=session.end_reason,
        )

    def _call_snapshot(self, call: Call) -> CallSnapshot:
        return CallSnapshot(
            txn_ref=call.txn_ref,
            app_id=call.app_id,
            kind=call.kind,
            active=call.active,
            dests=call.dests,
            statuses=call.statuses,
            room=call.room,
            muted=call.muted,
            tag=call.tag,
        )


def _is_form(content_type: str | None) -> bool:
    return not content_type or content_type.split(";", 1)[0].strip().lower() == FORM_CONTENT_TYPE
