"""WSGI entry for gunicorn: ``gunicorn engine.wsgi:app``.

Configuration problems print one line and stop the process instead of a traceback.

Once the app is built, everything it allocated (compiled flows, templates, SQLAlchemy's and Flask's
machinery) is moved out of the garbage collector's sight (``gc.freeze``): those objects live as long
as the worker, and a full collection walking all of them paused every thread of the worker for
30 ms or more a few times a minute, which showed as the slowest notifications.
"""

from __future__ import annotations

import gc
import sys

from engine.config import ConfigError
from engine.registry import FlowLoadError
from engine.web import create_app

try:
    app = create_app()
except (ConfigError, FlowLoadError) as exc:
    print(f"ivr: cannot start: {exc}", file=sys.stderr)
    sys.exit(3)

gc.collect()
gc.freeze()
