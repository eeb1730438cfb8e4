"""Hoiio webhook routes.

``POST /hoiio/answer`` is the URL configured on Hoiio numbers (routes by the dialled number),
``POST /hoiio/answer/<flow>`` starts the named flow whatever the number, ``POST /hoiio/notify`` and
``POST /hoiio/monitor`` receive later notifications at the URLs the engine itself chose.
Every request, good or bad, is recorded; errors are JSON with the right 4xx status.
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from engine.service import Inbound

bp = Blueprint("hoiio", __name__, url_prefix="/hoiio")

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
            record = service.db.record_notification(
                route=f"{request.method} {request.path}", method=request.method,
                query_string=request.query_string.decode("latin-1")[:4000], headers={}, body=body,
            )
            service.db.finish_notification(record, outcome="invalid", reason=message,
                                           response={"status": "error", "error": message},
                                           session=None, step=None, duration_ms=0)
        return jsonify({"status": "error", "error": message}), exc.code or 500
