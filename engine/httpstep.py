"""Performs a flow's ``http`` step: the business's own API, called mid-call.

Guards against server-side request forgery through a flow file: unless explicitly allowed
(``IVR_HTTP_ALLOW_PRIVATE=1``), the host must resolve only to public addresses, never loopback,
link-local, private or reserved ones. Redirects are not followed, responses are capped in size and
the timeout is the node's own (at most 10 s).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from urllib.parse import urlsplit

import requests

from engine.core.actions import HttpCall
from engine.core.events import HttpResult

MAX_RESPONSE_BYTES = 256 * 1024


class BlockedAddress(Exception):
    pass


def _check_public(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedAddress(f"only http:// and https:// URLs may be called (got {url!r})")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise BlockedAddress(f"cannot resolve {parts.hostname}: {exc.strerror}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise BlockedAddress(
                f"{parts.hostname} resolves to {address}, a private or local address; "
                "set IVR_HTTP_ALLOW_PRIVATE=1 to allow it"
            )


class HttpStepRunner:
    def __init__(self, *, allow_private: bool = False, session: requests.Session | None = None) -> None:
        self.allow_private = allow_private
        self._session = session

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
        return self._session

    def run(self, call: HttpCall) -> HttpResult:
        try:
            if not self.allow_private:
                _check_public(call.url)
            response = self.session.request(
                call.method,
                call.url,
                headers=dict(call.headers),
                json=call.json if call.method != "GET" else None,
                params=dict(call.params) if call.params else None,
                timeout=min(float(call.timeout), 10.0),
                allow_redirects=False,
                stream=True,
            )
            try:
                raw = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            finally:
                response.close()
            if len(raw) > MAX_RESPONSE_BYTES:
                return HttpResult(call.step, response.status_code, None, "response larger than 256 KiB")
            data = None
            if raw:
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
            return HttpResult(call.step, response.status_code, data, None)
        except BlockedAddress as exc:
            return HttpResult(call.step, None, None, str(exc))
        except requests.Timeout:
            return HttpResult(call.step, None, None, f"no answer within {call.timeout} s")
        except requests.RequestException as exc:
            return HttpResult(call.step, None, None, f"request failed: {type(exc).__name__}")
