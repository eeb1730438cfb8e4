"""Strict fake providers for tests, demos and ``ivr try``.

``FakeHoiio`` serves the Hoiio REST API (IVR blocks, voice, conference) from memory, checks every
request against the documented rules, and plays scripted callers (``CallerScript``) that post signed
notifications back. See ``engine.fakes.hoiio``.

May import ``engine.core``, ``engine.providers.hoiio.signature``, Flask/werkzeug and requests; nothing
in the serving engine imports this package: only the CLI (demo, try, fake-hoiio) and tests do.
"""

from engine.fakes.hoiio import FakeHoiio
from engine.fakes.hoiio_calls import (
    CallerScript,
    CallLimitReached,
    CallSnapshot,
    ConnectionDropped,
    NotificationRecord,
    RequestRecord,
    SessionSnapshot,
)
from engine.fakes.hoiio_rules import STATUSES, Status

__all__ = [
    "STATUSES",
    "CallLimitReached",
    "CallSnapshot",
    "CallerScript",
    "ConnectionDropped",
    "FakeHoiio",
    "NotificationRecord",
    "RequestRecord",
    "SessionSnapshot",
    "Status",
]
