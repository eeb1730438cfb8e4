"""gunicorn settings for the IVR webhook server: ``gunicorn -c deploy/gunicorn.conf.py engine.wsgi:app``.

Sized from the CPU count; the webhook calls out to Hoiio (a few seconds' budget at most), so
threads keep a worker responsive while one request waits on the provider. Each worker opens its
own database pool and HTTP session after the fork (``post_fork``), never sharing connections.
"""

import multiprocessing
import os

bind = os.environ.get("IVR_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("IVR_WORKERS", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("IVR_THREADS", 4))
worker_class = "gthread"
# Provider budget is ~6 s and an http step at most 10 s: 30 s leaves room, and a stuck worker is
# still killed well before a caller gives up.
timeout = int(os.environ.get("IVR_WORKER_TIMEOUT", 30))
graceful_timeout = int(os.environ.get("IVR_GRACEFUL_TIMEOUT", 20))  # finish in-flight notifications
keepalive = 5
# Recycling a worker (gunicorn's ``max_requests``) is off unless IVR_MAX_REQUESTS is set. A new
# worker loads the app for about a second of CPU, and under load the callers waiting meanwhile
# pay for it: at 200 notifications/s on 2 cores, p99 389 ms with a recycle every 5,000 requests
# against 25 ms without. A worker's memory levels off instead (79 -> 81 MB over 29,000
# notifications; bench/README.md). Set it as a safety net if a library of yours leaks.
max_requests = int(os.environ.get("IVR_MAX_REQUESTS", 0))
max_requests_jitter = max_requests // 10
preload_app = False  # load the app in each worker: no connection created before the fork survives it
# gunicorn's access log (a line per HTTP request) only when IVR_ACCESS_LOG names where ("-": stdout):
# every notification already has its JSON line from the engine, and nginx logs every request. Under
# load the second line per notification cost a worker about 3% of its Python time.
accesslog = os.environ.get("IVR_ACCESS_LOG") or None
errorlog = "-"
forwarded_allow_ips = os.environ.get("IVR_FORWARDED_ALLOW_IPS", "127.0.0.1")



def on_starting(server):
    """Wipe the Prometheus multiprocess directory: figures from a previous run must not leak in."""
    import shutil

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    size_worker_connections(server)


def on_reload(server):
    size_worker_connections(server)


def size_worker_connections(server):
    """A worker takes a new connection only while it has a thread for it (``engine.config.
    worker_connections``: its threads + 1, or ``IVR_WORKER_CONNECTIONS``); the others wait in the
    kernel's queue for whichever worker frees a thread first. With gunicorn's default of 1000, a busy
    worker kept accepting and queued notifications behind its own threads while the other worker
    could have answered them (bench/README.md: closed loop on PostgreSQL, p99 lower in each of seven
    alternating pairs, by 4-51%). Set here, once ``--threads`` from the command line is known;
    ``--worker-connections`` there wins. A bad IVR_WORKER_CONNECTIONS stops the start with one line."""
    from gunicorn.config import WorkerConnections

    from engine.config import ConfigError, worker_connections

    if server.cfg.worker_connections != WorkerConnections.default:
        return
    try:
        wanted = worker_connections(os.environ, server.cfg.threads)
    except ConfigError as exc:
        server.log.error("%s", exc)
        raise SystemExit(1) from None
    server.cfg.set("worker_connections", wanted)


def when_ready(server):
    """Warn when PostgreSQL would refuse some of the connections the workers may open."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return
    try:
        from engine.config import db_pool_size
        from engine.storage.db import connection_shortfall

        warning = connection_shortfall(url, workers=server.cfg.workers,
                                       pool_size=db_pool_size(os.environ, server.cfg.threads))
    except Exception as exc:  # noqa: BLE001 - a check: the server starts anyway
        server.log.warning("could not compare the workers' connections with PostgreSQL's limit: %s", exc)
        return
    if warning:
        server.log.warning(warning)


def post_fork(server, worker):  # noqa: ARG001 - gunicorn hook signature
    """The worker's database pool is sized from ``IVR_THREADS`` (one connection per request thread):
    set it to the threads this worker really runs, ``--threads`` on the command line included."""
    os.environ["IVR_THREADS"] = str(worker.cfg.threads)


def post_worker_init(worker):
    """On SIGTERM (graceful shutdown) /readyz turns 503 at once, while in-flight notifications finish."""
    import signal

    from engine.web.health import begin_shutdown

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        begin_shutdown()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def child_exit(server, worker):  # noqa: ARG001 - gunicorn hook signature
    """Mark a dead worker's metrics so gauges stop counting it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
