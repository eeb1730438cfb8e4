"""Helpers for the fake Hoiio tests: a notification receiver, an in-process transport, a clock.

Named uniquely (not ``conftest``) so that test modules can import it without clashing with other
folders' conftest modules.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

NOTIFY = "http://engine.test/hoiio/notify"


@dataclass(frozen=True)
class Post:
    path: str
    query: dict[str, str]
    body: bytes
    headers: Mapping[str, str]

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


class Receiver:
    """A tiny werkzeug server in a thread that records every request it gets."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.status = 200
        self._changed = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.root = f"http://127.0.0.1:{self._server.port}"

    @Request.application
    def _app(self, request: Request) -> Response:
        post = Post(request.path, dict(request.args), request.get_data(), dict(request.headers))
        with self._changed:
            self.posts.append(post)
            self._changed.notify_all()
        return Response("ok", status=self.status)

    def url(self, path: str = "/notify") -> str:
        return self.root + path

    def wait(self, count: int, timeout: float = 5.0) -> list[Post]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.posts) >= count, timeout):
                raise TimeoutError(f"{len(self.posts)} of {count} posts within {timeout}s")
            return list(self.posts)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Recorder:
    """An in-process transport: records each notification and answers 200, no sockets."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Mapping[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.sent.append((url, body, headers))
        return 200


class ManualClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
