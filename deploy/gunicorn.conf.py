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
max_requests = 5000  # recycle workers slowly to bound memory
max_requests_jitter = 500
preload_app = False  # load the app in each worker: no connection created before the fork survives it
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("IVR_FORWARDED_ALLOW_IPS", "127.0.0.1")

