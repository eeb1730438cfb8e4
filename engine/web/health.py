"""Health and metrics endpoints.

``/healthz`` and ``/livez``: the process is alive (no dependency checks). ``/readyz``: the database
answers within a second, flows are loaded, migrations are at head; 503 once shutdown has begun
(``begin_shutdown``, called from the gunicorn worker's SIGTERM handling) so a load balancer stops
sending new calls while in-flight notifications finish. ``/metrics``: Prometheus text.
"""

from __future__ import annotations

import threading

from flask import Blueprint, Response, current_app, jsonify

from engine import observability as obs

bp = Blueprint("health", __name__)

_SHUTTING_DOWN = threading.Event()


def begin_shutdown() -> None:
    _SHUTTING_DOWN.set()


@bp.get("/healthz")
@bp.get("/livez")
def alive():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def ready():
    from engine.storage import migrate

    service = current_app.extensions["ivr"]
    checks: dict[str, object] = {}
    ok = True
    if _SHUTTING_DOWN.is_set():
        ok = False
        checks["shutdown"] = "in progress"
    try:
        service.db.ping(timeout_s=1.0)
        checks["database"] = "ok"
        if migrate.is_current(service.db):
            checks["migrations"] = "at head"
        else:
            ok = False
            checks["migrations"] = "behind: run `ivr db upgrade`"
    except Exception as exc:  # any failure means not ready
        ok = False
        checks["database"] = f"unreachable: {type(exc).__name__}"
    flows = service.flows
    checks["flows"] = sorted(flows.current)
    if not flows.current:
        ok = False
    if flows.errors:
        checks["flow_errors"] = [str(f) for f in flows.errors]
    return jsonify({"status": "ok" if ok else "unavailable", "checks": checks}), 200 if ok else 503


@bp.get("/metrics")
def metrics():
    service = current_app.extensions["ivr"]
    try:
        active = service.db.count_calls("active")
    except Exception:  # metrics must answer even when the database does not
        active = None
    return Response(obs.metrics_payload(active), mimetype="text/plain; version=0.0.4")
