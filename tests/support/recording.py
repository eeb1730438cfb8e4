"""A recording stand-in for Hoiio's HTTP API, mounted as a requests transport adapter.

The real ``HoiioClient`` runs on top of it, so what is recorded is exactly what would go on the wire.
Answers are scripted per endpoint (default ``success_ok``).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import BaseAdapter


class RecordingAdapter(BaseAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._script: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def answer(self, endpoint: str, *statuses: str | dict | BaseException) -> None:
        """Queue answers for an endpoint such as ``ivr/middle/gather``."""
        for status in statuses:
            self._script[endpoint].append(status)

    def send(self, request, **kwargs):  # noqa: ARG002 - requests' adapter signature
        path = urlsplit(request.url).path
        endpoint = path.split("/open/", 1)[-1]
        body = request.body or ""
        if isinstance(body, bytes):
            body = body.decode()
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True)))
        with self._lock:
            self.requests.append((endpoint, params))
            scripted = self._script[endpoint].popleft() if self._script[endpoint] else "success_ok"
        if isinstance(scripted, BaseException):
            raise scripted
        payload = scripted if isinstance(scripted, dict) else {"status": scripted}
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass

    # helpers for assertions
    def endpoints(self) -> list[str]:
        return [e for e, _ in self.requests]

    def last(self) -> tuple[str, dict[str, str]]:
        return self.requests[-1]

    def session_factory(self):
        def factory() -> requests.Session:
            session = requests.Session()
            session.mount("http://", self)
            session.mount("https://", self)
            return session

        return factory
