"""Logs and metrics.

Logs: one JSON line per event (``IVR_LOG_FORMAT=json``, the default; ``text`` for humans), with
session, txn_ref, flow, node and outcome. Phone numbers are masked (``+65****4567``) unless
``IVR_LOG_NUMBERS=1``; collected digits are never logged; access tokens never reach a log line.

Metrics: Prometheus via ``prometheus-client``. Under gunicorn set ``PROMETHEUS_MULTIPROC_DIR`` (the
gunicorn config in ``deploy/`` wipes it at start and marks dead workers) so ``/metrics`` sums every
worker. Labels never carry phone numbers or session ids.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prom_multiprocess

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # multiprocess mode writes one file per process; the directory must exist before any metric does
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

NOTIFICATIONS = Counter(
    "ivr_notifications_total", "Notifications received, by Hoiio block and outcome", ["block", "outcome"]
)
REFUSED = Counter("ivr_refused_notifications_total", "Notifications refused (403/4xx), by reason", ["reason"])
WEBHOOK_SECONDS = Histogram(
    "ivr_webhook_seconds", "Time to handle one notification, including sending the next block", ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROVIDER_SECONDS = Histogram(
    "ivr_provider_request_seconds", "Provider request latency", ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROVIDER_ERRORS = Counter("ivr_provider_errors_total", "Provider requests that failed, by status", ["status"])
FLOW_RELOADS = Counter("ivr_flow_reloads_total", "Flow folder reloads, by result", ["result"])
ACTIVE_SESSIONS = Gauge("ivr_active_sessions", "Calls in progress", multiprocess_mode="mostrecent")

_PHONE = re.compile(r"\+?\d[\d ]{5,}\d")


def mask_number(value: str | None) -> str | None:
    """``+6591234567`` -> ``+65*****567``: enough to tell calls apart, not enough to identify anyone."""
    if not value:
        return value
    if os.environ.get("IVR_LOG_NUMBERS") == "1":
        return value
    digits = value.strip()
    if len(digits) <= 6:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 6) + digits[-3:]


def mask_text(text: str) -> str:
    return _PHONE.sub(lambda m: mask_number(m.group(0)) or "", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        fields = getattr(record, "ivr", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["error"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(data, default=str)


def configure_logging() -> None:
    """Idempotent: one handler on the ``engine`` logger."""
    logger = logging.getLogger("engine")
    if any(getattr(h, "_ivr", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._ivr = True  # type: ignore[attr-defined]
    if os.environ.get("IVR_LOG_FORMAT", "json") == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("IVR_LOG_LEVEL", "INFO").upper())
    logger.propagate = False


def metrics_payload(active_sessions: int | None) -> bytes:
    if active_sessions is not None:
        ACTIVE_SESSIONS.set(active_sessions)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)
    return generate_latest()
