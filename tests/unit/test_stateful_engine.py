"""Random interleavings of notifications for several calls, through the real Flask app.

A Hypothesis state machine drives the app of ``tests/integration/conftest.py`` (``make_app``: the
real service and HoiioClient over a recording transport, SQLite in memory) with, in any order and
for several calls at once: the correct next notification (sometimes with query-string parameters
that try to override the signed body), exact duplicates of any earlier request, late notifications
for an earlier step, forged ones (wrong or missing signature, a step or signature that is not this
call's, undecodable bodies), hang-ups at random points, and refusals queued at the provider.

Invariants, checked after every step:

* every request is answered with JSON and a 2xx/4xx status, never 5xx;
* at most one block per (session, step) is recorded and carried out by the provider (a refused
  attempt does not count), steps are 1..n without gaps, and the call's step is its last block's;
* the step only grows, by one per issued block; nothing is left pending/sending;
* a call that has ended never gets another block (nothing more is sent to the provider);
* a forged, duplicated or late notification changes nothing at all.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule

from engine.providers.hoiio.signature import sign_body
from tests.integration.conftest import TOKEN, make_app

NUMBER = "+6560000001"  # tests/integration/flows/everything.yaml
CALLER = "+6591234567"
DIGITS = ("1", "2", "3", "4", "5", "", "9", "1234", "0000", "12")
TRANSFER_ENDS = (("ended", "answered"), ("ongoing", "busy"), ("ongoing", "unanswered"))
ENDPOINTS = ("ivr/middle/play", "ivr/middle/gather", "ivr/middle/record", "ivr/end/transfer", "ivr/end/hangup",
             "ivr/middle/hold", "ivr/middle/unhold")  # fmt: skip
REFUSALS = ("error_internal_server_error", "error_rate_limit_exceeded", "error_session_ended",
            "error_malformed_params", "error_dest_invalid", "error_session_not_ready")  # fmt: skip
OVERRIDES = (("call_state", "ended"), ("digits", "9"), ("session", "S-OTHER"), ("ivr_block", "hangup"),
             ("txn_ref", "AA-OTHER"))  # fmt: skip


def _step_of(url: str | None) -> int | None:
    if not url:
        return None
    raw = dict(parse_qsl(urlsplit(url).query)).get("step")
    return int(raw) if raw and raw.isdigit() else None


class EngineMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.h = make_app("sqlite://")  # a fresh in-memory database and provider log per example
        self.answers: list[str] = []  # the provider's answer to each recorded request, in order
        adapter = self.h.hoiio
        send = adapter.send

        def recording_send(request: Any, **kwargs: Any) -> Any:
            response = send(request, **kwargs)
            self.answers.append(response.json()["status"])
            return response

        adapter.send = recording_send  # type: ignore[method-assign]
        self.prefix = uuid.uuid4().hex[:6]
        self.count = 0
        self.posted: list[tuple[str, bytes, dict[str, str]]] = []  # every well-signed request, for copies
        self.ended: dict[str, int] = {}  # session -> provider requests when it was first seen ended
        self.last_step: dict[str, int] = {}
        self._logging = logging.getLogger("engine").level
        logging.getLogger("engine").setLevel(logging.CRITICAL)  # keep the run fast and quiet

    def teardown(self) -> None:
        self.teardown_statistics()
        logging.getLogger("engine").setLevel(self._logging)
        self.h.db.close()

    # ------------------------------------------------------------------ helpers
    def _post(self, path: str, body: bytes, *, query: str = "", signature: str | None = "sign") -> Any:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature == "sign":
            headers["X-Hoiio-Signature"] = sign_body(body, TOKEN)
        elif signature is not None:
            headers["X-Hoiio-Signature"] = signature
        url = path + (("?" + query) if query else "")
        response = self.h.client.post(url, data=body, headers=headers)
        assert response.status_code < 500, (url, body, response.status_code, response.get_data(as_text=True))
        assert response.is_json, (url, response.status_code, response.get_data(as_text=True))
        if response.status_code == 200:
            self.posted.append((url, body, headers))
        return response

    def _snapshot(self) -> tuple:
        calls = tuple((c.session, c.status, c.step, c.row_version) for c in self.h.db.list_calls(1000))
        blocks = tuple((c[0], len(self.h.db.blocks_for(c[0]))) for c in calls)
        return calls, blocks, len(self.h.hoiio.requests)

    def _sessions(self) -> list[str]:
        return [f"P{self.prefix}{i}" for i in range(self.count)]

    def _requests(self, sid: str) -> list[tuple[str, dict[str, str], str]]:
        """(endpoint, params, provider's answer) of the requests sent for a call."""
        return [(e, p, a) for (e, p), a in zip(self.h.hoiio.requests, self.answers, strict=True)
                if p.get("session") == sid]  # fmt: skip

    def _awaited(self, sid: str) -> tuple[Any, Any, str] | None:
        """(call row, block, notify URL) of the block the call waits for, if it waits for one."""
        row = self.h.db.get_call(sid)
        if row is None or row.status != "active":
            return None
        block = next((b for b in self.h.db.blocks_for(sid) if b.step == row.step), None)
        if block is None or block.status not in ("sent", "unknown"):
            return None
        for _endpoint, params, _answer in reversed(self._requests(sid)):
            if _step_of(params.get("notify_url")) == row.step:
                return row, block, params["notify_url"]
        return None

    def _fields(self, sid: str, kind: str, choice: int, call_state: str = "ongoing") -> list[tuple[str, str]]:
        fields = [("ivr_block", kind), ("session", sid), ("txn_ref", f"AA-{sid}"), ("from", CALLER), ("to", NUMBER)]
        extra: list[tuple[str, str]] = []
        if kind == "gather" and call_state == "ongoing":
            extra.append(("digits", DIGITS[choice % len(DIGITS)]))
        elif kind == "record":
            extra.append(("record_url", f"https://rec.example.com/{sid}-{choice}.wav"))
        elif kind == "transfer" and call_state == "ongoing":
            call_state, status = TRANSFER_ENDS[choice % len(TRANSFER_ENDS)]
            extra.append(("transfer_status", status))
        elif kind == "hangup":
            call_state = "ended"
        fields += [("call_state", call_state), ("tag", ""), *extra]
        if call_state == "ended":
            fields += [("date", "2026-11-23 10:00:00"), ("duration", "1"), ("currency", "SGD"), ("rate", "0.01"),
                       ("debit", "0.01")]  # fmt: skip
        return fields

    # ------------------------------------------------------------------ rules
    @initialize(target=calls)
    def first_calls(self) -> Any:
        return multiple(self.answer(), self.answer())

    @rule(target=calls)
    def answer(self) -> str:
        sid = f"P{self.prefix}{self.count}"
        self.count += 1
        body = urlencode({"ivr_block": "answer", "call_state": "ringing", "session": sid, "txn_ref": f"AA-{sid}",
                          "from": CALLER, "to": NUMBER}).encode()  # fmt: skip
        response = self._post("/hoiio/answer", body)
        assert response.status_code == 200 and response.json["status"] == "ok", response.json
        return sid

    @rule(sid=calls, choices=st.lists(st.integers(0, 59), min_size=1, max_size=4))
    def next_notifications(self, sid: str, choices: list[int]) -> None:
        """What Hoiio posts as the awaited blocks complete, one after the other (a third of them with
        query parameters that try to override the signed body)."""
        for choice in choices:
            if not self._deliver_next(sid, choice):
                return

    def _deliver_next(self, sid: str, choice: int) -> bool:
        awaited = self._awaited(sid)
        if awaited is None:
            return False
        _row, block, url = awaited
        body = urlencode(self._fields(sid, block.kind, choice)).encode()
        parts = urlsplit(url)
        query = parts.query
        if choice % 3 == 0:
            query += "&" + urlencode([OVERRIDES[choice % len(OVERRIDES)], OVERRIDES[(choice + 1) % len(OVERRIDES)]])
        response = self._post(parts.path, body, query=query)
        assert response.status_code == 200 and response.json["status"] == "ok", response.json
        event(f"delivered {block.kind} at step {min(block.step, 6)}{'+' if block.step >= 6 else ''}")
        after = self.h.db.get_call(sid)
        if block.kind in ("play", "gather", "record", "unhold"):
            # the body said the call goes on: whatever the query string said, the caller did not hang
            # up (the call may still end: the flow's next block may be refused by the provider)
            assert after is not None and after.outcome != "caller hung up", (block.kind, after)
        return True

    @precondition(lambda self: self.posted)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """An exact copy of any earlier well-signed request: nothing changes."""
        url, body, headers = data.draw(st.sampled_from(self.posted))
        before = self._snapshot()
        response = self.h.client.post(url, data=body, headers=headers)
        assert response.status_code == 200 and response.is_json, response.get_data(as_text=True)
        assert response.json["status"] == "ignored", response.json
        assert self._snapshot() == before

    @rule(sid=calls, back=st.integers(1, 4), choice=st.integers(0, 59))
    def late_notification(self, sid: str, back: int, choice: int) -> None:
        """A notification (new body) for an earlier step than the current one: nothing changes."""
        row = self.h.db.get_call(sid)
        if row is None or row.step - back < 1:
            return
        step = row.step - back
        urls = [p["notify_url"] for _e, p, _a in self._requests(sid) if _step_of(p.get("notify_url")) == step]
        block = next((b for b in self.h.db.blocks_for(sid) if b.step == step), None)
        if not urls or block is None:
            return
        body = urlencode([*self._fields(sid, block.kind, choice), ("late", str(choice))]).encode()
        if b"call_state=ended" in body:
            return  # a late "ended" is the caller hanging up: a real event, not stale (see hang_up)
        before = self._snapshot()
        parts = urlsplit(urls[-1])
        response = self._post(parts.path, body, query=parts.query)
        assert response.status_code == 200 and response.json["status"] == "ignored", response.json
        assert self._snapshot() == before

    @rule(sid=calls, how=st.sampled_from(["bad_signature", "no_signature", "next_step", "other_calls_sig",
                                          "undecodable", "no_step", "two_steps"]),
          choice=st.integers(0, 59), junk=st.binary(max_size=64))  # fmt: skip
    def forged(self, sid: str, how: str, choice: int, junk: bytes) -> None:
        """Forged notifications are refused (4xx) and change nothing."""
        awaited = self._awaited(sid)
        if awaited is None:
            return
        row, block, url = awaited
        body = urlencode(self._fields(sid, block.kind, choice)).encode()
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        signature: str | None = "sign"
        if how == "bad_signature":
            good = sign_body(body, TOKEN)
            signature = good[:-1] + ("0" if good[-1] != "0" else "1")
        elif how == "no_signature":
            signature = None
        elif how == "next_step":
            query["step"] = str(row.step + 1)
        elif how == "other_calls_sig":
            others = [p["notify_url"] for e, p in self.h.hoiio.requests
                      if p.get("session") not in (None, sid) and p.get("notify_url")]  # fmt: skip
            if not others:
                return
            other = dict(parse_qsl(urlsplit(others[choice % len(others)]).query))
            query["step"], query["sig"] = other["step"], other["sig"]
        elif how == "undecodable":
            body = b"\xff" + junk
        elif how == "no_step":
            query = {}
        elif how == "two_steps":
            query["step"] = [str(row.step), str(row.step + 1)]  # type: ignore[assignment]
        before = self._snapshot()
        response = self._post(parts.path, body, query=urlencode(query, doseq=True), signature=signature)
        assert 400 <= response.status_code < 500, (how, response.status_code, response.json)
        assert self._snapshot() == before

    @rule(sid=calls, choice=st.integers(0, 59))
    def hang_up(self, sid: str, choice: int) -> None:
        """The caller hangs up during the awaited block: the call ends."""
        awaited = self._awaited(sid)
        if awaited is None:
            return
        _row, block, url = awaited
        body = urlencode(self._fields(sid, block.kind, choice, call_state="ended")).encode()
        parts = urlsplit(url)
        response = self._post(parts.path, body, query=parts.query)
        assert response.status_code == 200 and response.json["status"] == "ok", response.json
        after = self.h.db.get_call(sid)
        assert after is not None and after.status == "ended", (block.kind, after)

    @rule(endpoint=st.sampled_from(ENDPOINTS), status=st.sampled_from(REFUSALS), times=st.integers(1, 3))
    def provider_refuses(self, endpoint: str, status: str, times: int) -> None:
        """The next request(s) to an endpoint get a refusal from the provider."""
        self.h.hoiio.answer(endpoint, *([status] * times))

    # ------------------------------------------------------------------ invariants
    def teardown_statistics(self) -> None:
        for sid in self._sessions():
            row = self.h.db.get_call(sid)
            if row is not None:
                event(f"call {row.status}: {row.outcome}")

    @invariant()
    def outbox_and_provider_agree(self) -> None:
        for sid in self._sessions():
            row = self.h.db.get_call(sid)
            if row is None:
                continue
            blocks = self.h.db.blocks_for(sid)
            steps = [b.step for b in blocks]
            assert steps == list(range(1, len(steps) + 1)), (sid, steps)
            assert row.step == (steps[-1] if steps else 0), (sid, row.step, steps)
            assert all(b.status not in ("pending", "sending") for b in blocks), (sid, [b.status for b in blocks])
            # the step only grows, one per issued block
            assert row.step >= self.last_step.get(sid, 0), (sid, row.step, self.last_step.get(sid))
            self.last_step[sid] = row.step
            # carried out by the provider at most once per step; requests in step order, no step skipped
            # except a hold (no notify URL) or a block refused before it could be sent
            requests = self._requests(sid)
            carried = Counter(_step_of(p.get("notify_url")) for _e, p, answer in requests
                              if p.get("notify_url") and answer == "success_ok")  # fmt: skip
            assert all(n == 1 for n in carried.values()), (sid, carried)
            for b in blocks:
                if b.status == "sent" and b.kind != "hold":
                    assert carried[b.step] == 1, (sid, b.step, "recorded sent, not carried out once")
            seen = [_step_of(p.get("notify_url")) for _e, p, _a in requests if p.get("notify_url")]
            assert seen == sorted(seen), (sid, seen)
            by_step = {b.step: b for b in blocks}
            for earlier, later in zip(seen, seen[1:], strict=False):
                for gap in range(earlier + 1, later):
                    assert by_step[gap].kind == "hold" or by_step[gap].attempts == 0, (sid, seen, gap)
            # an ended call never gets another block
            if row.status == "ended":
                if sid not in self.ended:
                    self.ended[sid] = len(requests)
                    assert all(b.created_at <= row.ended_at for b in blocks), sid
                assert len(requests) == self.ended[sid], (sid, "a request for an ended call")


EngineMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)  # fmt: skip
TestEngineMachine = EngineMachine.TestCase
