"""The dashboard (``/admin/``): flows, calls, a call's timeline, counts per exit, flow versions.

Server-rendered HTML (Jinja2 templates in ``engine/web/templates/admin/``, one stylesheet in
``engine/web/static/``), no JavaScript, usable on a phone.

Access: ``IVR_ADMIN_TOKEN``. Without it every ``/admin`` page answers 404 with a page saying how to
turn the dashboard on. With it, a person logs in with the token (a small form; the session cookie is
signed, HttpOnly, SameSite=Strict, and Secure when the request came over HTTPS) and scripts send
``Authorization: Bearer <token>``. Every POST form carries a CSRF token bound to the session.

Phone numbers are never shown in full (``engine.observability.mask_number``): not the caller's,
not the flows' own. The replay-case download is a file for a developer and holds the call as Hoiio
posted it.

Routes: ``GET /admin/`` (overview), ``GET /admin/flows/<flow>`` (diagram, check status, versions,
``?old=&new=`` diff), ``GET /admin/flows/<flow>/diagram.svg``, ``GET /admin/calls``,
``GET /admin/calls/<session>`` (timeline), ``GET /admin/calls/<session>/replay.yaml``,
``GET /admin/counts?days=1|7|30``, ``POST /admin/reload``, ``GET|POST /admin/login``, ``POST /admin/logout``.

May import Flask, ``engine.authoring.versions``, ``engine.replay.export`` and ``engine.storage``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from engine.observability import mask_number, mask_text
from engine.web import throttle

log = logging.getLogger("engine.admin")

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static",
               static_url_path="/static")

EXTENSION_KEY = "ivr_admin"
PERIODS = (1, 7, 30)
CALLS_SHOWN = 50
SESSION_HOURS = 12
_OPEN_ENDPOINTS = frozenset({"admin.login"})
_NOTIFICATION_HIDDEN = frozenset({"ivr_block", "session", "txn_ref", "from", "to", "tag", "step", "sig", "ref"})
_BLOCK_HIDDEN = frozenset({"session", "notify_url", "msg", "tag"})
_BILLING_FIELDS = ("duration", "rate", "currency", "debit", "date")


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever the request itself came over HTTPS (directly,
    or through the proxies ``IVR_PROXY_HOPS`` trusts), so plain-HTTP development still works.

    Opened only under the cookie's path (``/admin``), the only requests a browser sends it with:
    the webhooks and the API get Flask's null session, read-only and empty. Opening one built a
    signing serializer and parsed the cookies of every notification (about 3% of a worker's
    Python time under load)."""

    def get_cookie_secure(self, app: Flask) -> bool:  # type: ignore[override]
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure

    def open_session(self, app: Flask, incoming: Any) -> Any:  # type: ignore[override]
        scope = self.get_cookie_path(app).rstrip("/")
        if scope and incoming.path != scope and not incoming.path.startswith(scope + "/"):
            return self.make_null_session(app)
        return super().open_session(app, incoming)


@dataclass
class _AdminState:
    diagrams: OrderedDict[tuple[str, str], tuple[str, Markup | None]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def init_app(app: Flask) -> None:
    """Register the dashboard on ``app`` (after ``create_app`` set ``app.secret_key``)."""
    app.config["SESSION_COOKIE_NAME"] = "ivr_admin"
    app.config["SESSION_COOKIE_PATH"] = "/admin"  # never sent to the webhooks or the API
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=SESSION_HOURS)
    app.session_interface = _SessionInterface()
    app.extensions[EXTENSION_KEY] = _AdminState()
    app.register_blueprint(bp)


def _service():
    return current_app.extensions["ivr"]


def _state() -> _AdminState:
    return current_app.extensions[EXTENSION_KEY]


# ---------------------------------------------------------------------------------------- access
def _token() -> str | None:
    return _service().settings.admin_token


def _fingerprint(token: str) -> str:
    """What the session cookie holds: changing ``IVR_ADMIN_TOKEN`` logs everybody out."""
    return hashlib.sha256(f"ivr-admin|{token}".encode()).hexdigest()[:32]


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    return bool(expected) and _same(request.form.get("csrf_token"), expected)


@bp.before_request
def _guard():
    g.admin_via = None
    if request.endpoint == "admin.static":
        return None  # the stylesheet: public, and needed by the login and "off" pages
    token = _token()
    if not token:
        return _page("off.html", status=404, title="Dashboard off")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer"  # other schemes (a proxy's Basic login) are not ours: ignored
    if bearer or (request.endpoint == "admin.login" and request.method == "POST"):
        wait = throttle.wait_before_trying()
        if wait is not None:
            return _too_many(wait)
    if bearer:
        if not _same(given.strip(), token):
            throttle.count_wrong_token("dashboard bearer token")
            return _unauthorized("wrong token")
        g.admin_via = "bearer"
        return None  # a script: no cookie, so no cross-site request forgery to guard against
    if session.get("admin") and _same(session.get("admin"), _fingerprint(token)):
        g.admin_via = "session"
    if request.endpoint in _OPEN_ENDPOINTS:
        if request.method == "POST" and not _csrf_ok():
            return _csrf_refused()
        return None
    if g.admin_via is None:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        return _unauthorized("log in first")
    if request.method == "POST" and not _csrf_ok():
        return _csrf_refused()
    return None


def _unauthorized(reason: str) -> Response:
    response = Response(f"401 Unauthorized: {reason}. Log in at /admin/login or send "
                        "Authorization: Bearer <IVR_ADMIN_TOKEN>.\n", status=401, mimetype="text/plain")
    response.headers["WWW-Authenticate"] = 'Bearer realm="ivr-admin"'
    return response


def _too_many(wait: int) -> Response:
    response = _page("error.html", status=429, title="Too many tries",
                     message=f"Too many wrong tokens were sent from your address. Try again in {wait} seconds.")
    response.headers["Retry-After"] = str(wait)
    return response


def _csrf_refused() -> Response:
    return _page("error.html", status=400, title="Form expired",
                 message="This form was not sent from the dashboard, or it has expired. Go back, reload the "
                         "page and try again.")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("admin.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.admin_via:
            return redirect(target)
        return _page("login.html", title="Log in", next=target)
    if not _same(request.form.get("token", "").strip(), _token() or ""):
        throttle.count_wrong_token("dashboard login")
        return _page("login.html", status=401, title="Log in", next=target,
                     error="That is not the dashboard token (IVR_ADMIN_TOKEN).")
    session.clear()
    session.permanent = True
    session["admin"] = _fingerprint(_token() or "")
    session["csrf"] = secrets.token_urlsafe(32)  # a fresh one for the logged-in session
    return redirect(target)


@bp.post("/logout")
def logout():
    session.clear()
    flash("Logged out.")
    return redirect(url_for("admin.login"))


# ---------------------------------------------------------------------------------------- pages
@bp.get("/")
def index():
    service = _service()
    flows = _flow_summaries(service)
    live = service.db.list_calls(limit=CALLS_SHOWN, status="active")
    recent = service.db.list_calls(limit=10, status="ended")
    return _page("index.html", title="Overview", flows=flows, general=_general_findings(service),
                 live=[_call_view(c) for c in live], recent=[_call_view(c) for c in recent],
                 reloads=service.flows.reloads)


@bp.get("/calls")
def calls():
    service = _service()
    live = service.db.list_calls(limit=CALLS_SHOWN, status="active")
    recent = service.db.list_calls(limit=CALLS_SHOWN, status="ended")
    return _page("calls.html", title="Calls", live=[_call_view(c) for c in live],
                 recent=[_call_view(c) for c in recent], limit=CALLS_SHOWN)


@bp.get("/calls/<session_id>")
def call(session_id: str):
    service = _service()
    row = service.db.get_call(session_id)
    entries = service.db.timeline(session_id)
    if row is None and not entries:
        abort(404, description=f"No call with session {session_id!r} is stored.")
    return _page("call.html", title=f"Call {session_id}", call=_call_view(row) if row else None,
                 session_id=session_id, entries=_timeline_view(service, row, entries),
                 billing=_billing_view(row), path=_path_view(row))


@bp.get("/calls/<session_id>/replay.yaml")
def replay_case(session_id: str):
    try:
        from engine.replay.export import ExportError, export_text
    except ImportError:  # pragma: no cover - the replay package is part of the engine
        abort(501, description="Replay export is not available in this installation.")
    service = _service()
    try:
        text = export_text(service.db, session_id, flows_dir=service.settings.flows_dir)
    except ExportError as exc:
        abort(404, description=str(exc))
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", session_id)[:80] or "call"
    response = Response(text, mimetype="application/x-yaml")
    response.headers["Content-Disposition"] = f'attachment; filename="replay-{name}.yaml"'
    return response


@bp.get("/flows/<name>")
def flow(name: str):
    service = _service()
    summaries = {s["name"]: s for s in _flow_summaries(service)}
    summary = summaries.get(name)
    versions = service.db.flow_versions(name)
    if summary is None and not versions:
        abort(404, description=f"There is no flow {name!r}.")
    current = service.flows.current.get(name)
    diagram_error, diagram = (None, None)
    if current is not None:
        diagram_error, diagram = _diagram(current)
    diff = _diff_view(name, versions, request.args.get("old"), request.args.get("new"))
    return _page("flow.html", title=f"Flow {name}", name=name, summary=summary, current=current,
                 diagram=diagram, diagram_error=diagram_error, versions=_versions_view(versions, current),
                 diff=diff)


@bp.get("/flows/<name>/diagram.svg")
def diagram(name: str):
    current = _service().flows.current.get(name)
    if current is None:
        abort(404, description=f"There is no running flow {name!r}.")
    error, svg = _diagram(current)
    if svg is None:
        abort(404, description=error)
    return Response(str(svg), mimetype="image/svg+xml")


@bp.get("/counts")
def counts():
    raw = request.args.get("days", "7")
    if raw not in {str(p) for p in PERIODS}:
        abort(400, description="days must be 1, 7 or 30.")
    days = int(raw)
    service = _service()
    return _page("counts.html", title="Counts", days=days, periods=PERIODS, flows=exit_counts(service, days))


@bp.post("/reload")
def reload():
    service = _service()
    errors = service.reload_flows()
    others = _ask_other_workers(service.settings)
    loaded = ", ".join(f"{n} ({f.version})" for n, f in sorted(service.flows.current.items())) or "none"
    tail = "" if others else (" Other server processes were not told (the reload stamp is not writable): "
                              "run `ivr reload`.")
    if errors:
        flash(f"Flows reloaded with {len(errors)} error(s): flows with errors keep their running version. "
              f"Loaded: {mask_text(loaded)}.{tail}", "error")
    else:
        flash(f"Flows reloaded. Loaded: {loaded}.{tail}", "ok")
    return redirect(_safe_next(request.form.get("next")))


def _ask_other_workers(settings: Any) -> bool:
    """Touch the reload stamp, as ``ivr reload`` does, so every other worker (and machine sharing
    the flows folder) reloads too within a second. False when it cannot be written."""
    import time

    from engine.web import reload_stamp

    try:
        reload_stamp(settings).write_text(f"{time.time()}\n")
    except OSError as exc:
        log.warning("could not touch the reload stamp: %s", exc)
        return False
    return True


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    titles = {400: "Bad request", 404: "Not found", 405: "Not allowed"}
    return _page("error.html", status=exc.code or 500, title=titles.get(exc.code or 500, exc.name),
                 message=exc.description)


# ---------------------------------------------------------------------------------------- rendering
def _page(template: str, *, status: int = 200, **context: Any) -> Response:
    via = getattr(g, "admin_via", None)
    html = render_template(f"admin/{template}", logged_in=bool(via), admin_via=via, **context)
    return Response(html, status=status, mimetype="text/html")


@bp.app_template_global("admin_csrf_token")
def _csrf_global() -> str:
    return csrf_token()


@bp.app_template_filter("masked")
def _masked(value: Any) -> str:
    return "" if value is None else mask_text(str(value))


@bp.app_template_filter("when")
def _when_filter(value: datetime | None) -> str:
    return _when(value)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(value: datetime | None) -> str:
    return "-" if value is None else _utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _call_view(row: Any) -> dict[str, Any]:
    end = row.ended_at or datetime.now(UTC)
    seconds = (_utc(end) - _utc(row.created_at)).total_seconds()
    number = row.dest if row.direction == "outbound" else row.caller
    return {
        "session": row.session,
        "flow": row.flow,
        "version": row.flow_version,
        "direction": row.direction,
        "status": row.status,
        "node": row.node or "-",
        "number": mask_number(number) or "-",
        "called": mask_number(row.called) or "-",
        "outcome": row.outcome or ("in progress" if row.status == "active" else "-"),
        "started": _when(row.created_at),
        "ended": _when(row.ended_at),
        "duration": _duration(seconds),
        "live": row.status == "active",
    }


def _fields(body: bytes | str | None) -> dict[str, str]:
    if not body:
        return {}
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return dict(parse_qsl(text, keep_blank_values=True))


def _compact(value: Any) -> str:
    if value is None or value == "":
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(", ", ": "))
    return mask_text(text)


def _reply_summary(response: Any) -> Any:
    """The engine's answer to a notification, without the blocks (they have lines of their own,
    and their notify URLs carry signatures)."""
    if not isinstance(response, Mapping):
        return response
    summary = {k: v for k, v in response.items() if k != "blocks"}
    blocks = response.get("blocks")
    if isinstance(blocks, list) and blocks:
        summary["blocks"] = [b.get("endpoint") if isinstance(b, Mapping) else b for b in blocks]
    return summary


def _sensitive_steps(service: Any, row: Any, blocks: list[Any]) -> set[int]:
    """Steps whose answer carries digits never to be shown (a collect node marked sensitive)."""
    if row is None:
        return set()
    flow = service.flows.get(row.flow, row.flow_version)
    if flow is None:
        return {b.step for b in blocks} if row.state.get("sensitive") else set()
    out = set()
    for block in blocks:
        node = flow.nodes.get(block.node)
        if node is not None and getattr(node, "sensitive", False):
            out.add(block.step)
    return out


def _timeline_view(service: Any, row: Any, entries: list[Any]) -> list[dict[str, Any]]:
    blocks = [e.row for e in entries if e.kind == "block"]
    hidden_steps = _sensitive_steps(service, row, blocks)
    start = entries[0].at if entries else None
    out: list[dict[str, Any]] = []
    for entry in entries:
        item = entry.row
        view: dict[str, Any] = {"kind": entry.kind, "at": _when(entry.at),
                                "offset": f"+{(_utc(entry.at) - _utc(start)).total_seconds():.2f}s" if start else ""}
        if entry.kind == "notification":
            fields = _fields(item.body)
            query = dict(parse_qsl(item.query_string or ""))
            raw_step = query.get("step", "")
            answered = int(raw_step) if raw_step.isascii() and raw_step.isdigit() else None
            details = []
            if fields.get("from") or fields.get("to"):
                details.append(("from", mask_number(fields.get("from")) or "-"))
                details.append(("to", mask_number(fields.get("to")) or "-"))
            for name, value in fields.items():
                if name in _NOTIFICATION_HIDDEN:
                    continue
                if name == "digits" and value and (answered in hidden_steps or answered is None and hidden_steps):
                    value = "***"
                details.append((name, mask_text(value)))
            view.update({
                "title": fields.get("ivr_block") or item.route,
                "route": item.route,
                "details": details,
                "result": item.outcome or "unfinished",
                "reason": mask_text(item.reason or ""),
                "timing": f"handled in {item.duration_ms} ms" if item.duration_ms is not None else "",
                "answer": _compact(_reply_summary(item.response)),
                "ok": item.outcome in ("accepted", None),
            })
        elif entry.kind == "block":
            params = dict(item.params or {})
            details = [(name, mask_text(str(value))) for name, value in params.items() if name not in _BLOCK_HIDDEN]
            result = item.status + (f": {item.provider_status}" if item.provider_status else "")
            timing = []
            if item.duration_ms is not None:
                timing.append(f"{item.duration_ms} ms")
            if item.http_status is not None:
                timing.append(f"HTTP {item.http_status}")
            if item.attempts and item.attempts > 1:
                timing.append(f"{item.attempts} attempts")
            view.update({
                "title": item.endpoint,
                "node": item.node,
                "step": item.step,
                "say": mask_text(params.get("msg") or ""),
                "details": details,
                "result": result,
                "reason": mask_text(item.error or ""),
                "timing": ", ".join(timing),
                "answer": _compact(item.response),
                "ok": item.status == "sent" and (item.provider_status or "success_ok").startswith("success"),
            })
        else:
            view.update({
                "title": item.kind,
                "details": [("request", _compact(item.request))],
                "result": item.status,
                "reason": "",
                "timing": "",
                "answer": _compact(item.response),
                "ok": item.status not in ("failed", "error"),
            })
        out.append(view)
    return out


_BILLING_LABELS = {"duration": "billed minutes", "rate": "rate per minute", "currency": "currency",
                   "debit": "charged", "date": "billed at"}


def _billing_view(row: Any) -> list[tuple[str, str]]:
    if row is None or not row.billing:
        return []
    billing = dict(row.billing)
    out = [(_BILLING_LABELS[name], mask_text(str(billing[name]))) for name in _BILLING_FIELDS
           if billing.get(name) not in (None, "")]
    out.extend((name, mask_text(str(value))) for name, value in billing.items()
               if name not in _BILLING_FIELDS and value not in (None, ""))
    return out


def _path_view(row: Any) -> list[tuple[str, str]]:
    if row is None:
        return []
    return [(str(p[0]), str(p[1])) for p in row.state.get("path") or () if isinstance(p, list | tuple) and len(p) == 2]


# ---------------------------------------------------------------------------------------- flows
def _flow_summaries(service: Any) -> list[dict[str, Any]]:
    registry = service.flows
    by_flow: dict[str, list[Any]] = {}
    for finding in registry.findings:
        stem = Path(finding.file).stem
        if Path(finding.file).suffix in (".yaml", ".yml"):
            by_flow.setdefault(stem, []).append(finding)
    loaded = {}
    try:
        for entry in service.db.flow_versions():
            loaded.setdefault((entry["flow"], entry["version"]), entry["loaded_at"])
    except Exception:  # the page still shows the flows when the database does not answer
        log.exception("could not read flow versions")
    names = sorted(set(registry.current) | set(by_flow))
    out = []
    for name in names:
        flow = registry.current.get(name)
        findings = by_flow.get(name, [])
        errors = [f for f in findings if f.severity == "error"]
        warnings = [f for f in findings if f.severity != "error"]
        if flow is None:
            status, label = "failed", "failed to load: not running"
        elif errors:
            status, label = "stale", f"{len(errors)} error(s): the last good version keeps running"
        elif warnings:
            status, label = "warning", f"checked, {len(warnings)} warning(s)"
        else:
            status, label = "ok", "checked, no problems"
        out.append({
            "name": name,
            "description": flow.description if flow else "",
            "version": flow.version if flow else "-",
            "loaded_at": _when(loaded.get((name, flow.version))) if flow else "-",
            "numbers": [mask_number(n) for n in flow.numbers] if flow else [],
            "nodes": len(flow.nodes) if flow else 0,
            "outbound": bool(flow and flow.outbound),
            "status": status,
            "label": label,
            "findings": [_finding_view(f) for f in errors + warnings],
        })
    return out


def _finding_view(finding: Any) -> dict[str, str]:
    return {"severity": finding.severity, "text": mask_text(str(finding)), "code": finding.code or ""}


def _general_findings(service: Any) -> list[dict[str, str]]:
    return [_finding_view(f) for f in service.flows.findings if Path(f.file).suffix not in (".yaml", ".yml")]


def _versions_view(versions: list[dict[str, Any]], current: Any) -> list[dict[str, Any]]:
    out = []
    for index, entry in enumerate(versions):
        older = versions[index + 1]["version"] if index + 1 < len(versions) else None
        out.append({"version": entry["version"], "loaded_at": _when(entry["loaded_at"]),
                    "running": current is not None and current.version == entry["version"], "previous": older})
    return out


def _diff_view(name: str, versions: list[dict[str, Any]], old: str | None, new: str | None) -> dict[str, Any] | None:
    from engine.authoring.versions import VersionError, diff_sources, find_version

    if not old or not new:
        return None
    try:
        before, after = find_version(versions, old), find_version(versions, new)
        changes = diff_sources(before["source"], after["source"], name, old_version=before["version"],
                               new_version=after["version"])
    except VersionError as exc:
        return {"error": str(exc), "old": old, "new": new, "changes": []}
    return {"error": None, "old": before["version"], "new": after["version"],
            "changes": [{"kind": c.kind, "node": c.node, "text": mask_text(c.text)} for c in changes]}


# ---------------------------------------------------------------------------------------- diagrams
_DIAGRAM_CACHE_SIZE = 64


def _diagram(flow: Any) -> tuple[str | None, Markup | None]:
    """The flow's diagram as inline SVG, rendered once per flow version. Returns (error, svg)."""
    state = _state()
    key = (flow.name, flow.version)
    with state.lock:
        cached = state.diagrams.get(key)
        if cached is not None:
            state.diagrams.move_to_end(key)
            return cached[0] or None, cached[1]
    try:
        svg = sanitize_svg(_render_svg(flow))
        result: tuple[str, Markup | None] = ("", Markup(svg))  # noqa: S704 - sanitised just above
    except Exception as exc:  # a diagram problem must not take the page down
        log.warning("could not draw flow %s: %s", flow.name, exc)
        result = (f"The diagram could not be drawn: {exc}", None)
    with state.lock:
        state.diagrams[key] = result
        while len(state.diagrams) > _DIAGRAM_CACHE_SIZE:
            state.diagrams.popitem(last=False)
    return result[0] or None, result[1]


def _render_svg(flow: Any) -> str:
    from engine.authoring import graph

    return graph.draw(flow, "svg").decode("utf-8")


_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_NS = "http://www.w3.org/1999/xlink"
_SVG_TAGS = frozenset({"svg", "g", "title", "desc", "path", "polygon", "polyline", "ellipse", "circle", "rect",
                       "line", "text", "tspan", "defs", "lineargradient", "radialgradient", "stop", "a"})
_SVG_ATTRS = frozenset({
    "id", "class", "width", "height", "viewbox", "preserveaspectratio", "transform", "x", "y", "x1", "y1", "x2",
    "y2", "cx", "cy", "r", "rx", "ry", "d", "points", "fill", "fill-opacity", "stroke", "stroke-width",
    "stroke-dasharray", "stroke-opacity", "stroke-linecap", "stroke-linejoin", "opacity", "font-family",
    "font-size", "font-weight", "font-style", "text-anchor", "dominant-baseline", "offset", "stop-color",
    "stop-opacity", "gradientunits", "gradienttransform", "textlength", "lengthadjust", "role", "aria-label",
})


def sanitize_svg(svg: str) -> str:
    """Keep only drawing elements and attributes of an SVG document (no scripts, no event handlers,
    no links, no external references), mask phone numbers in its text, and make it scale down on
    small screens. Input is Graphviz output from our own flows; this is defence in depth."""
    import xml.etree.ElementTree as ET  # noqa: S405 - see the DOCTYPE removal below

    # No DOCTYPE/entity declarations reach the parser: nothing to expand, nothing external to load.
    text = re.sub(r"<\?xml[^>]*\?>", "", svg)
    text = re.sub(r"<!DOCTYPE[^>[]*(\[[^\]]*\])?\s*>", "", text, flags=re.IGNORECASE)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    if "<!ENTITY" in text.upper() or "<!DOCTYPE" in text.upper():
        raise ValueError("unexpected declarations in the SVG")
    try:
        root = ET.fromstring(text.strip())  # noqa: S314 - declarations removed above
    except ET.ParseError as exc:
        raise ValueError(f"not a well-formed SVG document: {exc}") from None
    if _local(root.tag) != "svg":
        raise ValueError("not an SVG document")

    def clean(element: Any) -> None:
        for child in list(element):
            if not isinstance(child.tag, str) or _local(child.tag).lower() not in _SVG_TAGS:
                element.remove(child)
                continue
            clean(child)
        for name in list(element.attrib):
            local = _local(name).lower()
            if local not in _SVG_ATTRS:
                del element.attrib[name]
        if element.text:
            element.text = mask_text(element.text)
        if element.tail:
            element.tail = mask_text(element.tail)
        if _local(element.tag) == "a":
            element.tag = f"{{{_SVG_NS}}}g"  # keep what is drawn, drop the link

    clean(root)
    root.set("class", "diagram-svg")
    root.set("role", "img")
    root.set("aria-label", "flow diagram")
    ET.register_namespace("", _SVG_NS)
    ET.register_namespace("xlink", _XLINK_NS)
    return ET.tostring(root, encoding="unicode")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# ---------------------------------------------------------------------------------------- counts
def exit_counts(service: Any, days: int) -> list[dict[str, Any]]:
    """Per flow, over the last ``days`` days (by call start): calls, outcomes, and how often each
    exit of each node was taken (from the calls' ``path``), in the current flow's node order; an
    exit of the current version never taken shows 0."""
    import sqlalchemy as sa

    from engine.storage.tables import calls as calls_table

    taken: dict[str, Counter] = {}
    calls_through: dict[str, Counter] = {}
    outcomes: dict[str, Counter] = {}
    totals: Counter = Counter()
    with service.db.reading() as tx:
        cutoff = tx.now() - timedelta(days=days)
        query = (sa.select(calls_table.c.flow, calls_table.c.state, calls_table.c.status, calls_table.c.outcome)
                 .where(calls_table.c.created_at >= cutoff))
        for name, state, status, outcome in tx.conn.execute(query):
            totals[name] += 1
            outcomes.setdefault(name, Counter())[outcome or ("in progress" if status == "active" else "none")] += 1
            seen = set()
            for pair in (state or {}).get("path") or ():
                if isinstance(pair, list | tuple) and len(pair) == 2:
                    key = (str(pair[0]), str(pair[1]))
                    taken.setdefault(name, Counter())[key] += 1
                    seen.add(key)
            for key in seen:
                calls_through.setdefault(name, Counter())[key] += 1
    out = []
    for name in sorted(set(service.flows.current) | set(totals)):
        flow = service.flows.current.get(name)
        counter = taken.get(name, Counter())
        through = calls_through.get(name, Counter())
        rows = []
        listed = set()
        if flow is not None:
            for node_id, node in flow.nodes.items():
                for exit_name, target in node.exits().items():
                    rows.append({"node": node_id, "exit": exit_name, "target": target,
                                 "taken": counter[(node_id, exit_name)], "calls": through[(node_id, exit_name)]})
                    listed.add((node_id, exit_name))
        for (node_id, exit_name), count in sorted(counter.items()):
            if (node_id, exit_name) not in listed:
                rows.append({"node": node_id, "exit": exit_name, "target": "(not in the running version)",
                             "taken": count, "calls": through[(node_id, exit_name)]})
        peak = max((r["taken"] for r in rows), default=0)
        ranked = sorted(outcomes.get(name, Counter()).items(), key=lambda item: (-item[1], item[0]))
        out.append({"name": name, "calls": totals[name], "peak": max(peak, 1), "outcomes": ranked, "exits": rows})
    return out


def counts_by_exit(service: Any, days: int) -> Mapping[str, Mapping[tuple[str, str], int]]:
    """``{flow: {(node, exit): times taken}}`` over the last ``days`` days (for scripts and tests)."""
    return {f["name"]: {(r["node"], r["exit"]): r["taken"] for r in f["exits"]} for f in exit_counts(service, days)}
