"""HTTP face of the fake Hoiio: the ``/open/...`` API routes, fault injection and the ``/_fake`` control API.

``/open/<endpoint>`` answers like Hoiio: HTTP 200 with a JSON body whose ``status`` says what
happened (any method is routed here so that PUT/DELETE/... get ``error_invalid_http_method``).
Unknown endpoints get HTTP 404. The control API, for curl and other processes:

* ``POST /_fake/calls`` JSON ``{answer_url, caller?, to?, app_id?, keys?, transfers?, records?, dial?,
  hangup_after?, stay_on_line?}`` -> 201 ``{"session": ...}`` (409 when the account is full).
* ``POST /_fake/outbound`` JSON ``{dest?, <script fields>}``: how the next person called behaves.
* ``GET /_fake/calls`` (voice/conference calls), ``GET /_fake/sessions``, ``GET /_fake/sessions/<sid>``,
  ``POST /_fake/sessions/<sid>/hangup`` (the caller hangs up), ``POST /_fake/calls/<txn_ref>/hangup``.
* ``GET /_fake/log`` -> ``{"requests": [...], "notifications": [...]}``.
* ``POST /_fake/faults`` JSON ``{endpoint, status?, delay?, drop?, times?, processed?}``;
  ``DELETE /_fake/faults`` clears them.
* ``GET /_fake/recordings/<name>.wav``: a short silent 8 kHz mono WAV (what record URLs point at).

Notification timers start once the response has been written (``werkzeug.serving`` closes the
response iterable after sending it). Without a werkzeug socket (a test client, another server) they
start as soon as the response is built. Dropping a connection needs the real socket: under
``werkzeug.serving`` the socket is shut down and the request ends without an answer; in-process
``ConnectionDropped`` is raised instead.

May import the standard library, ``engine.fakes`` and Flask/werkzeug.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import socket
import wave
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, abort, jsonify, request
from werkzeug.wsgi import ClosingIterator

from engine.fakes.hoiio_calls import CallerScript, CallLimitReached, ConnectionDropped, RequestRecord
from engine.fakes.hoiio_rules import ENDPOINTS, STATUSES, Refused, parse_params, redact

if TYPE_CHECKING:
    from engine.fakes.hoiio import FakeHoiio

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_AFTER = "fake_hoiio.after"
_DROP = "fake_hoiio.drop"
_RUN_AFTER = "fake_hoiio.run_after"


def create_app(fake: FakeHoiio) -> Flask:
    app = Flask("engine.fakes.hoiio")
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.add_url_rule(
        "/open/<path:endpoint>",
        "api",
        lambda endpoint: _api(fake, endpoint),
        methods=ALL_METHODS,
        provide_automatic_options=False,
    )
    _control_routes(app, fake)
    app.wsgi_app = _AfterResponse(app.wsgi_app, fake)  # type: ignore[method-assign]
    return app


def _api(fake: FakeHoiio, endpoint: str) -> Response:
    if endpoint not in ENDPOINTS:
        return _json({"error": f"no such endpoint /open/{endpoint}"}, 404)
    started = fake.now()
    fault = fake.take_fault(endpoint)
    if fault is not None and fault.delay:
        fake.sleep(fault.delay)
    if fault is not None and not fault.processed and (fault.drop or fault.status):
        params = _peek_params(fake, endpoint)
        if fault.drop:
            fake.record_request(RequestRecord(started, request.method, endpoint, params, None, (), "dropped"))
            request.environ[_DROP] = True
            return Response(b"")
        response = {"status": fault.status}
        fake.record_request(RequestRecord(started, request.method, endpoint, params, response, (), "status"))
        return _json(response)

    body = request.get_data(cache=True) if request.method == "POST" else None
    response, after, params, ignored = fake.handle(
        request.method, endpoint, request.query_string, body, request.content_type
    )
    request.environ[_AFTER].extend(after)
    note = None
    if fault is not None and fault.delay:
        note = f"delayed {fault.delay}s"
    if fault is not None and fault.drop:
        note = f"dropped after {response['status']}"
        fake.record_request(RequestRecord(started, request.method, endpoint, params, None, ignored, note))
        request.environ[_DROP] = True
        return Response(b"")
    if fault is not None and fault.status:
        note = f"status {fault.status} after {response['status']}"
        response = {"status": fault.status}
    fake.record_request(RequestRecord(started, request.method, endpoint, params, response, ignored, note))
    return _json(response)


def _peek_params(fake: FakeHoiio, endpoint: str) -> dict[str, str]:
    """The request's parameters for the log when a fault answers without processing it."""
    body = request.get_data(cache=True) if request.method == "POST" else None
    try:
        return redact(parse_params(request.query_string, body))
    except Refused:
        return {}


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


class _AfterResponse:
    """Runs the accepted request's callbacks (which start notification timers) once the response
    has been written, and carries out connection drops."""

    def __init__(self, inner: Callable[..., Iterable[bytes]], fake: FakeHoiio) -> None:
        self.inner = inner
        self.fake = fake

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        after: list[Callable[[], None]] = []
        environ[_AFTER] = after

        def run_once() -> None:
            taken = list(after)
            after.clear()
            self.fake.run_after(taken)

        # Also run by the request handler when the peer vanished while the answer was written
        # (see run_after_response): werkzeug then never closes the response iterable.
        environ[_RUN_AFTER] = run_once
        iterable = self.inner(environ, start_response)
        sock = environ.get("werkzeug.socket")
        if environ.get(_DROP):
            if hasattr(iterable, "close"):
                iterable.close()
            run_once()  # a processed request still executes
            if sock is None:
                raise ConnectionDropped("fake-hoiio dropped the connection (fault injection)")
            with contextlib.suppress(OSError):  # the peer may be gone already
                sock.shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError("fake-hoiio dropped the connection (fault injection)")
        if sock is None:  # in-process: the caller has the response as soon as we return
            run_once()
            return iterable
        return ClosingIterator(iterable, [run_once])


def run_after_response(environ: dict[str, Any] | None) -> None:
    """Start what an accepted request set off (its notification timers) if that has not happened
    yet. For the HTTP server's ``connection_dropped``: when the client disappears with the answer
    unread (a killed process), werkzeug fails reading the socket before it closes the response, and
    a block Hoiio carried out must still post its notification."""
    run = (environ or {}).get(_RUN_AFTER)
    if run is not None:
        run()


# --------------------------------------------------------------------------------------------------
# Control API


def _control_routes(app: Flask, fake: FakeHoiio) -> None:
    @app.post("/_fake/calls")
    def create_call() -> tuple[Response, int]:
        data = _json_body()
        answer_url = data.pop("answer_url", None)
        if not isinstance(answer_url, str):
            return jsonify(error="answer_url is required"), 400
        options = {name: data.pop(name) for name in ("caller", "to", "app_id") if name in data}
        try:
            script = CallerScript.from_json(data)
            session = fake.incoming_call(answer_url, script=script, **options)
        except (TypeError, ValueError) as exc:
            return jsonify(error=str(exc)), 400
        except CallLimitReached as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(session=session), 201

    @app.post("/_fake/outbound")
    def script_outbound() -> tuple[Response, int]:
        data = _json_body()
        dest = data.pop("dest", None)
        try:
            fake.script_outbound(CallerScript.from_json(data), dest=dest)
        except (TypeError, ValueError) as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(ok=True), 201

    @app.get("/_fake/calls")
    def list_calls() -> Response:
        return jsonify(calls=[_plain(call) for call in fake.calls.values()])

    @app.post("/_fake/calls/<txn_ref>/hangup")
    def hangup_call(txn_ref: str) -> Response:
        return _hangup(txn_ref)

    @app.get("/_fake/sessions")
    def list_sessions() -> Response:
        return jsonify(sessions=[_plain(s) for s in fake.sessions.values()])

    @app.get("/_fake/sessions/<sid>")
    def get_session(sid: str) -> Response:
        snapshot = fake.sessions.get(sid)
        if snapshot is None:
            abort(404)
        return jsonify(_plain(snapshot))

    @app.post("/_fake/sessions/<sid>/hangup")
    def hangup_session(sid: str) -> Response:
        return _hangup(sid)

    def _hangup(ref: str) -> Response:
        try:
            fake.hangup_caller(ref)
        except KeyError:
            abort(404)
        return jsonify(ok=True)

    @app.get("/_fake/log")
    def get_log() -> Response:
        return jsonify(
            requests=[_plain(r) for r in fake.log],
            notifications=[_plain(n) for n in fake.notifications],
        )

    @app.post("/_fake/faults")
    def add_fault() -> tuple[Response, int]:
        data = _json_body()
        names = {"endpoint", "status", "delay", "drop", "times", "processed"}
        unknown = set(data) - names
        if unknown or not isinstance(data.get("endpoint"), str):
            return jsonify(error=f"expected endpoint and any of {sorted(names - {'endpoint'})}"), 400
        try:
            fake.inject(data.pop("endpoint"), **data)
        except (TypeError, ValueError) as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(ok=True), 201

    @app.delete("/_fake/faults")
    def clear_faults() -> Response:
        fake.clear_faults()
        return jsonify(ok=True)

    @app.get("/_fake/statuses")
    def statuses() -> Response:
        return jsonify(statuses=[_plain(s) for s in STATUSES.values()])

    @app.get("/_fake/recordings/<name>.wav")
    def recording(name: str) -> Response:
        return Response(_SILENCE, mimetype="audio/wav")

    @app.errorhandler(404)
    def not_found(_error: Exception) -> tuple[Response, int]:
        return jsonify(error="not found"), 404


def _json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(Response(json.dumps({"error": "expected a JSON object"}), 400, mimetype="application/json"))
    return data


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value)


def _silent_wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


_SILENCE = _silent_wav()
