"""The API over real HTTP: the engine served on 127.0.0.1, the fake Hoiio and the fake VoipNow
started with ``.start()``, the engine's clients pointed at them, notifications posted back to the
engine's own URL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from engine.config import Settings
from engine.fakes import CallerScript, FakeHoiio
from engine.fakes.voipnow import FakeVoipNow
from engine.providers.hoiio.client import HoiioClient
from engine.registry import FlowRegistry
from engine.storage import Database
from engine.web import create_app

FLOWS = Path(__file__).parent / "flows"
APP_ID = "api-test-app"
HOIIO_TOKEN = "api-test-hoiio-token"
API_TOKEN = "api-test-token"
VOIPNOW_TOKEN = "api-test-voipnow-token"


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class EngineServer:
    """Serves a WSGI app chosen after the port is known (the app needs its own public URL)."""

    def __init__(self) -> None:
        self.app: Any = None
        self._server = make_server("127.0.0.1", 0, self._dispatch, threaded=True, request_handler=_Quiet)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="engine-under-test", daemon=True)  # fmt: skip
        self._thread.start()

    def _dispatch(self, environ: dict, start_response: Callable) -> Any:
        return self.app(environ, start_response)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class World:
    """The engine, both fakes, and helpers to call the API and wait for notifications."""

    def __init__(self, database_url: str, flows_dir: Path = FLOWS, *, api_token: str | None = API_TOKEN,
                 voipnow: bool = True, voipnow_clock: Callable[[], float] = time.time,
                 **overrides: Any) -> None:  # fmt: skip
        self.hoiio = FakeHoiio(APP_ID, HOIIO_TOKEN)
        hoiio_url = self.hoiio.start()
        self.voipnow = FakeVoipNow(VOIPNOW_TOKEN, clock=voipnow_clock)
        voipnow_url = self.voipnow.start()
        self.server = EngineServer()
        self.url = self.server.url
        extra: dict[str, Any] = {}
        if voipnow:
            extra = {"voipnow_url": voipnow_url, "voipnow_token": VOIPNOW_TOKEN, "voipnow_extension": "211"}
        self.settings = Settings(
            hoiio_app_id=APP_ID, hoiio_access_token=HOIIO_TOKEN, hoiio_api_url=hoiio_url, database_url=database_url,
            flows_dir=flows_dir, public_url=self.url, recovery_interval=0, api_token=api_token,
            **{**extra, **overrides},
        )  # fmt: skip
        self.db = Database.open(database_url, auto_migrate=True)
        # retries without sleeping, so refusals Hoiio repeats come back at once
        client = HoiioClient(hoiio_url, APP_ID, HOIIO_TOKEN, sleep=lambda _s: None)
        self.app = create_app(self.settings, db=self.db, client=client, flows=FlowRegistry.load(flows_dir))
        self.server.app = self.app
        self.outbound = self.app.extensions["ivr_outbound"]
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {API_TOKEN}"

    def close(self) -> None:
        self.hoiio.stop()
        self.voipnow.stop()
        self.server.stop()
        self.http.close()
        self.db.dispose()

    # -- the API ------------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.url + path, timeout=15, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.api("POST", path, json=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.api("GET", path, **kwargs)

    # -- the simulated world ------------------------------------------------------------------------
    def script(self, dest: str | None = None, **script: Any) -> None:
        self.hoiio.script_outbound(CallerScript(**script), dest=dest)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the fake Hoiio has posted everything due and the engine has answered it."""
        # The fake schedules notifications once its answer has been written, which can be a moment
        # after our client has read it.
        time.sleep(0.05)
        self.hoiio.wait_idle(timeout)

    def wait_for(self, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.02)


@pytest.fixture
def world(database_url) -> Iterator[World]:
    w = World(database_url)
    yield w
    w.close()


@pytest.fixture
def sqlite_world(tmp_path) -> Iterator[World]:
    w = World(f"sqlite:///{tmp_path / 'ivr.sqlite3'}")
    yield w
    w.close()


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory) -> Iterator[World]:
    """One world for a module's requests that must change nothing (see ``nothing_sent``)."""
    w = World(f"sqlite:///{tmp_path_factory.mktemp('shared') / 'ivr.sqlite3'}")
    yield w
    w.close()


@contextmanager
def nothing_sent(world: World) -> Iterator[None]:
    """Nothing reaches Hoiio or VoipNow and nothing is stored as a call or side call meanwhile."""

    def seen() -> tuple[int, ...]:
        return (len(world.hoiio.log), len(world.voipnow.log), len(world.db.side_calls()),
                len(world.db.list_calls(10_000)))  # fmt: skip

    before = seen()
    yield
    assert seen() == before, "something was dialled or stored"


def assert_error(response: requests.Response, status: int, *, field: str | None = None,
                 code: str | None = None) -> dict:  # fmt: skip
    """The response is a JSON error with this status (and field / code)."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "error" and isinstance(body["error"], str) and body["error"]
    if field is not None:
        assert body.get("field") == field, body
        assert body["error"].startswith(field.split("[")[0]), body
    if code is not None:
        assert body.get("code") == code, body
    return body
