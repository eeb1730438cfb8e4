"""WSGI entry for gunicorn: ``gunicorn engine.wsgi:app``.

Configuration problems print one line and stop the process instead of a traceback.
"""

from __future__ import annotations

import sys

from engine.config import ConfigError
from engine.registry import FlowLoadError
from engine.web import create_app

try:
    app = create_app()
except (ConfigError, FlowLoadError) as exc:
    print(f"ivr: cannot start: {exc}", file=sys.stderr)
    sys.exit(3)
