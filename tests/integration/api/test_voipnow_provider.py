"""The VoipNow provider: exact requests (pure wire), and the client as a ``Provider``."""

from __future__ import annotations

import pytest
import requests

from engine.core.actions import Block
from engine.fakes.voipnow import FakeVoipNow
from engine.providers.base import Category, Provider
from engine.providers.voipnow import wire
from engine.providers.voipnow.client import VoipNowClient


def test_the_invite_request_is_exactly_the_documented_one():
    req = wire.invite_request(extension="211", destination="3235742879", conference_number="3", pin="2233",
                              wait_for_pickup=40, caller_id="John Doe <4242425>")  # fmt: skip
    assert req.method == "POST" and req.path == "/uapi/phoneCalls/@me/conferenceInvite"
    assert req.query == (("number", "3"), ("pin", "2233"), ("waitForPickup", "40"))
    assert req.body == {"extension": "211", "phoneCallView": [
        {"source": ["211"], "destination": ["3235742879"], "callerId": "John Doe <4242425>"}]}
    bare = wire.invite_request(extension="0003*211", destination="212")
    assert bare.query == () and bare.body["phoneCallView"][0] == {"source": ["0003*211"], "destination": ["212"]}
    assert wire.hangup_request("211", "abc", phone_number="212").query == (("phoneNumber", "212"),)
    assert wire.phone_call_request("0003*211", "abc").path == "/uapi/phoneCalls/@me/0003*211/abc"


@pytest.mark.parametrize(("changes", "field"), [
    ({"extension": "x"}, "extension"),
    ({"destination": "call me"}, "number"),
    ({"conference_number": "3a"}, "conference_number"),
    ({"pin": ""}, "pin"),
    ({"wait_for_pickup": 0}, "wait_for_pickup"),
    ({"wait_for_pickup": True}, "wait_for_pickup"),
    ({"caller_id": "John <Doe>"}, "caller_id"),
])  # fmt: skip
def test_requests_voipnow_would_refuse_are_never_built(changes, field):
    args = {"extension": "211", "destination": "212", **changes}
    with pytest.raises(wire.InviteError) as caught:
        wire.invite_request(**args)
    assert caught.value.field == field


def test_every_documented_error_code_has_a_meaning_and_category():
    for code in ("extension_invalid", "pc_duration_invalid", "pc_source_invalid", "pc_destination_invalid",
                 "pc_timeout_invalid", "pc_callerid_invalid", "pc_pin_invalid", "pc_number_invalid",
                 "user_invalid", "access_denied", "internal_server_error", "request_not_implemented"):  # fmt: skip
        info = wire.classify(code)
        assert info.known and info.meaning.endswith(".")
    assert wire.classify("access_denied").category is Category.AUTH
    assert wire.classify("pc_destination_invalid").category is Category.DESTINATION
    assert wire.classify("something_new").known is False


def test_the_client_is_a_provider_and_keeps_its_token_secret():
    client = VoipNowClient("https://voipnow.example.com", "s3cret", "211")
    assert isinstance(client, Provider)
    assert "s3cret" not in repr(client)
    result = client.send_block(Block(kind="play", params=(("msg", "hi"),), step=1, node="n"), session="S1",
                               notify_url="https://x.example/n")  # fmt: skip
    assert not result.ok and result.status == "error_not_supported"
    with pytest.raises(wire.InviteError):
        client.call("conferenceInvite", [])
    with pytest.raises(wire.InviteError):
        client.call("simple", [("destination", "212")])


def test_the_client_against_the_fake():
    with FakeVoipNow("tok") as fake:
        url = fake.start()
        client = VoipNowClient(url, "tok", "211")
        invited = client.call("conferenceInvite", [("destination", "212"), ("wait_for_pickup", "9")])
        assert invited.ok and invited.http_status == 202
        [phone_call_id] = invited.data["ids"]
        assert client.call("phoneCall", [("id", phone_call_id)]).data["phone_call"]["id"] == phone_call_id
        assert client.call("hangup", [("id", phone_call_id)]).data["ids"] == [phone_call_id]
        assert client.phone_call(phone_call_id).data["phone_call"] is None
        denied = VoipNowClient(url, "wrong", "211").invite("212")
        assert (denied.ok, denied.status, denied.http_status) == (False, "access_denied", 401)
        assert "wrong" not in (denied.error or "")
        fake.inject(200, None)
        fake.inject(500, None)  # an error page without a body
        assert client.invite("212").data["ids"] == []
        assert client.invite("212").status == "internal_server_error"


def test_a_lost_answer_is_maybe_delivered():
    class Dropping(requests.adapters.BaseAdapter):
        def send(self, request, **kwargs):
            raise requests.ConnectionError("Connection aborted.', RemoteDisconnected('closed')")

        def close(self):
            pass

    def session():
        s = requests.Session()
        s.mount("http://", Dropping())
        return s

    client = VoipNowClient("http://voipnow.test", "tok", "211", session_factory=session)
    result = client.invite("212")
    assert (result.status, result.maybe_delivered, result.attempts) == ("error_connection", True, 1)
    query = client.phone_call("abc")
    assert (query.status, query.maybe_delivered, query.attempts) == ("error_connection", False, 2)
