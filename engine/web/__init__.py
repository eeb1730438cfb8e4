"""Flask application factory.

``create_app()`` reads ``Settings`` from the environment (or takes them ready-made in tests), opens
the database (migrating a new SQLite file), loads and checks every flow once, and wires the
service. Blueprints stay thin: they turn HTTP into ``engine.service.Inbound`` and back into JSON.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flask import Flask

from engine.config import Settings
from engine.observability import configure_logging
from engine.registry import FlowRegistry
from engine.service import CallService


def create_app(
    settings: Settings | None = None,
    *,
    db: Any = None,
    client: Any = None,
    flows: FlowRegistry | None = None,
    http: Any = None,
    now: Any = None,
) -> Flask:
    from engine.providers.hoiio.client import HoiioClient
    from engine.storage.repository import Database

    settings = settings or Settings.from_env()
    db = db or Database.open(settings.database_url, pool_size=settings.db_pool_size)
    flows = flows or FlowRegistry.load(settings.flows_dir, stored=db.flow_versions)
    client = client or HoiioClient(settings.hoiio_api_url, settings.hoiio_app_id, settings.hoiio_access_token)
    kwargs: dict[str, Any] = {}
    if http is not None:
        kwargs["http"] = http
    if now is not None:
        kwargs["now"] = now
    service = CallService(settings, db, flows, client, **kwargs)
    service.remember_flow_versions()
    if settings.recovery_interval > 0:
        _start_recovery(service, settings.recovery_interval, settings.recovery_after)

    configure_logging()
    app = Flask(__name__)
    if settings.proxy_hops:
        # Behind nginx: take scheme, host and client address from X-Forwarded-* set by exactly
        # this many proxies, so URLs and source-network checks see what the client sent.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops,
                                x_host=settings.proxy_hops)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Signs the dashboard's session cookie; derived so every worker of a deployment agrees.
    app.secret_key = hashlib.sha256(f"ivr-admin-session|{settings.step_secret}".encode()).hexdigest()
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ivr"] = service

    _install_reload_triggers(app, service, settings)

    from engine.web import health, throttle, webhooks

    throttle.init_app(app)  # wrong tokens counted per client address (API and dashboard)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    from engine.web import api

    api.init_app(app)  # /api and /hoiio/events; also stores the flows' side calls (conference nodes)
    from engine.web import admin

    admin.init_app(app)  # /admin: the dashboard (off without IVR_ADMIN_TOKEN)
    webhooks.register_error_handlers(app)
    logging.getLogger("engine").setLevel(logging.INFO)
    return app


def reload_stamp(settings: Settings):
    """The file ``ivr reload`` touches; every worker watches it."""
    import os
    from pathlib import Path

    return Path(os.environ.get("IVR_RELOAD_STAMP") or Path(settings.flows_dir) / ".reload")


def _install_reload_triggers(app: Flask, service: CallService, settings: Settings) -> None:
    """``ivr reload`` (touches the stamp file) and SIGHUP (to this process) reload the flows.

    Workers look at the stamp at most once a second, before a request: no thread, no polling cost
    when idle, and every gunicorn worker (on every machine sharing the folder) picks it up."""
    import contextlib
    import signal
    import threading
    import time

    stamp = reload_stamp(settings)
    pending = threading.Event()
    state = {"checked": 0.0, "mtime": _mtime(stamp)}
    lock = threading.Lock()

    def on_hup(signum, frame):  # noqa: ARG001 - signal handler signature
        pending.set()

    if threading.current_thread() is threading.main_thread():
        # not allowed everywhere (e.g. embedded): the stamp file still works
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGHUP, on_hup)

    @app.before_request
    def _maybe_reload():
        now = time.monotonic()
        if not pending.is_set() and now - state["checked"] < settings.reload_check_interval:
            return None
        with lock:
            state["checked"] = now
            mtime = _mtime(stamp)
            if pending.is_set() or mtime != state["mtime"]:
                pending.clear()
                state["mtime"] = mtime
                service.reload_flows()
        return None


def _mtime(path) -> float | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _start_recovery(service: CallService, interval: float, after: float) -> None:
    """Resend blocks whose sending was interrupted (see ``CallService.recover_stuck_blocks``).
    Runs in every worker; each block is claimed atomically, so only one sends it."""
    import threading

    log = logging.getLogger("engine.recovery")

    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(interval):
            try:
                service.recover_stuck_blocks(older_than_seconds=after)
            except Exception:  # the loop must survive database blips
                log.exception("recovery pass failed")

    threading.Thread(target=loop, name="ivr-recovery", daemon=True).start()


def service_of(app: Flask) -> CallService:
    return app.extensions["ivr"]
