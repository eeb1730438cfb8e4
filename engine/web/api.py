"""The JSON API (``/api``) and the side calls' notification route (``POST /hoiio/events``).

``init_app(app)`` installs both: it builds the ``engine.outbound.Outbound`` service on top of the
app's ``CallService`` (sharing the service's ``VoipNowClient``, there when ``VOIPNOW_URL`` is set) and
wraps the service's Hoiio client in a ``SideCallRecorder`` so a flow's conference calls are stored too.

Authentication: ``Authorization: Bearer <IVR_API_TOKEN>``. Without ``IVR_API_TOKEN`` the API is off:
every ``/api`` route but the OpenAPI document answers 503 with a JSON message saying so. The routes
stay thin: HTTP in, ``Outbound`` call, JSON out; every error is a JSON body with the right status.

May import Flask, ``engine.outbound``, ``engine.web.openapi`` and ``engine.providers.voipnow``.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from engine.outbound import ApiError, Outbound, Reply, decode_json
from engine.storage import DatabaseUnavailable, StorageBusy
from engine.web import openapi, throttle

log = logging.getLogger("engine.api")

bp = Blueprint("api", __name__, url_prefix="/api")
events_bp = Blueprint("hoiio_events", __name__)

EXTENSION_KEY = "ivr_outbound"


def init_app(app: Flask) -> Outbound:
    """Register ``/api`` and ``/hoiio/events`` on ``app`` (after ``create_app`` wired the service)."""
    service = app.extensions["ivr"]
    # one VoipNow client (built by the service from the settings) for the API and the flows' invites
    outbound = Outbound(service, voipnow=service.voipnow)
    service.client = outbound.recording_client()
    app.extensions[EXTENSION_KEY] = outbound
    app.register_blueprint(bp)
    app.register_blueprint(events_bp)
    app.register_error_handler(405, _method_not_allowed)
    return outbound


def _method_not_allowed(exc: MethodNotAllowed) -> Any:
    """405 with the ``Allow`` header (RFC 9110) and a message that fits the API. Other paths keep
    the app's generic JSON error handler (looked up at call time: it is registered after this)."""
    allowed = sorted(set(exc.valid_methods or ()) - {"OPTIONS"})
    if request.path.startswith("/api/") or request.path == "/hoiio/events":
        response = _error(ApiError(405, "method_not_allowed",
                                   f"{request.method} is not allowed here; use {' or '.join(allowed)}"))  # fmt: skip
        response.headers["Allow"] = ", ".join(allowed)
        return response
    generic = current_app.error_handler_spec[None][None].get(HTTPException)
    return generic(exc) if generic is not None else exc


def _outbound() -> Outbound:
    return current_app.extensions[EXTENSION_KEY]


def _reply(reply: Reply) -> Response:
    response = jsonify(reply.body)
    response.status_code = reply.http_status
    for name, value in reply.headers.items():
        response.headers[name] = value
    return response


def _error(exc: ApiError) -> Response:
    return _reply(Reply(exc.http_status, exc.body(), exc.headers))


def _run(work: Any) -> Response:
    try:
        return _reply(work())
    except ApiError as exc:
        return _error(exc)
    except (StorageBusy, DatabaseUnavailable) as exc:
        log.error("database trouble in %s %s: %s", request.method, request.path, exc)
        return _error(ApiError(503, "database_unavailable", "the database is unavailable; nothing was done"))


def _body() -> Any:
    return decode_json(request.get_data(cache=False))


# ---------------------------------------------------------------------------------------- auth
@bp.before_request
def _authenticate() -> Response | None:
    if request.endpoint == "api.openapi_document":
        return None
    token = current_app.extensions["ivr"].settings.api_token
    if not token:
        return _error(ApiError(503, "api_disabled", "the API is off: set IVR_API_TOKEN on the server to turn it on"))
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _error(ApiError(401, "unauthorized", "send the API token: Authorization: Bearer <IVR_API_TOKEN>",
                               headers={"WWW-Authenticate": 'Bearer realm="ivr"'}))  # fmt: skip
    wait = throttle.wait_before_trying()
    if wait is not None:
        return _error(ApiError(429, "too_many_attempts", f"too many wrong tokens from {throttle.client_address()}; "
                               f"try again in {wait} s", headers={"Retry-After": str(wait)}))
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        throttle.count_wrong_token("API")
        return _error(ApiError(401, "unauthorized", "the API token is wrong",
                               headers={"WWW-Authenticate": 'Bearer realm="ivr", error="invalid_token"'}))
    return None


# ---------------------------------------------------------------------------------------- routes
@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.document())


@bp.post("/calls")
def start_call() -> Response:
    return _run(lambda: _outbound().start_call(_body()))


@bp.get("/calls/<ref>")
def get_call(ref: str) -> Response:
    def work() -> Reply:
        raw = request.args.get("refresh", "0").strip().lower()
        if raw not in ("0", "1", "true", "false", ""):
            raise ApiError(422, "invalid_field", "refresh: must be 1 or 0", field="refresh")
        return _outbound().call_info(ref, refresh=raw in ("1", "true"))

    return _run(work)


@bp.post("/callbacks")
def start_callback() -> Response:
    return _run(lambda: _outbound().start_callback(_body()))


@bp.post("/conferences")
def start_conference() -> Response:
    return _run(lambda: _outbound().start_conference(_body()))


@bp.get("/conferences/<room>")
def get_conference(room: str) -> Response:
    return _run(lambda: _outbound().conference(room))


@bp.post("/conferences/<room>/participants/<txn_ref>/<any(kick, mute, unmute):action>")
def moderate(room: str, txn_ref: str, action: str) -> Response:
    return _run(lambda: _outbound().moderate(room, txn_ref, action))


@bp.post("/conferences/voipnow/invites")
def voipnow_invite() -> Response:
    return _run(lambda: _outbound().voipnow_invite(_body()))


@bp.get("/conferences/voipnow/invites/<phone_call_id>")
def voipnow_invite_status(phone_call_id: str) -> Response:
    return _run(lambda: _outbound().voipnow_invite_status(phone_call_id))


@bp.delete("/conferences/voipnow/invites/<phone_call_id>")
def voipnow_hangup(phone_call_id: str) -> Response:
    return _run(lambda: _outbound().voipnow_hangup(phone_call_id))


@events_bp.post("/hoiio/events")
def receive_event() -> Response:
    def work() -> Reply:
        return _outbound().receive_event(
            method=request.method, path=request.path, query=request.args.to_dict(flat=False),
            headers=request.headers, body=request.get_data(cache=False),
        )  # fmt: skip

    return _run(work)
