"""Running a fake in the foreground: serve until SIGTERM or Ctrl-C, then stop it.

Standard library only.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def serve_until_stopped(fake: Any) -> None:
    """Block until SIGTERM or Ctrl-C, then ``fake.stop()``; the previous SIGTERM handler is restored."""
    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        fake.stop()
