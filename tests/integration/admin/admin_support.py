"""Helpers for the dashboard tests: an app with ``IVR_ADMIN_TOKEN`` set, logging in through the
form, and a couple of finished calls made through the integration harness."""

from __future__ import annotations

import re
import shutil
from html import unescape
from pathlib import Path

from tests.integration.conftest import FLOWS, Harness, make_app

ADMIN_TOKEN = "dashboard-test-token-5f2c"
CALLER = "+6591234567"
FLOW_NUMBER = "+6560000001"
SALES_NUMBER = "+6561111111"
FULL_NUMBERS = (CALLER, FLOW_NUMBER, SALES_NUMBER, "6591234567", "6560000001", "6561111111")

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def admin_app(database_url: str, flows_dir: Path = FLOWS, **overrides) -> Harness:
    overrides.setdefault("admin_token", ADMIN_TOKEN)
    return make_app(database_url, flows_dir=flows_dir, **overrides)


def copy_flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    for path in FLOWS.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    return folder


def csrf_of(html: str | bytes) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    match = _CSRF.search(text)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, token: str = ADMIN_TOKEN):
    """Log in through the form; returns the response to the POST."""
    form = client.get("/admin/login")
    assert form.status_code == 200, form.data
    return client.post("/admin/login", data={"token": token, "csrf_token": csrf_of(form.data), "next": "/admin/"})


def text_of(response) -> str:
    return unescape(response.get_data(as_text=True))


def pin_call(h: Harness, session: str = "C1", pin: str = "4321") -> None:
    """Welcome, menu key 1, a PIN (wrong by default: goodbye), hangup with billing."""
    h.answer(session)
    h.reply(session, "play")
    h.reply(session, "gather", digits="1")
    h.reply(session, "gather", digits=pin)
    h.reply(session, "hangup", call_state="ended", duration="2", currency="SGD", rate="0.020", debit="0.040",
            date="2026-11-23 10:02:00")


def sales_call(h: Harness, session: str = "C2") -> None:
    """Welcome, menu key 2: transferred to sales (the transfer block carries the sales number)."""
    h.answer(session)
    h.reply(session, "play")
    h.reply(session, "gather", digits="2")
    h.reply(session, "transfer", call_state="ended", transfer_status="answered", duration="1", currency="SGD",
            rate="0.020", debit="0.020")


def live_call(h: Harness, session: str = "C3") -> None:
    """Still at the menu."""
    h.answer(session)
    h.reply(session, "play")
