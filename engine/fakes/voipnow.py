"""A strict fake of VoipNow's UnifiedAPI phone calls, for conference invites: tests, demos, curl.

``FakeVoipNow`` holds one user with its extensions and the phone calls it has made. It checks every
request the way the UAPI documentation states (``Create ConferenceInvite PhoneCalls``, ``List
PhoneCalls``, ``Delete PhoneCalls``; see the shared Hoiio/VoipNow reference, section 9):

* ``Authorization: Bearer <token>`` (or the query ``accessRequestToken=Bearer <token>``), else
  401 ``access_denied``; the user in the path is ``@me``, ``@viewer``, ``@owner`` or the user's id,
  else 400 ``user_invalid``.
* ``POST /uapi/phoneCalls/{user}/conferenceInvite?number=&pin=&waitForPickup=`` with a JSON
  ``PhoneCall``: ``extension`` must be one of the user's ``Conference`` extensions (never ``@self``;
  missing means the source) -> ``extension_invalid``; ``phoneCallView[0].source`` must be that
  extension -> ``pc_source_invalid``; ``destination`` extension or public numbers ->
  ``pc_destination_invalid``; ``callerId`` like ``John Doe <+3334444>`` -> ``pc_callerid_invalid``;
  ``number`` digits -> ``pc_number_invalid``; ``pin`` digits -> ``pc_pin_invalid``; ``waitForPickup``
  a number > 0 -> ``pc_timeout_invalid``; ``callDuration`` a number > 0 -> ``pc_duration_invalid``.
  Accepted: 202 with ``[{"id", "extension", "link": {"self": ...}}]``, as in the documented example.
* ``GET /uapi/phoneCalls/{user}/{extension}[/{id}]``: the live phone calls as ``{"entry": [...],
  "startIndex", "totalResults", "itemsPerPage", "filtered", "sorted", "paging"}``; an ended call is
  no longer listed.
* ``DELETE /uapi/phoneCalls/{user}/{extension}[/{id}][?phoneNumber=]``: hangs up, 200 with the ids
  hung up, or 204 when nothing was live.
* Anything else under ``/uapi``: 501 ``request_not_implemented``.

Errors are ``{"error": {"code": ..., "message": ...}}``. Modelling choices where the docs are silent
are marked [I]: a body that is not a JSON PhoneCall gets 400 ``pc_phonecall_invalid``; an invited
person picks up at once unless ``script(destination, pickup=False)`` says otherwise, and then the
call rings until ``waitForPickup`` seconds (default 25) have passed and ends unanswered.

Usable in-process (``fake.wsgi_app.test_client()``) or over HTTP (``fake.start()`` -> the base URL
for ``VOIPNOW_URL``). ``python -m engine.fakes.voipnow --port 8002`` serves it for curl.

May import the standard library, ``engine.providers.voipnow.wire`` (the documented formats),
Flask and werkzeug.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from engine.fakes.serving import serve_until_stopped
from engine.providers.voipnow.wire import CALLER_ID_RE, CONFERENCE_NUMBER_RE, DESTINATION_RE, PIN_RE

__all__ = ["FakeVoipNow", "InviteRecord", "VoipNowRequest"]

DEFAULT_TOKEN = "fake-voipnow-token"  # noqa: S105 - a fake account's well-known token
DEFAULT_WAIT_FOR_PICKUP = 25
_INT_RE_MAX = 10**6


@dataclass(frozen=True)
class VoipNowRequest:
    """One request as the fake saw it (the token is never kept)."""

    time: float
    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    http_status: int
    response: Any


@dataclass
class InviteRecord:
    """A phone call created by a conference invite."""

    id: str
    extension: str
    destination: tuple[str, ...]
    caller_id: str | None
    conference_number: str | None
    pin: str | None
    wait_for_pickup: int
    created_at: float
    pickup: bool
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None  # hangup | no_answer
    extra: dict[str, Any] = field(default_factory=dict)

    def live(self, now: float) -> bool:
        if self.ended_at is not None:
            return False
        if not self.pickup and now >= self.created_at + self.wait_for_pickup:
            self.ended_at, self.end_reason = self.created_at + self.wait_for_pickup, "no_answer"
            return False
        return True


class _Refused(Exception):
    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.http_status = http_status
        self.code = code
        self.message = message


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class FakeVoipNow:
    """One fake VoipNow user.

    ``token``: the bearer token every request must carry. ``user_id``: the user's id (``@me``,
    ``@viewer`` and ``@owner`` mean the same user). ``extensions``: the user's extensions by number
    and type (``conference``, ``phone``, ...). ``foreign_extensions``: extensions of other users
    (refused as ``extension_invalid``). ``clock``: epoch seconds.

    Driving it from a test::

        fake = FakeVoipNow()
        url = fake.start()                     # VOIPNOW_URL; VOIPNOW_EXTENSION=211
        fake.script("+6591234567", pickup=False)
        ...                                    # the engine invites +6591234567
        [invite] = fake.invites.values()
        fake.stop()
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        user_id: str = "1",
        extensions: Mapping[str, str] | None = None,
        foreign_extensions: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        quiet: bool = True,
    ) -> None:
        self.token = token
        self.user_id = user_id
        self.extensions = dict(extensions or {"211": "conference", "210": "phone"})
        self.foreign_extensions = dict(foreign_extensions or {"311": "conference"})
        self._clock = clock
        self._quiet = quiet
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._invites: dict[str, InviteRecord] = {}
        self._scripts: list[tuple[str | None, bool]] = []
        self._faults: list[list[Any]] = []  # [http_status, code, times]
        self._log: list[VoipNowRequest] = []
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None
        self.wsgi_app = self._create_app()

    # ------------------------------------------------------------------------------ server
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve over HTTP in a daemon thread; returns the base URL (``http://H:P``) for VOIPNOW_URL."""
        if self._server is not None:
            raise RuntimeError("the fake is already serving")
        handler = _QuietHandler if self._quiet else WSGIRequestHandler
        server = make_server(host, port, self.wsgi_app, threaded=True, request_handler=handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-voipnow", daemon=True
        )
        self._thread.start()
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{server.port}"
        return self.base_url

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout)
            self._server = None

    def __enter__(self) -> FakeVoipNow:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ the world
    def script(self, destination: str | None = None, *, pickup: bool = True) -> None:
        """How the next person invited (``destination``, or anyone when None) behaves: ``pickup``
        False rings until ``waitForPickup`` runs out. Used once each, in order."""
        with self._lock:
            self._scripts.append((destination, pickup))

    def inject(self, http_status: int, code: str | None = None, *, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``http_status`` and error ``code`` (no body when
        None), whatever they ask."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append([http_status, code, times])

    def hang_up(self, phone_call_id: str) -> None:
        """The invited person hangs up."""
        with self._lock:
            invite = self._invites[phone_call_id]
            if invite.live(self._clock()):
                invite.ended_at, invite.end_reason = self._clock(), "hangup"

    @property
    def invites(self) -> dict[str, InviteRecord]:
        with self._lock:
            return dict(self._invites)

    @property
    def log(self) -> list[VoipNowRequest]:
        with self._lock:
            return list(self._log)

    # ------------------------------------------------------------------------------ HTTP
    def _create_app(self) -> Flask:
        app = Flask("engine.fakes.voipnow")
        app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app.add_url_rule("/uapi/<path:rest>", "uapi", self._dispatch, methods=methods)
        app.add_url_rule("/", "root", lambda: _error(404, "not_found", "the UAPI lives under /uapi"))
        return app

    def _dispatch(self, rest: str) -> Response:
        started = self._clock()
        body: Any = None
        try:
            with self._lock:
                fault = self._take_fault()
            if fault is not None:
                status, code = fault
                response = (
                    _error(status, code, "injected failure") if code else Response(status=status)
                )
            else:
                body = request.get_data(cache=True)
                response = self._route(rest)
        except _Refused as refused:
            response = _error(refused.http_status, refused.code, refused.message)
        try:
            shown_body: Any = json.loads(body) if body else None
        except ValueError:
            shown_body = body.decode("utf-8", "replace") if isinstance(body, bytes) else None
        query = {k: v for k, v in request.args.items() if k != "accessRequestToken"}
        answer = response.get_json(silent=True) if response.data else None
        with self._lock:
            self._log.append(
                VoipNowRequest(started, request.method, request.path, query, shown_body, response.status_code, answer)
            )
        return response

    def _take_fault(self) -> tuple[int, str | None] | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault[2] -= 1
        if fault[2] == 0:
            self._faults.pop(0)
        return fault[0], fault[1]

    def _route(self, rest: str) -> Response:
        parts = rest.split("/")
        if len(parts) < 2 or parts[0] != "phoneCalls":
            raise _Refused(501, "request_not_implemented", f"/uapi/{rest} is not implemented by this fake")
        self._authenticate()
        self._check_user(parts[1])
        if len(parts) == 3 and parts[2] == "conferenceInvite":
            if request.method != "POST":
                raise _Refused(501, "request_not_implemented", "conferenceInvite phone calls are created with POST")
            return self._invite()
        if len(parts) in (3, 4) and request.method in ("GET", "DELETE"):
            extension = parts[2]
            if extension not in self.extensions:
                raise _Refused(400, "extension_invalid", f"extension {extension!r} is not one of the user's")
            phone_call_id = parts[3] if len(parts) == 4 else None
            if request.method == "GET":
                return self._list(extension, phone_call_id)
            return self._delete(extension, phone_call_id, request.args.get("phoneNumber"))
        raise _Refused(501, "request_not_implemented", f"{request.method} /uapi/{rest} is not implemented")

    def _authenticate(self) -> None:
        header = request.headers.get("Authorization", "")
        if not header:
            header = request.args.get("accessRequestToken", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Refused(401, "access_denied", "a bearer token is required (Authorization: Bearer <token>)")
        if not hmac.compare_digest(token.strip().encode(), self.token.encode()):
            raise _Refused(401, "access_denied", "the access token is invalid or expired")

    def _check_user(self, user: str) -> None:
        if user not in ("@me", "@viewer", "@owner", self.user_id):
            raise _Refused(400, "user_invalid", f"user {user!r} is not the authenticated user")

    def _invite(self) -> Response:
        try:
            payload = json.loads(request.get_data(cache=True) or b"null")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise _Refused(400, "pc_phonecall_invalid", "the request payload must be a JSON PhoneCall object")
        views = payload.get("phoneCallView")
        view = views[0] if isinstance(views, list) and len(views) == 1 and isinstance(views[0], dict) else None
        source = view.get("source") if view is not None else None
        source_ext = source[0] if isinstance(source, list) and len(source) == 1 else None
        extension = payload.get("extension", source_ext)
        if not isinstance(extension, str) or extension == "@self" or self.extensions.get(extension) != "conference":
            raise _Refused(400, "extension_invalid",
                           "extension must be one of the user's Conference extensions")  # fmt: skip
        if view is None or not isinstance(source_ext, str) or source_ext != extension:
            raise _Refused(400, "pc_source_invalid", "source must be the Conference extension")
        destination = view.get("destination")
        if (
            not isinstance(destination, list)
            or not destination
            or not all(isinstance(d, str) and DESTINATION_RE.fullmatch(d) for d in destination)
        ):
            raise _Refused(400, "pc_destination_invalid", "destination must list extension or public numbers")
        caller_id = view.get("callerId")
        if caller_id is not None and not (isinstance(caller_id, str) and CALLER_ID_RE.fullmatch(caller_id)):
            raise _Refused(400, "pc_callerid_invalid", "callerId must look like: John Doe <+3334444>")
        args = request.args
        number = args.get("number")
        if number is not None and not CONFERENCE_NUMBER_RE.fullmatch(number):
            raise _Refused(400, "pc_number_invalid", "number must be the scheduled conference's number")
        pin = args.get("pin")
        if pin is not None and not PIN_RE.fullmatch(pin):
            raise _Refused(400, "pc_pin_invalid", "pin must be the scheduled conference's PIN")
        wait = _positive(args.get("waitForPickup"), "pc_timeout_invalid", "waitForPickup")
        _positive(args.get("callDuration"), "pc_duration_invalid", "callDuration")
        now = self._clock()
        with self._lock:
            pickup = self._take_script(tuple(destination))
            phone_call_id = hashlib.sha1(f"fake-voipnow-{next(self._ids)}".encode()).hexdigest()[:20]  # noqa: S324
            invite = InviteRecord(
                id=phone_call_id, extension=extension, destination=tuple(destination), caller_id=caller_id,
                conference_number=number, pin=pin, wait_for_pickup=wait or DEFAULT_WAIT_FOR_PICKUP,
                created_at=now, pickup=pickup, answered_at=now if pickup else None,
            )  # fmt: skip
            self._invites[phone_call_id] = invite
        link = f"{request.host_url.rstrip('/')}/uapi/phoneCalls/@me/{extension}/{phone_call_id}"
        return _json([{"id": phone_call_id, "extension": extension, "link": {"self": link}}], 202)

    def _take_script(self, destination: tuple[str, ...]) -> bool:
        for wanted in (*destination, None):
            for index, (dest, pickup) in enumerate(self._scripts):
                if dest == wanted:
                    del self._scripts[index]
                    return pickup
        return True

    def _list(self, extension: str, phone_call_id: str | None) -> Response:
        now = self._clock()
        with self._lock:
            live = [
                i for i in self._invites.values()
                if i.extension == extension and i.live(now) and phone_call_id in (None, i.id)
            ]  # fmt: skip
            entries = [self._phone_call(i) for i in live]
        return _json({
            "entry": entries,
            "startIndex": 0,
            "totalResults": len(entries),
            "itemsPerPage": 20,
            "filtered": phone_call_id is not None,
            "sorted": False,
            "paging": {},
        }, 200)  # fmt: skip

    def _delete(self, extension: str, phone_call_id: str | None, phone_number: str | None) -> Response:
        now = self._clock()
        hung_up: list[dict[str, str]] = []
        with self._lock:
            for invite in self._invites.values():
                if invite.extension != extension or phone_call_id not in (None, invite.id) or not invite.live(now):
                    continue
                if phone_number is not None and phone_number not in invite.destination:
                    continue  # a number not in the call: nothing is hung up
                invite.ended_at, invite.end_reason = now, "hangup"
                hung_up.append({"id": invite.id})
        if not hung_up:
            return Response(status=204)
        return _json(hung_up, 200)

    def _phone_call(self, invite: InviteRecord) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": "00",
            "extension": invite.extension,
            "status": "5" if invite.answered_at is not None else "4",
            "source": [invite.extension],
            "destination": list(invite.destination),
            "flow": "4",
        }
        if invite.caller_id:
            view["callerId"] = invite.caller_id
        call: dict[str, Any] = {
            "id": invite.id,
            "extension": invite.extension,
            "ownerId": self.user_id,
            "ownerName": "Fake Organization",
            "published": _iso(invite.created_at),
            "phoneCallView": [view],
        }
        if invite.answered_at is not None:
            view["answered"] = call["answered"] = _iso(invite.answered_at)
        return call


def _positive(raw: str | None, code: str, name: str) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < _INT_RE_MAX:
        raise _Refused(400, code, f"{name} must be a number higher than 0")
    return int(raw)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _json(data: Any, status: int) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.fakes.voipnow", description="Serve a fake VoipNow UAPI.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args(argv)
    fake = FakeVoipNow(args.token)
    url = fake.start(args.host, args.port)
    print(f"VOIPNOW_URL={url}\nVOIPNOW_TOKEN={args.token}\nVOIPNOW_EXTENSION=211", flush=True)
    serve_until_stopped(fake)


if __name__ == "__main__":
    main()
