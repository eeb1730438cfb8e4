"""The fake VoipNow checks the documented rules (in-process, through its WSGI app)."""

from __future__ import annotations

import pytest

from engine.fakes.voipnow import FakeVoipNow

TOKEN = "t0ken"
URL = "/uapi/phoneCalls/@me/conferenceInvite"
GOOD = {"extension": "211", "phoneCallView": [{"source": ["211"], "destination": ["3235742879"],
                                                "callerId": "John Doe <4242425>"}]}  # fmt: skip


@pytest.fixture
def fake():
    now = [1_700_000_000.0]
    f = FakeVoipNow(TOKEN, clock=lambda: now[0])
    f.now = now
    return f


def _post(fake, body=GOOD, query="?number=3&pin=2233", headers=None):
    client = fake.wsgi_app.test_client()
    return client.post(URL + query, json=body, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})


def _code(response):
    return response.status_code, response.get_json()["error"]["code"]


def test_the_documented_example_is_accepted_with_202_and_an_id_list(fake):
    r = _post(fake)
    assert r.status_code == 202
    [created] = r.get_json()
    assert set(created) == {"id", "extension", "link"} and created["extension"] == "211"
    assert created["link"]["self"].endswith(f"/uapi/phoneCalls/@me/211/{created['id']}")
    invite = fake.invites[created["id"]]
    assert (invite.conference_number, invite.pin, invite.wait_for_pickup) == ("3", "2233", 25)


def test_the_token_may_come_as_a_query_parameter(fake):
    r = fake.wsgi_app.test_client().post(f"{URL}?accessRequestToken=Bearer%20{TOKEN}", json=GOOD)
    assert r.status_code == 202
    assert "accessRequestToken" not in fake.log[-1].query


@pytest.mark.parametrize("headers", [{"Authorization": ""}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TOKEN}"}])  # fmt: skip
def test_a_bearer_token_is_required(fake, headers):
    assert _code(_post(fake, headers=headers)) == (401, "access_denied")


def test_the_user_must_be_the_authenticated_one(fake):
    client = fake.wsgi_app.test_client()
    for user in ("@me", "@viewer", "@owner", "1"):
        r = client.post(f"/uapi/phoneCalls/{user}/conferenceInvite", json=GOOD,
                        headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert r.status_code == 202
    r = client.post("/uapi/phoneCalls/2/conferenceInvite", json=GOOD, headers={"Authorization": f"Bearer {TOKEN}"})
    assert _code(r) == (400, "user_invalid")


def _view(**changes):
    return {"extension": "211", "phoneCallView": [{**GOOD["phoneCallView"][0], **changes}]}


@pytest.mark.parametrize(("body", "query", "code"), [
    ({**GOOD, "extension": "210"}, "", "extension_invalid"),  # a phone extension
    ({**GOOD, "extension": "311"}, "", "extension_invalid"),  # another user's conference
    ({**GOOD, "extension": "@self"}, "", "extension_invalid"),
    ({**GOOD, "extension": 211}, "", "extension_invalid"),
    ({"phoneCallView": [{"source": ["210"], "destination": ["1"]}]}, "", "extension_invalid"),
    (_view(source=["212"]), "", "pc_source_invalid"),
    (_view(source="211"), "", "pc_source_invalid"),
    ({"extension": "211"}, "", "pc_source_invalid"),
    (_view(destination=[]), "", "pc_destination_invalid"),
    (_view(destination=["not a number"]), "", "pc_destination_invalid"),
    (_view(destination="3235742879"), "", "pc_destination_invalid"),
    (_view(callerId="John Doe 4242425"), "", "pc_callerid_invalid"),
    (_view(callerId="<John> <1>"), "", "pc_callerid_invalid"),
    (GOOD, "?number=three", "pc_number_invalid"),
    (GOOD, "?pin=22a3", "pc_pin_invalid"),
    (GOOD, "?waitForPickup=0", "pc_timeout_invalid"),
    (GOOD, "?waitForPickup=-3", "pc_timeout_invalid"),
    (GOOD, "?waitForPickup=soon", "pc_timeout_invalid"),
    (GOOD, "?callDuration=0", "pc_duration_invalid"),
    ("not an object", "", "pc_phonecall_invalid"),
])  # fmt: skip
def test_each_documented_rule_has_its_error_code(fake, body, query, code):
    assert _code(_post(fake, body=body, query=query)) == (400, code)
    assert fake.invites == {}


def test_query_and_delete(fake):
    client = fake.wsgi_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    fake.script("3235742879", pickup=False)
    ringing = _post(fake, query="?waitForPickup=10").get_json()[0]["id"]
    talking = _post(fake).get_json()[0]["id"]
    listed = client.get("/uapi/phoneCalls/@me/211", headers=auth).get_json()
    assert listed["totalResults"] == 2 and {e["id"] for e in listed["entry"]} == {ringing, talking}
    one = client.get(f"/uapi/phoneCalls/@me/211/{talking}", headers=auth).get_json()
    [call] = one["entry"]
    assert call["phoneCallView"][0]["status"] == "5" and call["answered"] and one["filtered"] is True
    [ring] = client.get(f"/uapi/phoneCalls/@me/211/{ringing}", headers=auth).get_json()["entry"]
    assert ring["phoneCallView"][0]["status"] == "4" and "answered" not in ring
    fake.now[0] += 11  # nobody picked up within waitForPickup
    assert client.get(f"/uapi/phoneCalls/@me/211/{ringing}", headers=auth).get_json()["entry"] == []
    assert fake.invites[ringing].end_reason == "no_answer"
    # a number not in the call hangs up nothing
    assert client.delete(f"/uapi/phoneCalls/@me/211/{talking}?phoneNumber=999", headers=auth).status_code == 204
    r = client.delete(f"/uapi/phoneCalls/@me/211/{talking}", headers=auth)
    assert r.status_code == 200 and r.get_json() == [{"id": talking}]
    assert client.delete(f"/uapi/phoneCalls/@me/211/{talking}", headers=auth).status_code == 204
    assert _code(client.get("/uapi/phoneCalls/@me/210x", headers=auth)) == (400, "extension_invalid")
    assert _code(client.get("/uapi/phoneCalls/@me/211", headers={})) == (401, "access_denied")


def test_other_requests_are_not_implemented(fake):
    client = fake.wsgi_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert _code(client.put(f"/uapi/phoneCalls/@me/211/{'a' * 20}", json={}, headers=auth)) == (
        501, "request_not_implemented")  # fmt: skip
    assert _code(client.get(URL, headers=auth)) == (501, "request_not_implemented")
    assert _code(client.get("/uapi/extensions/@me", headers=auth)) == (501, "request_not_implemented")


def test_fault_injection(fake):
    fake.inject(500, "internal_server_error")
    assert _code(_post(fake)) == (500, "internal_server_error")
    fake.inject(204)
    assert _post(fake).status_code == 204
    assert _post(fake).status_code == 202
    assert [entry.http_status for entry in fake.log] == [500, 204, 202]


def test_served_over_http():
    import requests

    with FakeVoipNow(TOKEN) as f:
        url = f.start()
        r = requests.post(url + URL, json=GOOD, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert r.status_code == 202 and r.json()[0]["link"]["self"].startswith(url)
