"""Fixtures for driving the real Flask app with a recording Hoiio transport."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from engine.config import Settings
from engine.providers.hoiio.client import HoiioClient
from engine.providers.hoiio.signature import sign_body
from engine.storage import Database
from engine.web import create_app
from tests.support.recording import RecordingAdapter

FLOWS = Path(__file__).parent / "flows"
TOKEN = "test-token"
APP_ID = "test-app"
FIXED_NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Singapore


class Harness:
    """The app, its database and the recorded Hoiio traffic, plus helpers to post notifications."""

    def __init__(self, app, adapter: RecordingAdapter, db: Database) -> None:
        self.app = app
        self.client = app.test_client()
        self.hoiio = adapter
        self.db = db
        self.service = app.extensions["ivr"]

    def post(self, path: str, fields: dict[str, str] | list[tuple[str, str]], *, sign: bool = True,
             query: str = "", headers: dict | None = None, raw: bytes | None = None):
        body = raw if raw is not None else urlencode(fields).encode()
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        if sign:
            hdrs["X-Hoiio-Signature"] = sign_body(body, TOKEN)
        hdrs.update(headers or {})
        url = path + (("?" + query) if query else "")
        return self.client.post(url, data=body, headers=hdrs)

    def answer(self, session: str = "S100", *, to: str = "+6560000001", caller: str = "+6591234567",
               path: str = "/hoiio/answer"):
        return self.post(path, {"ivr_block": "answer", "call_state": "ringing", "session": session,
                                "txn_ref": f"AA-{session}", "from": caller, "to": to})

    def notify_url(self, session: str) -> str:
        """The notify_url the engine put on the last block it sent for ``session``."""
        for _endpoint, params in reversed(self.hoiio.requests):
            if params.get("session") == session and params.get("notify_url"):
                return params["notify_url"]
        raise AssertionError(f"no block with a notify_url was sent for {session}")

    def reply(self, session: str, block: str, *, call_state: str = "ongoing", url: str | None = None, **extra):
        url = url or self.notify_url(session)
        parts = urlsplit(url)
        fields = {"ivr_block": block, "session": session, "txn_ref": f"AA-{session}", "call_state": call_state,
                  "from": "+6591234567", "to": "+6560000001", "tag": ""}
        fields.update(extra)
        return self.post(parts.path, fields, query=parts.query)

    def step_of(self, url: str) -> int:
        return int(dict(parse_qsl(urlsplit(url).query))["step"])


def make_app(database_url: str, flows_dir: Path = FLOWS, **overrides):
    adapter = RecordingAdapter()
    settings = Settings(
        hoiio_app_id=APP_ID, hoiio_access_token=TOKEN, hoiio_api_url="https://hoiio.test/open",
        database_url=database_url, flows_dir=flows_dir, public_url="https://ivr.example.com",
        recovery_interval=0, reload_check_interval=0, **overrides,
    )
    db = Database.open(database_url, auto_migrate=True)
    client = HoiioClient(settings.hoiio_api_url, APP_ID, TOKEN, session_factory=adapter.session_factory(),
                         sleep=lambda s: None)
    app = create_app(settings, db=db, client=client, now=lambda: FIXED_NOW)
    return Harness(app, adapter, db)


@pytest.fixture
def harness(database_url) -> Harness:
    h = make_app(database_url)
    yield h
    h.db.dispose()
