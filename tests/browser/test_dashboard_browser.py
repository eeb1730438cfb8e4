"""The dashboard in a real browser: log in with the token, see a flow's diagram, a finished call and
its timeline, download the call as a replay case; then the same on a phone-sized screen."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "admin"))
from admin_support import ADMIN_TOKEN, FULL_NUMBERS, admin_app, copy_flows, live_call, pin_call  # noqa: E402

from engine.replay import parse_case  # noqa: E402


@pytest.fixture
def dashboard(tmp_path, serve):
    monkey = pytest.MonkeyPatch()
    monkey.delenv("IVR_LOG_NUMBERS", raising=False)
    h = admin_app(f"sqlite:///{tmp_path / 'browser.sqlite3'}", flows_dir=copy_flows(tmp_path))
    pin_call(h, "C1")  # a finished call with billing
    live_call(h, "C3")  # one still at the menu
    server = serve(h.app)
    yield server.url
    h.db.dispose()
    monkey.undo()


def log_in(page, base: str, screenshot: Path | None = None) -> None:
    page.goto(f"{base}/admin/")
    assert page.url.startswith(f"{base}/admin/login")
    page.fill("#token", "not-it")
    page.click("button:has-text('Log in')")
    assert "not the dashboard token" in page.content()
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    page.fill("#token", ADMIN_TOKEN)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}/admin/")
    assert page.locator("h1").inner_text() == "Overview"


def assert_no_full_numbers(page) -> None:
    html = page.content()
    for number in FULL_NUMBERS:
        assert number not in html


def test_dashboard_desktop(browser, dashboard, results_dir, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    try:
        page = context.new_page()
        log_in(page, dashboard)
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["ivr_admin"]["httpOnly"] and cookies["ivr_admin"]["sameSite"] == "Strict"
        assert page.locator("text=checked, no problems").count() >= 1
        assert_no_full_numbers(page)
        page.screenshot(path=str(results_dir / "desktop-overview.png"), full_page=True)

        # a flow and its diagram
        page.click("a.flow-name:has-text('everything')")
        page.wait_for_url(f"{dashboard}/admin/flows/everything")
        diagram = page.locator("figure.diagram svg")
        diagram.wait_for(state="visible")
        box = diagram.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 200
        assert page.locator("figure.diagram svg g.node").count() >= 10
        assert_no_full_numbers(page)
        page.screenshot(path=str(results_dir / "desktop-flow.png"), full_page=True)

        # the finished call and its timeline
        page.click("nav >> text=Calls")
        page.click("a:has-text('C1')")
        page.wait_for_url(f"{dashboard}/admin/calls/C1")
        timeline = page.locator("ol.timeline > li")
        assert timeline.count() == 9
        assert "ivr/middle/gather" in page.inner_text("ol.timeline")
        assert "hung up by flow" in page.inner_text("dl.facts")
        assert "0.040" in page.inner_text("dl.billing")
        assert_no_full_numbers(page)
        page.screenshot(path=str(results_dir / "desktop-call.png"), full_page=True)

        # download it as a replay case
        with page.expect_download() as info:
            page.click("text=Download as replay case")
        download = info.value
        assert download.suggested_filename == "replay-C1.yaml"
        target = tmp_path / download.suggested_filename
        download.save_as(str(target))
        text = target.read_text()
        assert yaml.safe_load(text)["flow"] == "everything"
        assert len(parse_case(text, str(target)).steps) == 5

        # the reload button (a CSRF-protected form)
        page.click("button:has-text('Reload flows')")
        page.wait_for_url(f"{dashboard}/admin/calls/C1")
        assert "Flows reloaded" in page.inner_text("main")

        # counts per exit over a period
        page.click("nav >> text=Counts")
        page.click("text=last 30 days")
        page.wait_for_url(f"{dashboard}/admin/counts?days=30")
        assert page.locator("table.exits").count() >= 1
        page.screenshot(path=str(results_dir / "desktop-counts.png"), full_page=True)
    finally:
        context.close()


def test_dashboard_on_a_phone(browser, dashboard, results_dir):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        log_in(page, dashboard, screenshot=results_dir / "phone-login.png")
        for path, name in (("/admin/", "phone-overview.png"), ("/admin/calls/C1", "phone-call.png"),
                           ("/admin/flows/everything", "phone-flow.png"), ("/admin/counts?days=7", "phone-counts.png")):
            page.goto(f"{dashboard}{path}")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (path, overflow)  # nothing wider than the screen
            assert_no_full_numbers(page)
            page.screenshot(path=str(results_dir / name), full_page=True)
        # the calls table turns into labelled cards
        page.goto(f"{dashboard}/admin/")
        assert page.locator("table.calls thead").first.is_hidden()
    finally:
        context.close()
