"""POST /hoiio/events: end-of-call notifications of side calls, verified, stored, never an IVR step."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from engine.fakes import CallerScript
from engine.providers.hoiio.signature import sign_body
from tests.integration.api.conftest import HOIIO_TOKEN, World

VOICE_FIELDS = {"dest1": "+6531580000", "dest2": "+6591234567", "call_status_dest1": "answered",
                "call_status_dest2": "busy", "txn_ref": "AA-C-77", "tag": "web", "date": "2026-01-01 10:00:00",
                "duration": "0", "currency": "SGD", "rate": "0.020", "debit": "0.000"}  # fmt: skip
CONFERENCE_FIELDS = {"dest": "+6591234567", "call_status_dest": "answered", "txn_ref": "AA-C-78"}


def _post(world: World, url: str, fields: dict, *, sign: bool = True, token: str = HOIIO_TOKEN, raw: bytes = b""):
    body = raw or urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if sign:
        headers["X-Hoiio-Signature"] = sign_body(body, token)
    return requests.post(url, data=body, headers=headers, timeout=10)


def _outcomes(world: World) -> list[str | None]:
    return [n.outcome for n in reversed(world.db.recent_notifications(50)) if n.route == "POST /hoiio/events"]


def test_a_signed_notification_is_stored_once(world):
    url = world.outbound.events_url("voice", 41)
    r = _post(world, url, VOICE_FIELDS)
    assert r.status_code == 200 and r.json() == {"status": "ok", "kind": "voice/call", "txn_ref": "AA-C-77"}
    [event] = world.db.call_events("AA-C-77")
    assert event.kind == "voice/call" and event.payload["ref"] == 41
    assert event.payload["legs"][1] == {"number": "+6591234567", "status": "busy"}
    assert event.payload["billing"]["debit"] == "0.000" and event.payload["tag"] == "web"
    again = _post(world, url, VOICE_FIELDS)  # Hoiio may post a notification more than once
    assert again.status_code == 200 and again.json()["status"] == "ignored"
    assert len(world.db.call_events("AA-C-77")) == 1
    assert _outcomes(world) == ["accepted", "duplicate"]
    assert world.db.list_calls() == []  # not an IVR call


def test_a_conference_leg_notification(sqlite_world):
    url = sqlite_world.outbound.events_url("conference", 5)
    assert _post(sqlite_world, url, CONFERENCE_FIELDS).status_code == 200
    [event] = sqlite_world.db.call_events("AA-C-78")
    assert event.kind == "conference/call" and event.payload["legs"] == [{"number": "+6591234567",
                                                                           "status": "answered"}]  # fmt: skip


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


@pytest.mark.parametrize(("how", "status"), [
    ("unsigned body", 403),
    ("wrong body signature", 403),
    ("forged sig", 403),
    ("other ref", 403),
    ("kind swapped", 403),
    ("no kind", 403),  # the engine's sig covers kind and ref: checked before anything else
    ("bad kind", 403),
    ("bad ref", 403),
    ("voice body at the conference URL", 400),
    ("no txn_ref", 400),
    ("bad number", 400),
    ("not a form", 400),
    ("nothing to say", 400),
])  # fmt: skip
def test_bad_notifications_are_refused_and_recorded(sqlite_world, how, status):
    w = sqlite_world
    url = w.outbound.events_url("voice", 9)
    fields = dict(VOICE_FIELDS)
    kwargs: dict = {}
    if how == "unsigned body":
        kwargs["sign"] = False
    elif how == "wrong body signature":
        kwargs["token"] = "someone-else"
    elif how == "forged sig":
        url = _tamper(url, sig="0" * 32)
    elif how == "other ref":
        url = _tamper(url, ref="10")
    elif how == "kind swapped":
        url = _tamper(url, kind="conference")
    elif how == "no kind":
        url = url.replace("kind=voice&", "")
    elif how == "bad kind":
        url = _tamper(url, kind="sms")
    elif how == "bad ref":
        url = _tamper(url, ref="x1")
    elif how == "voice body at the conference URL":
        url = w.outbound.events_url("conference", 9)
    elif how == "no txn_ref":
        del fields["txn_ref"]
    elif how == "bad number":
        fields["dest2"] = "not-a-number"
    elif how == "not a form":
        kwargs["raw"] = b"\xff\xfe\x00"
    elif how == "nothing to say":
        fields = {"txn_ref": "AA-C-77"}
    r = _post(w, url, fields, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["status"] == "error" and r.json()["error"]
    assert w.db.call_events("AA-C-77") == []
    assert _outcomes(w) == ["refused" if status == 403 else "invalid"]


def test_signatures_may_be_switched_off_for_local_work_but_not_the_engines_own(tmp_path):
    w = World(f"sqlite:///{tmp_path / 'nosig.sqlite3'}", verify_signatures=False)
    try:
        url = w.outbound.events_url("voice", 3)
        assert _post(w, url, VOICE_FIELDS, sign=False).status_code == 200
        assert _post(w, _tamper(url, sig="f" * 32), VOICE_FIELDS, sign=False).status_code == 403
    finally:
        w.close()


def test_an_events_url_is_not_an_ivr_notify_url(sqlite_world):
    """A side call's notification posted to the IVR route is refused there, and an IVR
    notification posted to the events route is refused here: neither is taken for the other."""
    w = sqlite_world
    url = w.outbound.events_url("voice", 1)
    ivr = {"ivr_block": "dial", "session": "S1", "txn_ref": "AA-C-1", "call_state": "ongoing",
           "dial_status": "answered"}
    r = _post(w, url, ivr)
    assert r.status_code == 400
    r = _post(w, f"{w.url}/hoiio/notify?step=1&sig=abc", VOICE_FIELDS)
    assert r.status_code in (400, 403)
    assert w.db.list_calls() == [] and w.db.call_events("AA-C-77") == []


def test_notifications_from_the_fake_hoiio_arrive_signed(world):
    world.hoiio.script_outbound(CallerScript(dial="unanswered"), dest="+6591234567")
    txn_ref = world.post("/api/callbacks", {"first": "+6591234567", "second": "+6598765432"}).json()["txn_ref"]
    # the fake schedules its notification once its answer is written: wait for the post itself
    world.wait_for(lambda: [n for n in world.hoiio.notifications if n.txn_ref == txn_ref and n.http_status])
    world.settle()
    [note] = [n for n in world.hoiio.notifications if n.txn_ref == txn_ref]
    assert note.http_status == 200 and note.fields["call_status_dest1"] == "unanswered"
    [event] = world.db.call_events(txn_ref)
    assert event.payload["legs"][0]["status"] == "unanswered"
