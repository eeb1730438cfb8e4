"""Health endpoints: ``/healthz`` and ``/livez`` (process alive), ``/readyz`` (dependencies)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@bp.get("/livez")
def alive():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def ready():
    service = current_app.extensions["ivr"]
    checks: dict[str, object] = {}
    ok = True
    try:
        service.db.ping(timeout_s=1.0)
        checks["database"] = "ok"
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
