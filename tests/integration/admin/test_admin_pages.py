"""What the dashboard shows: flows and their check status, calls, a call's timeline, the replay
download, counts per exit, flow versions, with phone numbers always masked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from admin_support import (
    ADMIN_TOKEN,
    FULL_NUMBERS,
    admin_app,
    copy_flows,
    csrf_of,
    live_call,
    login,
    pin_call,
    sales_call,
    text_of,
)

from engine.replay import parse_case
from engine.storage import Database
from engine.web import admin as admin_module

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def get(h, path: str) -> str:
    response = h.client.get(path, headers=BEARER)
    assert response.status_code == 200, (path, response.status_code, response.data[:500])
    return text_of(response)


def test_overview_lists_flows_and_live_and_recent_calls(admin):
    pin_call(admin, "C1")
    live_call(admin, "C3")
    page = get(admin, "/admin/")
    assert "everything" in page and "direct" in page
    assert admin.service.flows.current["everything"].version in page
    assert "checked, no problems" in page
    assert "+65*****567" in page  # the caller, masked
    assert "/admin/calls/C1" in page and "/admin/calls/C3" in page
    assert "live" in page and "menu" in page  # C3 waits at the menu
    assert "hung up by flow" in page


def test_timeline_of_a_finished_call(admin):
    pin_call(admin, "C1")
    page = get(admin, "/admin/calls/C1")
    assert "Timeline" in page and "Billing" in page
    # each notification and each block, in order, with Hoiio's answer and timing
    order = [page.index(s) for s in ("answer", "ivr/middle/play", "ivr/middle/gather", "Enter your four digit PIN.",
                                     "ivr/end/hangup")]
    assert order == sorted(order)
    assert page.count("← Hoiio") == 5 and page.count("→ Hoiio") == 4
    assert "sent: success_ok" in page and "Hoiio's answer" in page and "HTTP 200" in page
    assert "handled in" in page
    # the menu choice is shown, the PIN is not
    assert "<dd>1</dd>" in page and "4321" not in page and "***" in page
    # billing at the end
    assert page.index("Billing") > page.index("ivr/end/hangup")
    for value in ("billed minutes", "0.040", "0.020", "SGD", "2026-11-23 10:02:00"):
        assert value in page
    assert "welcome" in page and "key 1" in page and "otherwise" in page  # the path
    assert "Download as replay case" in page


def test_replay_case_download(admin):
    pin_call(admin, "C1")
    response = admin.client.get("/admin/calls/C1/replay.yaml", headers=BEARER)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="replay-C1.yaml"'
    assert response.mimetype == "application/x-yaml"
    text = response.get_data(as_text=True)
    data = yaml.safe_load(text)
    assert data["flow"] == "everything"
    case = parse_case(text, "replay-C1.yaml")
    assert case.flow == "everything" and len(case.steps) == 5
    missing = admin.client.get("/admin/calls/NOPE/replay.yaml", headers=BEARER)
    assert missing.status_code == 404 and "NOPE" in text_of(missing)


def test_no_full_phone_number_on_any_page(admin):
    pin_call(admin, "C1")
    sales_call(admin, "C2")
    live_call(admin, "C3")
    assert any(params.get("dest") == "+6561111111" for _, params in admin.hoiio.requests)
    pages = ["/admin/", "/admin/calls", "/admin/calls/C1", "/admin/calls/C2", "/admin/calls/C3",
             "/admin/flows/everything", "/admin/flows/direct", "/admin/counts?days=1", "/admin/counts?days=7",
             "/admin/counts?days=30"]
    for path in pages:
        page = get(admin, path)
        for number in FULL_NUMBERS:
            assert number not in page, (path, number)
    transfer = get(admin, "/admin/calls/C2")
    assert "ivr/end/transfer" in transfer and "+65*****111" in transfer


def test_counts_per_flow_and_exit(admin, database_url):
    pin_call(admin, "C1")
    pin_call(admin, "C2", pin="1234")
    sales_call(admin, "C3")
    old = Database.open(database_url, clock=lambda: datetime.now(UTC) - timedelta(days=10))
    try:
        with old.transaction() as tx:
            tx.insert_call(session="OLD", flow="everything", flow_version="v0", status="ended", outcome="hung up",
                           state={"path": [["welcome", "next"], ["menu", "key 3"], ["voicemail", "next"]]})
    finally:
        old.close()
    week = admin_module.counts_by_exit(admin.service, 7)["everything"]
    assert week[("welcome", "next")] == 3
    assert week[("menu", "key 1")] == 2 and week[("menu", "key 2")] == 1 and week[("menu", "key 3")] == 0
    assert week[("check_pin", "otherwise")] == 1 and week[("check_pin", "case 1")] == 1
    assert week[("voicemail", "next")] == 0
    month = admin_module.counts_by_exit(admin.service, 30)["everything"]
    assert month[("welcome", "next")] == 4 and month[("menu", "key 3")] == 1

    page = get(admin, "/admin/counts?days=7")
    assert "3 calls" in page
    assert "<td>key 1 <span class=\"target\">→ account</span></td>" in page
    assert '<meter min="0" max="3" value="2">2</meter> 2' in page  # key 1: taken twice
    assert "hung up by flow: 1" in page and "caller hung up: 1" in page and "transferred: 1" in page
    assert "4 calls" in get(admin, "/admin/counts?days=30")
    assert "everything" in get(admin, "/admin/counts?days=1")
    bad = admin.client.get("/admin/counts?days=3", headers=BEARER)
    assert bad.status_code == 400 and "1, 7 or 30" in text_of(bad)


def test_flow_page_shows_the_diagram_inline_and_caches_it(admin_sqlite, monkeypatch):
    from engine.authoring import graph

    calls = []
    real = graph.draw

    def counting(flow, fmt, *args, **kwargs):
        calls.append((flow.name, flow.version, fmt))
        return real(flow, fmt, *args, **kwargs)

    monkeypatch.setattr(graph, "draw", counting)
    page = get(admin_sqlite, "/admin/flows/everything")
    assert '<figure class="diagram"><svg' in page
    assert "<script" not in page and "<!DOCTYPE" not in page
    assert "welcome" in page and "+65*****111" in page  # the sales transfer, masked in the picture
    get(admin_sqlite, "/admin/flows/everything")
    full = admin_sqlite.client.get("/admin/flows/everything/diagram.svg", headers=BEARER)
    assert full.status_code == 200 and full.mimetype == "image/svg+xml"
    assert full.get_data(as_text=True).startswith("<svg") and b"6561111111" not in full.data
    assert admin_sqlite.client.get("/admin/flows/everything/diagram.svg").status_code == 302
    assert admin_sqlite.client.get("/admin/flows/nope/diagram.svg", headers=BEARER).status_code == 404
    assert calls == [("everything", admin_sqlite.service.flows.current["everything"].version, "svg")]


def test_svg_is_sanitised():
    dirty = ('<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd">'
             '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10pt" '
             'onload="alert(1)" viewBox="0 0 10 10"><script>alert(2)</script><!-- c -->'
             '<g id="n1" class="node" onclick="x()"><title>a</title><text x="1" y="2">call +6591234567</text>'
             '<foreignObject><div>hi</div></foreignObject>'
             '<a xlink:href="javascript:alert(3)"><text>link</text></a>'
             '<image href="http://evil.example/x.png"/></g></svg>')
    clean = admin_module.sanitize_svg(dirty)
    for bad in ("script", "alert", "onload", "onclick", "foreignObject", "javascript", "evil", "<!--", "DOCTYPE",
                "6591234567"):
        assert bad not in clean, bad
    assert clean.startswith("<svg") and 'viewBox="0 0 10 10"' in clean and "+65*****567" in clean
    assert "link" in clean and 'class="node"' in clean
    with pytest.raises(ValueError):
        admin_module.sanitize_svg('<!DOCTYPE x [<!ENTITY a "b">]><svg>&a;</svg>')


def test_flow_errors_are_shown_exactly(tmp_path):
    folder = copy_flows(tmp_path)
    h = admin_app(f"sqlite:///{tmp_path / 'e.sqlite3'}", flows_dir=folder)
    try:
        login(h.client)
        # a new flow that fails its checks, and a bad edit of a running flow
        (folder / "broken.yaml").write_text("start: nowhere\nnodes:\n  hello:\n    type: play\n"
                                            "    say: Hi\n    next: gone\n")
        running = (folder / "direct.yaml").read_text()
        (folder / "direct.yaml").write_text(running.replace("next: bye", "next: byebye"))
        token = csrf_of(h.client.get("/admin/").data)
        response = h.client.post("/admin/reload", data={"csrf_token": token})
        assert response.status_code == 302
        errors = h.service.flows.errors
        assert {"broken", "direct"} <= {e.file.rsplit("/", 1)[-1].split(".")[0] for e in errors}
        page = text_of(h.client.get("/admin/"))
        assert "error(s): flows with errors keep their running version" in page  # the flash
        assert "failed to load: not running" in page
        assert "the last good version keeps running" in page
        for finding in errors:
            assert str(finding) in page
        flow_page = text_of(h.client.get("/admin/flows/direct"))
        assert "Check results" in flow_page and "<svg" in flow_page  # the running version is still drawn
        broken_page = text_of(h.client.get("/admin/flows/broken"))
        assert "failed to load" in broken_page and "Diagram" not in broken_page
    finally:
        h.db.dispose()


def test_versions_and_their_diff_on_the_flow_page(tmp_path):
    folder = copy_flows(tmp_path)
    h = admin_app(f"sqlite:///{tmp_path / 'v.sqlite3'}", flows_dir=folder)
    try:
        first = h.service.flows.current["everything"].version
        source = (folder / "everything.yaml").read_text()
        (folder / "everything.yaml").write_text(
            source.replace('"3": voicemail', '"3": account').replace("Welcome to {{ company }}.",
                                                                     "Hello, welcome to {{ company }}."))
        h.client.post("/admin/reload", headers=BEARER)
        second = h.service.flows.current["everything"].version
        assert first != second
        page = get(h, "/admin/flows/everything")
        assert first in page and second in page and "running" in page
        assert f"old={first}&new={second}" in page  # the "since" link of the new version
        diff = get(h, f"/admin/flows/everything?old={first[:6]}&new={second}")
        assert "menu: key 3 now goes to account (was voicemail)" in diff
        assert ('the welcome prompt changed from "Welcome to {{ company }}." to '
                '"Hello, welcome to {{ company }}."') in diff
        same = get(h, f"/admin/flows/everything?old={first}&new={first}")
        assert "These are the same version." in same
        unknown = get(h, f"/admin/flows/everything?old=ffffff&new={second}")
        assert "no stored version 'ffffff'" in unknown
    finally:
        h.db.dispose()


def test_unknown_call_and_flow(admin_sqlite):
    for path in ("/admin/calls/NOPE", "/admin/flows/nope"):
        response = admin_sqlite.client.get(path, headers=BEARER)
        assert response.status_code == 404
        assert "Not found" in text_of(response)
