"""The fake Hoiio stays faithful when its client dies: a block it carried out still posts its
notification, even if the process that sent it was killed before reading the answer.

(The worker-kill test depends on this: real Hoiio carries a block out and notifies whatever happened
to the HTTP client. The fake used to start its notification timers only when werkzeug closed the
response, which it skips when the dead client's socket resets under it: the call then waited forever
for a notification that never came.)
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode, urlsplit

import pytest
from fault_support import APP_ID, HOST, TOKEN, new_fake

from engine.fakes import FakeHoiio


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    """A receiver that answers 200 to every notification."""
    server = ThreadingHTTPServer((HOST, 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def lone_fake() -> Iterator[FakeHoiio]:
    fake = new_fake()
    try:
        yield fake
    finally:
        fake.stop()


def _send_and_vanish(api_url: str, fields: dict[str, str]) -> None:
    """POST a block, wait until the answer has arrived, then close without reading it: the kernel
    resets the connection (as when a gunicorn worker is killed with the answer in its buffer)."""
    parts = urlsplit(api_url)
    body = urlencode(fields).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(b"POST /open/ivr/middle/play HTTP/1.1\r\nHost: fake\r\nContent-Type: "
                     b"application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(body) + body)  # fmt: skip
        sock.recv(1, socket.MSG_PEEK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_block_carried_out_for_a_vanished_client_still_notifies(lone_fake: FakeHoiio, sink: str) -> None:
    fake = lone_fake
    assert fake.base_url is not None
    for n in range(10):
        sid = fake.incoming_call(f"{sink}/answer")
        fake.wait_ready(sid, timeout=5)
        _send_and_vanish(fake.base_url, {"app_id": APP_ID, "access_token": TOKEN, "session": sid,
                                         "msg": f"hello {n}", "notify_url": f"{sink}/notify"})  # fmt: skip
        posted = fake.wait_for_notifications(1, timeout=5, where=lambda r, sid=sid: r.session == sid
                                             and r.fields.get("ivr_block") == "play")  # fmt: skip
        assert posted[0].http_status == 200
        assert not fake.sessions[sid].waiting
