"""``_corked``: what a pipelined transaction sends on a TCP connection leaves at once, at the end."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time

import pytest

from engine.storage.direct import _corked

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_CORK is Linux's")


class _Driver:
    """What ``_corked`` needs of a psycopg connection: its socket's file descriptor."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.fixture
def tcp_pair():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as libpq sets it
    try:
        yield client, peer
    finally:
        client.close()
        peer.close()


def _received(peer: socket.socket, within_s: float = 1.0) -> bytes:
    peer.settimeout(within_s)
    with contextlib.suppress(TimeoutError):
        return peer.recv(100)
    return b""


# The kernel sends corked bytes after 200 ms anyway: "nothing yet" is looked for well before that.
NOT_YET_S = 0.05


def test_what_is_sent_in_the_block_leaves_at_its_end(tcp_pair):
    client, peer = tcp_pair
    with _corked(_Driver(client)):
        sent_at = time.monotonic()
        client.send(b"BEGIN;")
        client.send(b"SELECT;")
        early = _received(peer, NOT_YET_S)
        # nothing before the end of the block, unless this test was held up past the kernel's 200 ms
        assert early == b"" or time.monotonic() - sent_at >= 0.2
    assert early + _received(peer) == b"BEGIN;SELECT;"
    client.send(b"after")  # the connection is left open, and uncorked
    assert _received(peer) == b"after"


def test_an_error_in_the_block_still_sends_what_was_written(tcp_pair):
    client, peer = tcp_pair
    with pytest.raises(RuntimeError), _corked(_Driver(client)):
        client.send(b"BEGIN;")
        raise RuntimeError("the statement failed")
    assert _received(peer) == b"BEGIN;"


def test_a_unix_socket_is_left_as_it_is():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        with _corked(_Driver(left)):
            left.send(b"now")
            assert _received(right) == b"now"
        os.fstat(left.fileno())  # still open


def test_without_tcp_cork_nothing_is_held(tcp_pair, monkeypatch):
    # another system: the option's number would mean something else there, so it is never set
    monkeypatch.setattr("engine.storage.direct._TCP_CORK", None)
    client, peer = tcp_pair
    with _corked(_Driver(client)):
        client.send(b"now")
        assert _received(peer) == b"now"


def test_uncorking_releases_the_gil_and_corking_keeps_it(tcp_pair, monkeypatch):
    # un-corking delivers what was held (on loopback, inside the call): ctypes' CDLL releases the GIL
    # around its calls, PyDLL (and socket.setsockopt) would keep the worker's other threads waiting.
    # Corking does no I/O: releasing the GIL for it only lets another thread take it meanwhile.
    import ctypes

    from engine.storage import direct

    assert type(direct._LIBC) is ctypes.CDLL and type(direct._LIBC_HOLDING) is ctypes.PyDLL
    used = []

    class Spy:
        def __init__(self, name, lib):
            self.name, self.lib = name, lib

        def setsockopt(self, *args):
            used.append((self.name, args[3] is direct._ON_REF))
            return self.lib.setsockopt(*args)

    monkeypatch.setattr(direct, "_LIBC", Spy("releasing", direct._LIBC))
    monkeypatch.setattr(direct, "_LIBC_HOLDING", Spy("holding", direct._LIBC_HOLDING))
    client, peer = tcp_pair
    with _corked(_Driver(client)):
        client.send(b"x")
    assert used == [("holding", True), ("releasing", False)]
    assert _received(peer) == b"x"


def test_only_a_tcp_socket_takes_the_option(tcp_pair):
    from engine.storage.direct import _set_cork

    client, _peer = tcp_pair
    assert _set_cork(client.fileno(), 1) and _set_cork(client.fileno(), 0)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert not _set_cork(left.fileno(), 1)
