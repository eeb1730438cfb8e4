"""Wrong credentials, counted per client address, so a token cannot be guessed at the speed of the
server: after ``limit`` wrong tries within ``window_s`` seconds an address is refused (429 with
``Retry-After``) until its oldest try is ``window_s`` old, whatever it sends, the right token
included. Addresses are the client's own (``request.remote_addr``, corrected for the proxies that
``IVR_PROXY_HOPS`` trusts). Counts are kept per worker process, in memory: with N workers an
address gets at most N x ``limit`` tries per window. Used by the dashboard (login form and bearer
token) and the JSON API (bearer token).

May import Flask.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from flask import Flask, current_app, request

#: wrong tries allowed per address and window
LIMIT = 10
WINDOW_S = 300.0
#: addresses remembered at most (the least recently failed are forgotten first)
MAX_ADDRESSES = 10_000
EXTENSION_KEY = "ivr_failed_attempts"

log = logging.getLogger("engine.auth")


class FailedAttempts:
    def __init__(self, limit: int = LIMIT, window_s: float = WINDOW_S, *, max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.clock = clock
        self._tries: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int | None:
        """Seconds before ``address`` may try again, or None when it may try now."""
        with self._lock:
            tries = self._recent(address)
            if tries is None or len(tries) < self.limit:
                return None
            return max(1, math.ceil(tries[0] + self.window_s - self.clock()))

    def failed(self, address: str) -> None:
        """Count a wrong try from ``address``."""
        with self._lock:
            tries = self._recent(address)
            if tries is None:
                tries = self._tries[address] = deque()
                while len(self._tries) > self.max_addresses:
                    self._tries.popitem(last=False)
            tries.append(self.clock())
            self._tries.move_to_end(address)

    def _recent(self, address: str) -> deque[float] | None:
        tries = self._tries.get(address)
        if tries is None:
            return None
        cutoff = self.clock() - self.window_s
        while tries and tries[0] <= cutoff:
            tries.popleft()
        if not tries:
            del self._tries[address]
            return None
        return tries


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION_KEY] = FailedAttempts()


def wait_before_trying() -> int | None:
    """Seconds this request's client must wait before its token is looked at, or None."""
    return current_app.extensions[EXTENSION_KEY].retry_after(client_address())


def count_wrong_token(what: str) -> None:
    """Count a wrong token from this request's client, and log it (``what``: where it was sent)."""
    address = client_address()
    current_app.extensions[EXTENSION_KEY].failed(address)
    log.warning("%s: wrong token from %s", what, address)


def client_address() -> str:
    return request.remote_addr or "unknown"
