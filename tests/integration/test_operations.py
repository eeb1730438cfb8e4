"""Operations: metrics, JSON logs with masking, source allow-list, readiness."""

from __future__ import annotations

import json
import logging

import pytest

from engine.observability import JsonFormatter, mask_number
from engine.providers.hoiio.signature import sign_body
from engine.web import health
from tests.integration.conftest import TOKEN, make_app


@pytest.fixture
def sqlite_harness(tmp_path):
    h = make_app(f"sqlite:///{tmp_path / 'ops.sqlite3'}")
    yield h
    h.db.dispose()


def _metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_notifications_and_active_sessions(sqlite_harness):
    h = sqlite_harness
    before = _metric(h.client.get("/metrics").get_data(as_text=True), "ivr_notifications_total",
                     block="answer", outcome="accepted")
    h.answer("M1")
    h.post("/hoiio/answer", {"session": "M2"}, sign=False)  # refused: unsigned
    text = h.client.get("/metrics").get_data(as_text=True)
    assert _metric(text, "ivr_notifications_total", block="answer", outcome="accepted") == before + 1
    assert _metric(text, "ivr_refused_notifications_total", reason="signature") >= 1
    assert _metric(text, "ivr_active_sessions") == 1
    assert "ivr_provider_request_seconds_count" in text
    assert "+6591234567" not in text and "M1" not in text  # no numbers or sessions as labels


def test_log_lines_are_json_with_masked_numbers_and_no_token(sqlite_harness, caplog):
    h = sqlite_harness
    with caplog.at_level(logging.INFO, logger="engine"):
        h.answer("L1")
        h.reply("L1", "play")
        h.reply("L1", "gather", digits="1")
        h.reply("L1", "gather", digits="9876")  # a sensitive PIN
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "engine.service"]
    assert lines
    events = [json.loads(line) for line in lines]
    first = events[0]
    assert first["event"] == "notification" and first["session"] == "L1" and first["flow"] == "everything"
    assert first["caller"] == mask_number("+6591234567") != "+6591234567"
    joined = "\n".join(lines)
    assert "+6591234567" not in joined
    assert "9876" not in joined
    assert TOKEN not in joined


def test_mask_number():
    assert mask_number("+6591234567") == "+65*****567"
    assert mask_number(None) is None


def test_source_allow_list(tmp_path):
    h = make_app(f"sqlite:///{tmp_path / 'a.sqlite3'}", hoiio_allow_nets=("203.0.113.0/24",))
    try:
        r = h.answer("A1")
        assert r.status_code == 403 and "IVR_HOIIO_ALLOW_NETS" in r.get_json()["error"]
        body = b"ivr_block=answer&session=A2&call_state=ringing&to=%2B6560000001&from=%2B6591234567"
        r = h.client.post("/hoiio/answer", environ_base={"REMOTE_ADDR": "203.0.113.9"}, data=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded",
                                   "X-Hoiio-Signature": sign_body(body, TOKEN)})
        assert r.status_code == 200 and h.db.get_call("A2") is not None
        assert h.client.get("/healthz").status_code == 200  # only /hoiio/* is restricted
        outcomes = [n["outcome"] for n in h.db.recent_notifications(limit=5)]
        assert "refused" in outcomes
    finally:
        h.db.dispose()


def test_proxy_hops_trust_forwarded_for(tmp_path):
    h = make_app(f"sqlite:///{tmp_path / 'p.sqlite3'}", hoiio_allow_nets=("198.51.100.0/24",), proxy_hops=1)
    try:
        r = h.answer("P1")
        assert r.status_code == 403
        body = b"ivr_block=answer&session=P2&call_state=ringing&to=%2B6560000001&from=%2B6591234567"
        r = h.post("/hoiio/answer", {}, raw=body, headers={"X-Forwarded-For": "198.51.100.7"})
        assert r.status_code == 200
    finally:
        h.db.dispose()


def test_readyz_reports_shutdown(sqlite_harness):
    h = sqlite_harness
    body = h.client.get("/readyz").get_json()
    assert body["status"] == "ok" and body["checks"]["migrations"] == "at head"
    health.begin_shutdown()
    try:
        r = h.client.get("/readyz")
        assert r.status_code == 503 and r.get_json()["checks"]["shutdown"] == "in progress"
        assert h.client.get("/livez").status_code == 200
    finally:
        health._SHUTTING_DOWN.clear()
