"""Outbound calls, click-to-call, conferences and VoipNow invites: the logic behind ``/api``.

Each API operation takes the decoded JSON body (or path values) and returns a ``Reply`` (HTTP status
and JSON body) or raises ``ApiError`` (status, machine ``code``, plain-English ``error``, the
``field`` at fault, and for provider refusals the provider's own status and its meaning). The order
is always: validate against the request's JSON Schema (the same schemas the OpenAPI document
publishes, ``SCHEMAS``) and the rules a schema cannot say (``first`` != ``second``, the flow's
``inputs``) -> store the side call (``side_calls``) -> send it -> store the answer -> reply. Nothing
is dialled for a request that fails validation.

Provider requests outside an IVR session (``voice/call``, ``conference/call``, VoipNow invites) are
*side calls*. Hoiio posts one end-of-call notification per ``voice/call`` and per conference
participant to the ``notify_url`` given with the request; the engine points it at ``POST
/hoiio/events?kind=voice|conference&ref=<side call id>&sig=<HMAC>``, never at an IVR notify URL, so
such a notification can never be taken for a step of a call flow. ``receive_event`` records the raw
request (``notifications``), verifies ``X-Hoiio-Signature`` and the engine's own ``sig``, parses it
strictly (``wire.parse_call_event``), dedupes it and stores it (``call_events``).

A flow's ``conference`` node reaches Hoiio through ``CallService`` -> ``client.call()``.
``SideCallRecorder`` wraps the client the service holds, so those side calls are stored and get the
same events URL as the API's own. A flow's ``voipnow_invite`` node goes to the same ``VoipNowClient``
through ``CallService``, which stores it as a ``voipnow/invite`` side call whose ``session`` is the call's.

Storage conventions: ``side_calls.kind`` is the provider API (``voice/call``, ``conference/call``,
``conference/moderate``, ``voipnow/invite``) or ``conference/participant`` (one row per person
dialled into a room, with that person's txn_ref); ``side_calls.session`` holds ``room:<id>`` for
everything about a conference room (a flow's request keeps the call's session in ``request``, and
``Transaction.timeline`` finds it there); ``side_calls.txn_ref`` holds Hoiio's txn_ref or VoipNow's phone
call id. ``call_events.kind`` is ``voice/call`` / ``conference/call`` (end notifications),
``voice/query_status`` or ``voipnow/status`` (answers to on-demand queries).

May import engine.core, engine.providers, engine.storage, engine.service and jsonschema.
Never Flask: the web layer hands over plain values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jsonschema

from engine.core.flow import Flow
from engine.providers.base import Category, SendResult
from engine.providers.hoiio import wire as hoiio_wire
from engine.providers.hoiio.client import HoiioClientError
from engine.providers.hoiio.signature import SIGNATURE_HEADER, sign_step, verify_body, verify_step
from engine.providers.hoiio.statuses import SUCCESS as HOIIO_SUCCESS
from engine.providers.hoiio.statuses import classify as classify_hoiio
from engine.providers.voipnow import wire as voipnow_wire
from engine.service import CallService, Rejected, parse_form
from engine.storage import DatabaseUnavailable, StorageBusy, make_dedupe_key

log = logging.getLogger("engine.outbound")

# --------------------------------------------------------------------------------------------------
# Request schemas (JSON Schema 2020-12, published as-is in the OpenAPI 3.1 document)

E164_PATTERN = r"^\+[1-9][0-9]{7,14}$"
ROOM_PATTERN = r"^[A-Za-z0-9._]{1,32}$"
REF_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
PHONE_CALL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_NUMBERS = 8
MAX_TAG = 256
MAX_DURATION = 86400
MAX_VARS = 50

#: ``x-errors`` (per JSON Schema keyword) word the messages of a failed check; jsonschema ignores it.
SCHEMAS: dict[str, dict[str, Any]] = {
    "PhoneNumber": {
        "type": "string",
        "pattern": E164_PATTERN,
        "description": "An E.164 phone number: + then the country code and number, 8 to 15 digits.",
        "examples": ["+6591234567"],
        "x-errors": {"pattern": "must be an E.164 phone number: + then 8 to 15 digits, e.g. +6591234567"},
    },
    "CallerId": {
        "type": "string",
        "pattern": r"^(\+[1-9][0-9]{7,14}|private)$",
        "description": "The number the called person sees: your registered number, one of your Hoiio numbers "
        "(E.164), or `private`. Default: your registered number.",
        "examples": ["+6531580000"],
        "x-errors": {"pattern": "must be an E.164 phone number (your registered or Hoiio number) or 'private'"},
    },
    "Tag": {
        "type": "string",
        "maxLength": MAX_TAG,
        "pattern": r"^[^\x00-\x1f\x7f]*$",
        "description": "Your own reference, echoed in Hoiio's notifications (at most 256 characters).",
        "x-errors": {"pattern": "must not contain control characters"},
    },
    "RoomId": {
        "type": "string",
        "pattern": ROOM_PATTERN,
        "description": "A conference room ID: 1 to 32 letters, digits, dots and underscores.",
        "examples": ["standup"],
        "x-errors": {"pattern": "must be 1 to 32 letters, digits, '.' or '_'"},
    },
    "Duration": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_DURATION,
        "description": "A whole number of seconds, at least 1.",
    },
    "CallRequest": {
        "type": "object",
        "description": "Start an outbound call flow (a flow whose start node is a dial).",
        "required": ["flow", "to"],
        "additionalProperties": False,
        "properties": {
            "flow": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9_.-]{1,64}$",
                "description": "The flow's file name without .yaml.",
                "examples": ["booking_confirmation"],
                "x-errors": {"pattern": "must be a flow name: letters, digits, '-', '_' and '.'"},
            },
            "to": {"$ref": "#/components/schemas/PhoneNumber"},
            "vars": {
                "type": "object",
                "description": "The flow's inputs (and any other variables), by name.",
                "maxProperties": MAX_VARS,
                "propertyNames": {
                    "pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                    "x-errors": {"pattern": "names must start with a letter or '_' and use letters, digits, '_'"},
                },
                "additionalProperties": {
                    "type": ["string", "number", "boolean"],
                    "maxLength": 1000,
                },
                "x-errors": {"maxProperties": f"must have at most {MAX_VARS} variables"},
            },
            "caller_id": {"$ref": "#/components/schemas/CallerId"},
            "tag": {"$ref": "#/components/schemas/Tag"},
        },
    },
    "ConferenceRequest": {
        "type": "object",
        "description": "Dial up to 8 people into a conference room (Hoiio conference/call).",
        "required": ["numbers"],
        "additionalProperties": False,
        "properties": {
            "numbers": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/PhoneNumber"},
                "minItems": 1,
                "maxItems": MAX_NUMBERS,
                "uniqueItems": True,
                "x-errors": {
                    "maxItems": f"must list at most {MAX_NUMBERS} numbers (Hoiio dials at most 8 into a room)",
                    "minItems": "must list at least one number",
                    "uniqueItems": "must not list the same number twice",
                },
            },
            "room": {"$ref": "#/components/schemas/RoomId"},
            "caller_id": {"$ref": "#/components/schemas/CallerId"},
            "tag": {"$ref": "#/components/schemas/Tag"},
        },
    },
    "CallbackRequest": {
        "type": "object",
        "description": "Click-to-call: ring `first`, then `second`, and join them (Hoiio voice/call).",
        "required": ["first", "second"],
        "additionalProperties": False,
        "properties": {
            "first": {"$ref": "#/components/schemas/PhoneNumber"},
            "second": {"$ref": "#/components/schemas/PhoneNumber"},
            "caller_id": {"$ref": "#/components/schemas/CallerId"},
            "max_duration": {"$ref": "#/components/schemas/Duration"},
            "tag": {"$ref": "#/components/schemas/Tag"},
        },
    },
    "VoipNowInviteRequest": {
        "type": "object",
        "description": "Invite a phone or extension into a scheduled VoipNow conference.",
        "required": ["number"],
        "additionalProperties": False,
        "properties": {
            "number": {
                "type": "string",
                "pattern": r"^(\+[1-9][0-9]{7,14}|[0-9]{1,10}(\*[0-9]{1,10})?)$",
                "description": "Who is invited: an E.164 phone number or an extension number (211, 0003*211).",
                "examples": ["+6591234567"],
                "x-errors": {"pattern": "must be an E.164 phone number (e.g. +6591234567) or an extension number"},
            },
            "conference_number": {
                "type": "string",
                "pattern": r"^[0-9]{1,10}$",
                "description": "The scheduled conference's number; without it the callee is asked for it.",
                "x-errors": {"pattern": "must be 1 to 10 digits"},
            },
            "pin": {
                "type": "string",
                "pattern": r"^[0-9]{1,16}$",
                "description": "The scheduled conference's PIN; without it the callee is asked for it.",
                "x-errors": {"pattern": "must be 1 to 16 digits"},
            },
            "wait_for_pickup": {
                "type": "integer",
                "minimum": 1,
                "maximum": voipnow_wire.MAX_WAIT_FOR_PICKUP,
                "description": "Seconds to ring before giving up (VoipNow's default: 25).",
            },
            "caller_id": {
                "type": "string",
                "pattern": r"^([^<>\x00-\x1f\x7f]{0,64}<\+?[0-9]{1,20}>|\+?[0-9]{1,20})$",
                "description": "What the callee sees: `Name <number>`, or just a number.",
                "examples": ["Acme Support <+6531580000>"],
                "x-errors": {"pattern": "must look like: Acme Support <+6531580000> (or be a phone number)"},
            },
        },
    },
}

_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a list",
    "null": "null",
}


class ApiError(Exception):
    """A refused API request. ``body()`` is its JSON answer."""

    def __init__(self, http_status: int, code: str, message: str, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:  # fmt: skip
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "error", "code": self.code, "error": self.message}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out


@dataclass
class Reply:
    http_status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def decode_json(body: bytes) -> Any:
    """The request body as JSON (UTF-8, no NaN/Infinity); ``ApiError`` 400 otherwise."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object (Content-Type: "
                       "application/json)") from None  # fmt: skip


class RequestValidator:
    """Checks a request body against one of ``SCHEMAS``; the first problem becomes an ``ApiError``
    (422) naming the field, e.g. ``numbers[8]`` or ``vars.customer_name``."""

    def __init__(self, schemas: Mapping[str, Any] = SCHEMAS) -> None:
        self._validators = {
            name: jsonschema.Draft202012Validator(
                {"$ref": f"#/components/schemas/{name}", "components": {"schemas": dict(schemas)}}
            )
            for name in schemas
        }

    def check(self, name: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise ApiError(400, "invalid_json", "the request body must be a JSON object")
        errors = sorted(self._validators[name].iter_errors(payload), key=_error_order)
        if errors:
            field_name, message = _describe(errors[0])
            raise ApiError(422, "invalid_field", f"{field_name}: {message}" if field_name else message,
                           field=field_name or None)  # fmt: skip
        return payload


def _error_order(error: jsonschema.ValidationError) -> tuple:
    return (len(error.absolute_path), [str(p) for p in error.absolute_path], error.validator != "required")


def _field(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    path = list(error.absolute_path)
    keyword = str(error.validator)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    custom = (schema.get("x-errors") or {}).get(keyword)
    value = error.validator_value
    instance = error.instance
    if keyword == "required" and isinstance(instance, Mapping):
        missing = next((name for name in value if name not in instance), "?")
        return _field([*path, missing]), "is required"
    if keyword == "additionalProperties" and isinstance(instance, Mapping):
        known = set(schema.get("properties") or {})
        extra = sorted(str(name) for name in instance if name not in known)
        if known:
            return _field([*path, extra[0] if extra else "?"]), (
                f"is not a known field (expected {', '.join(sorted(known))})"
            )
        return _field([*path, extra[0] if extra else "?"]), "is not allowed here"
    if custom:
        return _field(path), custom
    if keyword == "type":
        wanted = [value] if isinstance(value, str) else list(value)
        return _field(path), "must be " + " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
    if keyword == "maxLength":
        return _field(path), f"must be at most {value} characters long"
    if keyword == "minLength":
        return _field(path), "must not be empty" if value == 1 else f"must be at least {value} characters long"
    if keyword == "minimum":
        return _field(path), f"must be at least {value}"
    if keyword == "maximum":
        return _field(path), f"must be at most {value}"
    if keyword == "maxItems":
        return _field(path), f"must list at most {value} items"
    if keyword == "minItems":
        return _field(path), f"must list at least {value} item(s)"
    if keyword == "uniqueItems":
        return _field(path), "must not repeat an item"
    if keyword == "maxProperties":
        return _field(path), f"must have at most {value} entries"
    if keyword == "pattern":
        return _field(path), "has the wrong format"
    if keyword == "enum":
        return _field(path), "must be one of " + ", ".join(str(v) for v in value)
    return _field(path), "is not valid"


# --------------------------------------------------------------------------------------------------
# Provider errors


#: Which request field a Hoiio refusal is about, per operation.
_HOIIO_FIELDS: dict[str, dict[str, str]] = {
    "call": {"error_dest_invalid": "to", "error_dest_not_supported": "to", "error_number_not_supported": "to",
             "error_not_allowed_for_trial": "to", "error_caller_id_invalid": "caller_id",
             "error_tag_invalid_length": "tag"},
    "conference": {"error_dest_invalid": "numbers", "error_dest_not_supported": "numbers",
                   "error_number_not_supported": "numbers", "error_not_allowed_for_trial": "numbers",
                   "error_invalid_room": "room", "error_caller_id_invalid": "caller_id",
                   "error_tag_invalid_length": "tag"},
    "callback": {"error_dest1_invalid": "first", "error_dest1_not_supported": "first",
                 "error_dest2_invalid": "second", "error_dest2_not_supported": "second",
                 "error_same_dest1_dest2": "second", "error_caller_id_invalid": "caller_id",
                 "error_invalid_max_duration": "max_duration", "error_max_duration_invalid": "max_duration",
                 "error_not_allowed_for_trial": "second", "error_tag_invalid_length": "tag"},
}  # fmt: skip


def provider_error(provider: str, status: str, meaning: str, what: str, *, category: Category | None = None,
                   maybe_delivered: bool = False, field: str | None = None, **extra: Any) -> ApiError:  # fmt: skip
    """A provider's refusal as a 502 answer naming its status and what it means."""
    name = {"hoiio": "Hoiio", "voipnow": "VoipNow"}.get(provider, provider)
    message = f"{name} refused {what}: {status} ({meaning})"
    if maybe_delivered:
        message = f"{name} did not confirm {what}: {status} ({meaning}); it may or may not have been carried out"
    return ApiError(
        502, "provider_error", message, field=field, provider=provider, provider_status=status, meaning=meaning,
        retryable=category is Category.RETRY, maybe_delivered=maybe_delivered or None, **extra,
    )  # fmt: skip


def _hoiio_error(result: SendResult, what: str, operation: str, **extra: Any) -> ApiError:
    return provider_error(
        "hoiio", result.status, result.meaning or classify_hoiio(result.status).meaning, what,
        category=result.category, maybe_delivered=result.maybe_delivered,
        field=_HOIIO_FIELDS.get(operation, {}).get(result.status), **extra,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The service

RECORDED_APIS = frozenset({"voice/call", "conference/call"})
_EVENT_KINDS = {"voice": "voice/call", "conference": "conference/call"}
_SIDE_STATES = {"sending": "sending", "sent": "in_progress", "active": "in_progress", "failed": "failed",
                "unknown": "unknown", "ended": "ended"}  # fmt: skip
_SHOWN_FIELDS = ("ivr_block", "call_state", "dial_status", "transfer_status")


class Outbound:
    """Everything ``/api`` and ``/hoiio/events`` do, on top of the ``CallService``."""

    def __init__(self, service: CallService, *, voipnow: Any = None, clock: Callable[[], float] = time.monotonic):
        self.service = service
        self.settings = service.settings
        self.db = service.db
        self.flows = service.flows
        self.hoiio = service.client  # the plain client: this object records side calls itself
        self.voipnow = voipnow
        self.validator = RequestValidator()
        self._clock = clock

    # ------------------------------------------------------------------ outbound flows
    def start_call(self, payload: Any) -> Reply:
        data = self.validator.check("CallRequest", payload)
        name = data["flow"]
        flow = self.flows.get(name)
        if flow is None or not flow.outbound:
            raise ApiError(404, "unknown_flow", f"flow: there is no outbound flow named {name!r} (an outbound "
                           "flow starts with a dial node)", field="flow")  # fmt: skip
        variables = dict(data.get("vars") or {})
        for needed in self.inputs_of(flow):
            if needed not in variables:
                raise ApiError(422, "invalid_field", f"vars.{needed}: is required by flow {name!r} (its inputs: "
                               f"{', '.join(self.inputs_of(flow))})", field=f"vars.{needed}")  # fmt: skip
        try:
            outcome = self.service.start_outbound(
                name, to=data["to"], vars=variables, caller_id=data.get("caller_id"), tag=data.get("tag")
            )
        except Rejected as exc:
            if exc.http_status == 404:
                raise ApiError(404, "unknown_flow", f"flow: {exc.reason}", field="flow") from None
            field_name = exc.reason.split(":", 1)[0] if ":" in exc.reason else "vars"
            raise ApiError(422, "invalid_field", exc.reason, field=field_name) from None
        session = outcome.body.get("session")
        blocks = outcome.body.get("blocks") or []
        row = self.db.get_call(session) if session else None
        if not blocks:
            why = (row.outcome if row is not None else None) or outcome.body.get("outcome") or "nothing was sent"
            raise ApiError(422, "not_dialled", f"the flow did not dial: {why}", field="vars", session=session)
        status = blocks[0].get("provider_status") or ""
        if status == "error_invalid_block":
            stored = self.db.blocks_for(session)
            why = stored[0].error if stored and stored[0].error else "the dial request could not be built"
            raise ApiError(422, "not_dialled", f"the dial request could not be built: {why}", session=session)
        if status != HOIIO_SUCCESS:
            info = classify_hoiio(status)
            blocks_rows = self.db.blocks_for(session)
            maybe = bool(blocks_rows) and blocks_rows[0].status == "unknown"
            raise provider_error("hoiio", status, info.meaning, "the dial", category=info.category,
                                 maybe_delivered=maybe, field=_HOIIO_FIELDS["call"].get(status),
                                 session=session)  # fmt: skip
        state = row.call_state() if row is not None else None
        return Reply(201, {
            "status": "ok",
            "session": session,
            "flow": name,
            "to": data["to"],
            "txn_ref": row.txn_ref if row is not None else None,
            "hoiio_session": state.call.get("session") if state is not None else None,
            "call_status": row.status if row is not None else outcome.body.get("call_status"),
            "node": row.node if row is not None else outcome.body.get("node"),
            "links": {"self": f"/api/calls/{session}"},
        }, {"Location": f"/api/calls/{session}"})  # fmt: skip

    @staticmethod
    def inputs_of(flow: Flow) -> tuple[str, ...]:
        """The ``inputs`` an outbound flow declares: each must be given in ``vars``."""
        return tuple(getattr(flow, "inputs", ()) or ())

    # ------------------------------------------------------------------ what is known of a call
    def call_info(self, ref: str, *, refresh: bool = False) -> Reply:
        if not re.fullmatch(REF_PATTERN, ref):
            raise ApiError(422, "invalid_field", "txn_ref: must be 1 to 64 letters, digits, '.', '-' or '_'",
                           field="txn_ref")  # fmt: skip
        call = self.db.get_call(ref) or self._call_by_txn_ref(ref)
        sides = [r for r in self.db.side_calls(txn_ref=ref) if r.kind in ("voice/call", "conference/participant")]
        if call is None and not sides:
            raise ApiError(404, "unknown_call", f"no call with the session or txn_ref {ref!r} was placed here")
        txn_ref = call.txn_ref if call is not None else ref
        body: dict[str, Any] = {"status": "ok", "ref": ref, "txn_ref": txn_ref}
        if call is not None:
            body.update(kind="flow", state=call.status, session=call.session, flow=self._flow_view(call))
        else:
            side = sides[-1]
            body.update(kind="conference/call" if side.kind == "conference/participant" else "voice/call",
                        state=_SIDE_STATES.get(side.status, side.status),
                        request=_public_request(side.request))  # fmt: skip
            if side.kind == "conference/participant":
                body["room"] = (side.request or {}).get("room")
        events = self.db.call_events(txn_ref) if txn_ref else []
        ends = [e for e in events if e.kind in RECORDED_APIS]
        if ends:
            last = ends[-1].payload
            body["legs"] = last.get("legs", [])
            body["billing"] = last.get("billing")
            if body["kind"] != "flow":
                body["state"] = "ended"
        body["events"] = [{"kind": e.kind, "received_at": e.received_at.isoformat(), "payload": e.payload}
                          for e in events]  # fmt: skip
        if refresh:
            if not txn_ref:
                raise ApiError(409, "no_txn_ref", "Hoiio has not given this call a txn_ref yet: try again shortly")
            result = self.hoiio.call("voice/query_status", [("txn_ref", txn_ref)])
            if not result.ok:
                raise _hoiio_error(result, "the status query", "query")
            live = {k: v for k, v in dict(result.data).items() if k != "status"}
            self.db.record_call_event(txn_ref, "voice/query_status", live)
            body["hoiio"] = live
        return Reply(200, body)

    def _call_by_txn_ref(self, txn_ref: str) -> Any:
        import sqlalchemy as sa

        from engine.storage.repository import CallRow
        from engine.storage.tables import calls

        with self.db.reading() as tx:
            found = tx.conn.execute(
                sa.select(calls).where(calls.c.txn_ref == txn_ref).order_by(calls.c.id.desc()).limit(1)
            ).mappings().first()
        return None if found is None else CallRow(**{f.name: found[f.name] for f in dataclasses.fields(CallRow)})

    def _flow_view(self, call: Any) -> dict[str, Any]:
        notes = []
        for row in reversed(self.db.recent_notifications(100, session=call.session)):
            fields = dict(parse_qsl(bytes(row.body).decode("utf-8", "replace"), keep_blank_values=True))
            notes.append({
                "received_at": row.received_at.isoformat(),
                "outcome": row.outcome,
                "step": row.step,
                **{name: fields[name] for name in _SHOWN_FIELDS if fields.get(name)},
            })  # fmt: skip
        return {
            "name": call.flow,
            "version": call.flow_version,
            "node": call.node,
            "step": call.step,
            "status": call.status,
            "outcome": call.outcome,
            "dest": call.dest,
            "created_at": call.created_at.isoformat(),
            "ended_at": call.ended_at.isoformat() if call.ended_at else None,
            "notifications": notes,
        }

    # ------------------------------------------------------------------ click-to-call
    def start_callback(self, payload: Any) -> Reply:
        data = self.validator.check("CallbackRequest", payload)
        if data["first"] == data["second"]:
            raise ApiError(422, "invalid_field", "second: must differ from first", field="second")
        params = [("dest1", data["first"]), ("dest2", data["second"])]
        params += [(name, str(_whole(data[name]))) for name in ("caller_id", "max_duration", "tag") if name in data]
        _, result = self.side_call("voice/call", params, origin="api")
        if not result.ok:
            raise _hoiio_error(result, "the call", "callback")
        txn_ref = result.data.get("txn_ref")
        return Reply(201, {
            "status": "ok",
            "txn_ref": txn_ref,
            "first": data["first"],
            "second": data["second"],
            "state": "in_progress",
            "links": {"self": f"/api/calls/{txn_ref}"},
        }, {"Location": f"/api/calls/{txn_ref}"})  # fmt: skip

    # ------------------------------------------------------------------ conferences
    def start_conference(self, payload: Any) -> Reply:
        data = self.validator.check("ConferenceRequest", payload)
        numbers = list(data["numbers"])
        params = [("dest", ",".join(numbers))]
        params += [(name, data[name]) for name in ("room", "caller_id", "tag") if name in data]
        _, result = self.side_call("conference/call", params, origin="api")
        if not result.ok:
            raise _hoiio_error(result, "the conference call", "conference")
        room = result.data.get("room") or data.get("room")
        txn_refs = list(result.data.get("txn_refs") or [])
        participants = [{"txn_ref": t, "number": n, "state": "in_progress"}
                        for n, t in zip(numbers, txn_refs, strict=False)]  # fmt: skip
        return Reply(201, {
            "status": "ok",
            "room": room,
            "participants": participants,
            "links": {"self": f"/api/conferences/{room}"},
        }, {"Location": f"/api/conferences/{room}"})  # fmt: skip

    def conference(self, room: str) -> Reply:
        _check_room(room)
        rows = self.db.side_calls(session=f"room:{room}")
        legs = [r for r in rows if r.kind == "conference/participant"]
        if not legs:
            raise ApiError(404, "unknown_room", f"no one was dialled into room {room!r} from here")
        participants = []
        for leg in legs:
            moderation = [r for r in rows if r.kind == "conference/moderate" and r.txn_ref == leg.txn_ref
                          and r.status == "sent"]  # fmt: skip
            muted = False
            kicked = False
            for action in (m.request.get("action") for m in moderation):
                muted = {"mute": True, "unmute": False}.get(action, muted)
                kicked = kicked or action == "kick"
            ends = [e for e in self.db.call_events(leg.txn_ref) if e.kind == "conference/call"]
            end = ends[-1].payload if ends else None
            legs_seen = end.get("legs") if end else None
            participants.append({
                "txn_ref": leg.txn_ref,
                "number": leg.request.get("number"),
                "state": "ended" if end else ("kicked" if kicked else "in_progress"),
                "result": legs_seen[0].get("status") if legs_seen else None,
                "muted": muted,
                "kicked": kicked,
                "billing": end.get("billing") if end else None,
                "origin": leg.request.get("origin"),
            })  # fmt: skip
        active = sum(1 for p in participants if p["state"] == "in_progress")
        return Reply(200, {"status": "ok", "room": room, "active": active, "participants": participants})

    def moderate(self, room: str, txn_ref: str, action: str) -> Reply:
        _check_room(room)
        if not re.fullmatch(REF_PATTERN, txn_ref):
            raise ApiError(422, "invalid_field", "txn_ref: must be 1 to 64 letters, digits, '.', '-' or '_'",
                           field="txn_ref")  # fmt: skip
        if action not in ("kick", "mute", "unmute"):
            raise ApiError(404, "unknown_action", "the action must be kick, mute or unmute")
        known = [r for r in self.db.side_calls(txn_ref=txn_ref)
                 if r.kind == "conference/participant" and r.session == f"room:{room}"]  # fmt: skip
        if not known:
            raise ApiError(404, "unknown_participant", f"no participant {txn_ref!r} was dialled into room {room!r} "
                           "from here")  # fmt: skip
        ref = self.db.add_side_call("conference/moderate", {"action": action, "room": room}, txn_ref=txn_ref,
                                    session=f"room:{room}", status="sending")  # fmt: skip
        try:
            result = self.hoiio.call("conference/moderate", [("txn_ref", txn_ref), ("action", action)])
        except (hoiio_wire.BlockError, HoiioClientError) as exc:
            self.db.update_side_call(ref, "failed", {"error": str(exc)[:500]})
            raise ApiError(422, "invalid_request", f"the moderation request could not be built: {exc}") from None
        self.db.update_side_call(ref, _sent_status(result), _response_record(result))
        if not result.ok:
            raise _hoiio_error(result, f"the {action}", "moderate")
        return Reply(200, {"status": "ok", "room": room, "txn_ref": txn_ref, "action": action})

    # ------------------------------------------------------------------ side calls
    def events_url(self, kind: str, ref: int) -> str:
        sig = sign_step(self.settings.step_secret, f"events:{kind}", ref)
        return f"{self.settings.public_url}/hoiio/events?{urlencode({'kind': kind, 'ref': ref, 'sig': sig})}"

    def side_call(self, api: str, params: Sequence[tuple[str, str]], *, origin: str,
                  session: str | None = None) -> tuple[int, SendResult]:  # fmt: skip
        """Store, send and store the answer of a Hoiio ``voice/call`` or ``conference/call``. Adds a
        ``notify_url`` to ``/hoiio/events`` unless one is given. Raises what ``client.call`` raises
        (``BlockError``, ``HoiioClientError``) after marking the side call failed. ``session``: the
        flow call that made it; kept in the request (the row's own ``session`` is ``room:<id>`` when
        there is a room)."""
        params = [(str(k), str(v)) for k, v in params]
        given = dict(params)
        room = given.get("room") if api == "conference/call" else None
        request: dict[str, Any] = {"params": {k: v for k, v in given.items() if k != "notify_url"}, "origin": origin}
        if session:
            request["session"] = session
        ref = self.db.add_side_call(api, request, session=f"room:{room}" if room else session, status="sending")
        if "notify_url" not in given and api in RECORDED_APIS:
            kind = "voice" if api == "voice/call" else "conference"
            params.append(("notify_url", self.events_url(kind, ref)))
        try:
            result = self.hoiio.call(api, params)
        except (hoiio_wire.BlockError, HoiioClientError) as exc:
            self.db.update_side_call(ref, "failed", {"error": str(exc)[:500]})
            raise
        data = dict(result.data or {})
        txn_ref = data.get("txn_ref") if isinstance(data.get("txn_ref"), str) else None
        self.db.update_side_call(ref, _sent_status(result), _response_record(result), txn_ref=txn_ref)
        if result.ok and api == "conference/call":
            room = data.get("room") if isinstance(data.get("room"), str) else room
            numbers = [n for n in given.get("dest", "").split(",") if n]
            refs = [t for t in data.get("txn_refs") or [] if isinstance(t, str)]
            with self.db.transaction() as tx:
                for number, leg in zip(numbers, refs, strict=False):
                    tx.add_side_call("conference/participant",
                                     {"number": number, "room": room, "request_id": ref, "origin": origin},
                                     txn_ref=leg, session=f"room:{room}" if room else session,
                                     status="active")  # fmt: skip
        return ref, result

    def recording_client(self) -> SideCallRecorder:
        return SideCallRecorder(self.hoiio, self)

    # ------------------------------------------------------------------ notifications of side calls
    def receive_event(self, *, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
                      body: bytes) -> Reply:  # fmt: skip
        started = self._clock()
        kept = {k: v for k, v in headers.items()
                if k.lower() in ("content-type", "content-length", "user-agent", SIGNATURE_HEADER.lower())}
        record_id = self.db.record_notification(
            route=f"{method} {path}", method=method,
            query_string=urlencode([(k, v) for k, vs in query.items() for v in vs]), headers=kept, body=body,
        )  # fmt: skip
        record = "accepted"
        try:
            reply = self._event(query, headers, body, record_id)
            record = "duplicate" if reply.body.get("status") == "ignored" else "accepted"
        except ApiError as exc:
            reply = Reply(exc.http_status, exc.body())
            record = {403: "refused"}.get(exc.http_status, "invalid")
        except (StorageBusy, DatabaseUnavailable) as exc:
            reply = Reply(503, {"status": "error", "code": "database_unavailable",
                                "error": "the database is unavailable; nothing was done"})  # fmt: skip
            record = "error"
            log.error("database trouble while storing a call event: %s", exc)
        try:
            self.db.finish_notification(record_id, outcome=record, reason=reply.body.get("error"),
                                        response=reply.body, duration_ms=(self._clock() - started) * 1000)
        except (StorageBusy, DatabaseUnavailable):
            log.error("could not record how call event notification %s was handled", record_id)
        return reply

    def _event(self, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes,
               record_id: int) -> Reply:  # fmt: skip
        # Authenticity first: nothing about an unsigned request is worth parsing.
        kind = _single(query, "kind") or ""
        raw_ref = _single(query, "ref") or ""
        ref = int(raw_ref) if raw_ref.isascii() and raw_ref.isdigit() and len(raw_ref) <= 12 else -1
        if not verify_step(self.settings.step_secret, f"events:{kind}", ref, _ascii(_single(query, "sig"))):
            raise ApiError(403, "refused", "this events URL (kind, ref, sig) is not one this server signed")
        if kind not in _EVENT_KINDS:
            raise ApiError(400, "invalid_notification", "kind must be voice or conference")
        if self.settings.verify_signatures and not verify_body(
            body, _ascii(headers.get(SIGNATURE_HEADER)), self.settings.hoiio_access_token
        ):
            raise ApiError(403, "refused", f"{SIGNATURE_HEADER} is missing or does not match the body")
        try:
            fields = parse_form(body)
        except Rejected as exc:
            raise ApiError(400, "invalid_notification", exc.reason) from None
        try:
            event = hoiio_wire.parse_call_event(fields)
        except hoiio_wire.NotificationError as exc:
            raise ApiError(400, "invalid_notification", f"{exc.field}: {exc.reason}") from None
        if event.api != _EVENT_KINDS[kind]:
            raise ApiError(400, "invalid_notification", f"a {event.api} notification was posted to the "
                           f"{_EVENT_KINDS[kind]} events URL")  # fmt: skip
        payload = {
            "ref": ref,
            "legs": [{"number": leg.dest, "status": leg.status} for leg in event.legs],
            "tag": event.tag,
            "billing": dataclasses.asdict(event.billing) if event.billing else None,
            "extra": dict(event.extra),
        }
        dedupe = make_dedupe_key("events", kind, ref, hashlib.sha256(body).hexdigest())
        with self.db.transaction() as tx:
            if not tx.claim_notification(dedupe, notification_id=record_id):
                return Reply(200, {"status": "ignored", "reason": "this notification was already received",
                                   "txn_ref": event.txn_ref})  # fmt: skip
            tx.record_call_event(event.txn_ref, event.api, payload)
            for row in tx.side_calls(txn_ref=event.txn_ref):
                if row.kind in ("voice/call", "conference/participant"):
                    tx.update_side_call(row.id, "ended")
        return Reply(200, {"status": "ok", "kind": event.api, "txn_ref": event.txn_ref})

    # ------------------------------------------------------------------ VoipNow
    def _voipnow(self) -> Any:
        if self.voipnow is None:
            raise ApiError(503, "voipnow_not_configured", "VoipNow is not configured: set VOIPNOW_URL, "
                           "VOIPNOW_TOKEN and VOIPNOW_EXTENSION")  # fmt: skip
        return self.voipnow

    def voipnow_invite(self, payload: Any) -> Reply:
        data = self.validator.check("VoipNowInviteRequest", payload)
        client = self._voipnow()
        request = {k: data[k] for k in ("number", "conference_number", "pin", "wait_for_pickup", "caller_id")
                   if k in data}  # fmt: skip
        request["extension"] = client.extension
        ref = self.db.add_side_call("voipnow/invite", request, status="sending")
        try:
            result = client.invite(
                data["number"], conference_number=data.get("conference_number"), pin=data.get("pin"),
                wait_for_pickup=_whole(data.get("wait_for_pickup")), caller_id=data.get("caller_id"),
            )  # fmt: skip
        except voipnow_wire.InviteError as exc:
            self.db.update_side_call(ref, "failed", {"error": str(exc)})
            raise ApiError(422, "invalid_field", f"{exc.field}: {exc.reason}", field=exc.field) from None
        ids = [i for i in (result.data or {}).get("ids", []) if isinstance(i, str)]
        self.db.update_side_call(ref, _sent_status(result), _response_record(result),
                                 txn_ref=ids[0] if ids else None)  # fmt: skip
        if not result.ok:
            info = voipnow_wire.classify(result.status)
            raise provider_error("voipnow", result.status, result.meaning, "the conference invite",
                                 category=result.category, maybe_delivered=result.maybe_delivered,
                                 field=info.field)  # fmt: skip
        phone_call_id = ids[0] if ids else None
        link = f"/api/conferences/voipnow/invites/{phone_call_id}" if phone_call_id else None
        return Reply(201, {
            "status": "ok",
            "id": phone_call_id,
            "number": data["number"],
            "extension": client.extension,
            "links": {"self": link},
        }, {"Location": link} if link else {})  # fmt: skip

    def _invite_row(self, phone_call_id: str) -> Any:
        if not re.fullmatch(PHONE_CALL_ID_PATTERN, phone_call_id):
            raise ApiError(422, "invalid_field", "id: must be 1 to 64 letters, digits, '-' or '_'", field="id")
        rows = [r for r in self.db.side_calls(txn_ref=phone_call_id) if r.kind == "voipnow/invite"]
        if not rows:
            raise ApiError(404, "unknown_invite", f"no VoipNow invite {phone_call_id!r} was made here")
        return rows[-1]

    def voipnow_invite_status(self, phone_call_id: str) -> Reply:
        row = self._invite_row(phone_call_id)
        client = self._voipnow()
        result = client.phone_call(phone_call_id)
        if not result.ok:
            raise provider_error("voipnow", result.status, result.meaning, "the status query",
                                 category=result.category)  # fmt: skip
        phone_call = (result.data or {}).get("phone_call")
        described = voipnow_wire.describe_phone_call(phone_call)
        if phone_call is None:
            described["state"] = "ended"
        self.db.record_call_event(phone_call_id, "voipnow/status", {**described, "phone_call": phone_call})
        if described["state"] == "ended" and row.status != "ended":
            self.db.update_side_call(row.id, "ended")
        return Reply(200, {
            "status": "ok",
            "id": phone_call_id,
            "number": (row.request or {}).get("number"),
            "state": described["state"],
            "answered_at": described["answered_at"],
            "phone_call": phone_call,
        })  # fmt: skip

    def voipnow_hangup(self, phone_call_id: str) -> Reply:
        row = self._invite_row(phone_call_id)
        client = self._voipnow()
        result = client.hang_up(phone_call_id)
        if not result.ok:
            raise provider_error("voipnow", result.status, result.meaning, "the hang-up", category=result.category)
        hung_up = phone_call_id in (result.data or {}).get("ids", [])
        self.db.update_side_call(row.id, "ended")
        return Reply(200, {"status": "ok", "id": phone_call_id, "hung_up": hung_up, "state": "ended"})


class SideCallRecorder:
    """The Hoiio client as the ``CallService`` holds it once the API is installed: IVR blocks go
    straight through; ``voice/call`` and ``conference/call`` (a flow's ``conference`` node) are
    stored as side calls and get the ``/hoiio/events`` notify URL. Anything else is the client's."""

    def __init__(self, inner: Any, outbound: Outbound) -> None:
        self._inner = inner
        self._outbound = outbound
        self.name = getattr(inner, "name", "hoiio")

    def send_block(self, block: Any, *, session: str, notify_url: str | None,
                   monitor_notify_url: str | None = None) -> SendResult:  # fmt: skip
        return self._inner.send_block(block, session=session, notify_url=notify_url,
                                      monitor_notify_url=monitor_notify_url)  # fmt: skip

    #: ``CallService`` passes the call's session to ``call`` (kept in the stored side call).
    accepts_session = True

    def call(self, api: str, params: Sequence[tuple[str, str]], *, session: str | None = None) -> SendResult:
        if api in RECORDED_APIS:
            return self._outbound.side_call(api, params, origin="flow", session=session)[1]
        return self._inner.call(api, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"SideCallRecorder({self._inner!r})"


def _check_room(room: str) -> None:
    if not re.fullmatch(ROOM_PATTERN, room):
        raise ApiError(422, "invalid_field", "room: must be 1 to 32 letters, digits, '.' or '_'", field="room")


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name) or []
    return values[0] if len(values) == 1 else None


def _whole(value: Any) -> Any:
    """JSON Schema counts 600.0 as an integer; providers want ``600``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _ascii(value: str | None) -> str | None:
    """A signature as given, or None when it has characters no signature has (``hmac.compare_digest``
    refuses to compare non-ASCII text)."""
    return value if value is not None and value.isascii() else None


def _sent_status(result: SendResult) -> str:
    return "sent" if result.ok else ("unknown" if result.maybe_delivered else "failed")


def _response_record(result: SendResult) -> dict[str, Any]:
    return {"status": result.status, "meaning": result.meaning, "http_status": result.http_status,
            "attempts": result.attempts, "data": dict(result.data or {})}  # fmt: skip


def _public_request(request: Any) -> Any:
    if isinstance(request, Mapping) and isinstance(request.get("params"), Mapping):
        return {k: v for k, v in request["params"].items() if k != "notify_url"}
    return request


__all__ = ["ApiError", "Outbound", "Reply", "RequestValidator", "SCHEMAS", "SideCallRecorder", "decode_json"]
