"""voice/call, conference/call, voice/hangup, voice/query_status and conference/moderate of the fake Hoiio.

A mixin of ``FakeHoiio``: its methods run under the fake's lock and use its bookkeeping. A
``voice/call`` rings dest1, then (if dest1 answered) dest2; each conference participant is its own
call with its own txn_ref, dialled one after another. Who answers comes from the scripts queued
with ``FakeHoiio.script_outbound``; answered calls end at once unless a script says
``stay_on_line``, then they wait for ``voice/hangup``, a ``kick`` or ``FakeHoiio.hangup_caller``.
One notification per call (per participant) when it ends, if a ``notify_url`` was given.

May import the standard library and ``engine.fakes``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from engine.fakes.hoiio_calls import OUTCOMES
from engine.fakes.hoiio_rules import SUCCESS, Refused
from engine.fakes.hoiio_state import OUTGOING_RATE, Call, Delivery, Session


class VoiceConferenceApi:
    """The non-IVR endpoints. Expects ``FakeHoiio``'s attributes and helpers."""

    registered_number: str
    notify_delay: float
    _lock: threading.RLock
    _changed: threading.Condition
    _sessions: dict[str, Session]
    _session_by_txn: dict[str, str]
    _calls: dict[str, Call]
    _rooms: dict[tuple[str, str], set[str]]

    def _voice_call(self, app_id: str, given: Mapping[str, str], after: list[Callable[[], None]]) -> dict:
        dest1 = given.get("dest1", self.registered_number)
        dest2 = given["dest2"]
        if dest1 == dest2:
            raise Refused("error_same_dest1_dest2")
        self._need_lines(1)
        first, second = self._take_outbound(dest1), self._take_outbound(dest2)
        status1 = first.dial
        status2 = second.dial if status1 == "answered" else "failed"  # [I] dest2 is never dialled
        call = self._new_call(app_id, "voice", (dest1, dest2), (status1, status2), given,
                              stay=first.stay_on_line or second.stay_on_line, rate=OUTGOING_RATE * 2)  # fmt: skip
        after.append(lambda: self._later(self.notify_delay, lambda: self._fire_calls([call]), call.txn_ref))
        return {"status": SUCCESS, "txn_ref": call.txn_ref}

    def _conference_call(self, app_id: str, given: Mapping[str, str], after: list[Callable[[], None]]) -> dict:
        dests = given["dest"].split(",")
        self._need_lines(len(dests))
        room = given.get("room") or self._new_room()
        members = self._rooms.setdefault((app_id, room), set())
        calls = []
        for dest in dests:
            script = self._take_outbound(dest)
            call = self._new_call(app_id, "conference", (dest,), (script.dial,), given, stay=script.stay_on_line,
                                  rate=OUTGOING_RATE)  # fmt: skip
            call.room = room
            members.add(call.txn_ref)
            calls.append(call)
        after.append(lambda: self._later(self.notify_delay, lambda: self._fire_calls(calls), room))
        return {"status": SUCCESS, "txn_refs": [c.txn_ref for c in calls], "room": room}

    def _new_call(
        self, app_id: str, kind: str, dests: tuple[str, ...], statuses: tuple[str, ...], given: Mapping[str, str],
        *, stay: bool, rate: Decimal,
    ) -> Call:  # fmt: skip
        call = Call(
            txn_ref=f"AA-C-{self._new_id()}",
            app_id=app_id,
            kind=kind,
            dests=dests,
            statuses=statuses,
            stay=stay,
            created_at=self._clock(),
            rate=rate,
            tag=given.get("tag"),
            notify_url=given.get("notify_url"),
        )
        self._calls[call.txn_ref] = call
        self._changed.notify_all()
        return call

    def _fire_calls(self, calls: list[Call]) -> None:
        deliveries: list[Delivery] = []
        with self._lock:
            for call in calls:  # Hoiio dials conference participants one after another
                if not call.active:
                    continue
                if all(status == "answered" for status in call.statuses):
                    call.connected, call.answered_at = True, self._clock()
                    if call.stay:
                        continue
                deliveries += self._end_call(call, "completed")
        self._deliver_all(deliveries)

    def _end_call(self, call: Call, reason: str) -> list[Delivery]:
        call.active = False
        call.ended_at = self._clock()
        if call.room is not None:
            self._rooms.get((call.app_id, call.room), set()).discard(call.txn_ref)
        self._changed.notify_all()
        if call.notify_url is None:
            return []
        if call.kind == "voice":
            fields = [("dest1", call.dests[0]), ("dest2", call.dests[1]),
                      ("call_status_dest1", call.statuses[0]), ("call_status_dest2", call.statuses[1])]  # fmt: skip
        else:
            fields = [("dest", call.dests[0]), ("call_status_dest", call.statuses[0])]
        fields.append(("txn_ref", call.txn_ref))
        if call.tag is not None:  # "not present if it wasn't included in the initial request"
            fields.append(("tag", call.tag))
        fields += self._billing(call.created_at, call.answered_at, call.ended_at, call.rate)
        return [Delivery(call.notify_url, tuple(fields), call.app_id, None, call.txn_ref)]

    def _find_txn(self, app_id: str, txn_ref: str) -> Session | Call:
        sid = self._session_by_txn.get(txn_ref)
        found: Session | Call | None = self._sessions[sid] if sid is not None else self._calls.get(txn_ref)
        if found is None:
            raise Refused("error_invalid_txn_ref")
        if found.app_id != app_id:
            raise Refused("error_txn_ref_access_denied")
        return found

    def _query_status(self, app_id: str, txn_ref: str) -> dict:
        found = self._find_txn(app_id, txn_ref)
        response: dict[str, Any] = {"status": SUCCESS, "txn_ref": txn_ref}
        if isinstance(found, Session):
            tag = next((b.params.get("tag") for b in found.blocks if b.params.get("tag")), None)
            if tag:
                response["tag"] = tag
            # [I] the docs' "Notes" on dest1/dest2/number per transaction type were not available
            if found.direction == "incoming":
                response.update(dest1=found.caller or "", number=found.to or "")
            else:
                response["dest1"] = found.dest or ""
            response["call_status_dest1"] = _ivr_call_status(found)
            ended, started, answered, end = found.state == "ended", found.created_at, found.answered_at, found.ended_at
            rate = found.rate + found.extra_rate
        else:
            if found.tag is not None:
                response["tag"] = found.tag
            for index, dest in enumerate(found.dests, start=1):
                suffix = str(index) if found.kind == "voice" else "1"
                response[f"dest{suffix}"] = dest
                response[f"call_status_dest{suffix}"] = found.statuses[index - 1] if not found.active else "ongoing"
            ended, started, answered, end = not found.active, found.created_at, found.answered_at, found.ended_at
            rate = found.rate
        billing = dict(self._billing(started, answered, end, rate))
        response.update(date=billing["date"], currency=billing["currency"], rate=billing["rate"])
        if ended:  # duration and debit are absent while the call is in progress
            response.update(duration=billing["duration"], debit=billing["debit"])
        return response

    def _voice_hangup(self, app_id: str, txn_ref: str, after: list[Callable[[], None]]) -> dict:
        found = self._find_txn(app_id, txn_ref)
        self._hang_up_party(found, "voice/hangup", after)
        return {"status": SUCCESS}

    def _moderate(self, app_id: str, txn_ref: str, action: str, after: list[Callable[[], None]]) -> dict:
        found = self._find_txn(app_id, txn_ref)
        if found.room is None:
            raise Refused("error_invalid_txn_ref")  # [I] not a conference participant
        if action == "kick":
            self._hang_up_party(found, "kicked", after)
        else:
            found.muted = action == "mute"
        return {"status": SUCCESS}

    def _hang_up_party(self, found: Session | Call, reason: str, after: list[Callable[[], None]]) -> None:
        """End a call from the API side; ended calls are left alone (the request still succeeds)."""
        if isinstance(found, Session):
            deliveries, key = self._caller_hangs_up(found), found.sid
        else:
            deliveries, key = (self._end_call(found, reason) if found.active else []), found.txn_ref
        if deliveries:
            after.append(lambda: self._later(0, lambda: self._deliver_all(deliveries), key))


def _ivr_call_status(session: Session) -> str:
    if session.state != "ended":
        return "ongoing"
    if session.answered_at is not None:
        return "answered"
    return session.end_reason if session.end_reason in OUTCOMES else "unanswered"
