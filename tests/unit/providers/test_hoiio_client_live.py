"""HoiioClient against a real HTTP server on 127.0.0.1: genuine read timeouts, dropped and refused
connections, with the real clock and sleep (short timeouts keep this under a few seconds)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from engine.core.actions import Block
from engine.providers.hoiio.client import HoiioClient

TOKEN = "live-SECRET-token"
NOTIFY = "https://ivr.example.com/hoiio/notify/f?step=1&sig=x"


class FakeHoiio(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "ok"  # ok | slow | drop
        self.hits: Counter[str] = Counter()
        self.bodies: list[dict[str, list[str]]] = []
        self.release = threading.Event()  # ends "slow" handlers at teardown
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        pass  # the client hanging up on a slow handler is expected here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/open"


class Handler(BaseHTTPRequestHandler):
    server: FakeHoiio

    def log_message(self, format, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        endpoint = self.path.split("/open/", 1)[-1]
        with self.server.lock:
            self.server.hits[endpoint] += 1
            self.server.bodies.append(parse_qs(body.decode()))
        if self.server.mode == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.server.mode == "slow":
            self.server.release.wait(3.0)
        payload = json.dumps({"status": "success_ok", "txn_ref": "AA-1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[FakeHoiio]:
    srv = FakeHoiio()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def client_for(url: str, **kwargs) -> HoiioClient:
    kwargs.setdefault("read_timeout", 0.3)
    kwargs.setdefault("connect_timeout", 0.3)
    kwargs.setdefault("budget", 1.5)
    return HoiioClient(url, "AP-1", TOKEN, **kwargs)


PLAY = Block(kind="play", params=(("msg", "Hello"),), step=1, node="n")
GATHER = Block(kind="gather", params=(("msg", "Press 1"), ("max_digits", "1")), step=1, node="n")
HANGUP = Block(kind="hangup", params=(), step=1, node="n")


def test_success_over_real_http(server):
    client = client_for(server.url)
    result = client.send_block(PLAY, session="S1", notify_url=NOTIFY)
    client.close()
    assert result.ok and result.data["txn_ref"] == "AA-1"
    assert server.hits["ivr/middle/play"] == 1
    assert server.bodies[0]["access_token"] == [TOKEN]
    assert server.bodies[0]["session"] == ["S1"]


def test_read_timeout_on_play_is_not_resent(server):
    server.mode = "slow"
    client = client_for(server.url)
    started = time.monotonic()
    result = client.send_block(PLAY, session="S1", notify_url=NOTIFY)
    took = time.monotonic() - started
    client.close()
    assert (result.ok, result.status, result.maybe_delivered, result.attempts) == (False, "error_timeout", True, 1)
    assert server.hits["ivr/middle/play"] == 1
    assert took < 1.5
    assert TOKEN not in (result.error or "")


def test_read_timeout_on_hangup_is_retried_within_the_budget(server):
    server.mode = "slow"
    client = client_for(server.url, rng=lambda: 0.0)
    started = time.monotonic()
    result = client.send_block(HANGUP, session="S1", notify_url=NOTIFY)
    took = time.monotonic() - started
    client.close()
    assert result.status == "error_timeout" and result.maybe_delivered and result.resent
    assert server.hits["ivr/end/hangup"] >= 2
    assert result.attempts == server.hits["ivr/end/hangup"]
    assert took < 1.5 + 0.3  # the budget, plus at most one connect on the last attempt


def test_dropped_connection_on_gather_is_not_resent(server):
    server.mode = "drop"
    client = client_for(server.url)
    result = client.send_block(GATHER, session="S1", notify_url=NOTIFY)
    client.close()
    assert (result.ok, result.status, result.maybe_delivered, result.attempts) == (
        False, "error_connection", True, 1,
    )
    assert server.hits["ivr/middle/gather"] == 1
    assert "SECRET" not in (result.error or "")


def test_dropped_connection_on_hangup_is_retried(server):
    server.mode = "drop"
    client = client_for(server.url, rng=lambda: 0.0, max_attempts=3)
    result = client.send_block(HANGUP, session="S1", notify_url=None)
    client.close()
    assert result.attempts == 3 and server.hits["ivr/end/hangup"] == 3


def test_connection_refused_is_retried_and_never_delivered():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on ``port`` any more.
    client = client_for(f"http://127.0.0.1:{port}/open", rng=lambda: 0.0, max_attempts=3)
    started = time.monotonic()
    result = client.send_block(PLAY, session="S1", notify_url=NOTIFY)
    took = time.monotonic() - started
    client.close()
    assert (result.status, result.attempts, result.maybe_delivered) == ("error_connection", 3, False)
    assert took < 1.5
