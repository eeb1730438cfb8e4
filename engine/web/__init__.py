"""Flask application factory.

``create_app()`` reads ``Settings`` from the environment (or takes them ready-made in tests), opens
the database (migrating a new SQLite file), loads and checks every flow once, and wires the
service. Blueprints stay thin: they turn HTTP into ``engine.service.Inbound`` and back into JSON.
"""

from __future__ import annotations

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
    flows = flows or FlowRegistry.load(settings.flows_dir)
    db = db or Database.open(settings.database_url)
    client = client or HoiioClient(settings.hoiio_api_url, settings.hoiio_app_id, settings.hoiio_access_token)
    kwargs: dict[str, Any] = {}
    if http is not None:
        kwargs["http"] = http
    if now is not None:
        kwargs["now"] = now
    service = CallService(settings, db, flows, client, **kwargs)
    service.remember_flow_versions()
    if settings.recovery_interval > 0:
        _start_recovery(service, settings.recovery_interval)

    configure_logging()
    app = Flask(__name__)
    if settings.proxy_hops:
        # Behind nginx: take scheme, host and client address from X-Forwarded-* set by exactly
        # this many proxies, so URLs and source-network checks see what the client sent.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops,
                                x_host=settings.proxy_hops)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ivr"] = service

    from engine.web import health, webhooks

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    webhooks.register_error_handlers(app)
    logging.getLogger("engine").setLevel(logging.INFO)
    return app


def _start_recovery(service: CallService, interval: float) -> None:
    """Resend blocks whose sending was interrupted (see ``CallService.recover_stuck_blocks``).
    Runs in every worker; each block is claimed atomically, so only one sends it."""
    import threading

    log = logging.getLogger("engine.recovery")

    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(interval):
            try:
                service.recover_stuck_blocks(older_than_seconds=max(interval, 10.0))
            except Exception:  # the loop must survive database blips
                log.exception("recovery pass failed")

    threading.Thread(target=loop, name="ivr-recovery", daemon=True).start()


def service_of(app: Flask) -> CallService:
    return app.extensions["ivr"]
