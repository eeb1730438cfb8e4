"""Hoiio webhook routes.

``POST /hoiio/answer`` is the URL configured on Hoiio numbers (routes by the dialled number),
``POST /hoiio/answer/<flow>`` starts the named flow whatever the number, ``POST /hoiio/notify`` and
``POST /hoiio/monitor`` receive later notifications at the URLs the engine itself chose.
Every request, good or bad, is recorded; errors are JSON with the right 4xx status.
"""

from __future__ import annotations

import ipaddress
import re

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from engine import observability as obs
from engine.service import Inbound
from engine.storage import StorageError

bp = Blueprint("hoiio", __name__, url_prefix="/hoiio")


@bp.before_request
def _source_allowed():
    """Optional allow-list of source networks (``IVR_HOIIO_ALLOW_NETS``), checked before anything else."""
    service = current_app.extensions["ivr"]
    nets = service.settings.hoiio_allow_nets
    if not nets:
        return None
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        address = None
    if address is not None and any(address in ipaddress.ip_network(net) for net in nets):
        return None
    message = f"source address {request.remote_addr} is not in IVR_HOIIO_ALLOW_NETS"
    record = service.db.record_notification(
        route=f"{request.method} {request.path}", method=request.method,
        query_string=request.query_string.decode("latin-1")[:4000], headers={}, body=b"",
    )
    service.db.finish_notification(record, outcome="refused", reason=message,
                                   response={"status": "error", "error": message}, session=None, step=None,
                                   duration_ms=0)
    obs.REFUSED.labels("source_network").inc()
    return jsonify({"status": "error", "error": message}), 403

_FLOW_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _inbound(route: str, flow: str | None = None):
    service = current_app.extensions["ivr"]
    inbound = Inbound(
        route=route,
        method=request.method,
        path=request.path,
        query=request.args.to_dict(flat=False),
        headers=dict(request.headers),
        body=request.get_data(cache=False),
        flow_hint=flow,
        remote_addr=request.remote_addr,
    )
    outcome = service.handle(inbound)
    return jsonify(outcome.body), outcome.http_status


@bp.post("/answer")
def answer():
    return _inbound("answer")


@bp.post("/answer/<flow>")
def answer_flow(flow: str):
    if not _FLOW_NAME.match(flow):
        return jsonify({"status": "error", "error": "flow names use letters, digits, '-', '_' and '.'"}), 404
    return _inbound("answer", flow)


@bp.post("/notify")
def notify():
    return _inbound("notify")


@bp.post("/monitor")
def monitor():
    return _inbound("monitor")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {
            404: "no such URL here",
            405: f"{request.method} is not allowed here; Hoiio notifications are POSTed",
            413: f"request body larger than {app.config.get('MAX_CONTENT_LENGTH')} bytes",
        }
        message = messages.get(exc.code or 500, exc.description or exc.name)
        if request.path.startswith("/hoiio/"):
            service = app.extensions["ivr"]
            try:
                body = b"" if exc.code == 413 else request.get_data(cache=True)[:65536]
            except HTTPException:
                body = b""
            try:
                record = service.db.record_notification(
                    route=f"{request.method} {request.path}", method=request.method,
                    query_string=request.query_string.decode("latin-1")[:4000], headers={}, body=body,
                )
                service.db.finish_notification(record, outcome="invalid", reason=message,
                                               response={"status": "error", "error": message},
                                               session=None, step=None, duration_ms=0)
            except StorageError as storage_error:  # the refusal stands even when it cannot be recorded
                current_app.logger.error("could not record a refused request: %s", storage_error)
        return jsonify({"status": "error", "error": message}), exc.code or 500
