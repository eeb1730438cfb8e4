"""The OpenAPI 3.1 document of ``/api`` (served at ``GET /api/openapi.json``).

Request bodies are ``engine.outbound.SCHEMAS``, the very schemas every request is validated against
before anything is dialled, so the document and the checks cannot drift apart. Responses are
described here; the tests run schemathesis against this document and the live app.

May import ``engine.outbound`` and the standard library; never Flask.
"""

from __future__ import annotations

import copy
from typing import Any

from engine.outbound import PHONE_CALL_ID_PATTERN, REF_PATTERN, ROOM_PATTERN, SCHEMAS

API_VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_STRING = {"type": "string"}
_LINKS = {"type": "object", "required": ["self"], "properties": {"self": _nullable(_STRING)}}
_LEG = {
    "type": "object",
    "properties": {"number": _nullable(_STRING), "status": _nullable(_STRING)},
}
_BILLING = {
    "type": "object",
    "description": "Hoiio's billing fields, as strings: date, duration (minutes), currency, rate, debit.",
    "properties": {name: _nullable(_STRING) for name in ("date", "duration", "currency", "rate", "debit")},
}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every refusal. `field` names the request field at fault; a provider's refusal adds "
        "`provider`, its own `provider_status` and what that status means.",
        "required": ["status", "error"],
        "properties": {
            "status": {"const": "error"},
            "error": {"type": "string", "description": "What went wrong, in plain English."},
            "code": {"type": "string", "description": "A machine-readable reason, e.g. invalid_field."},
            "field": {"type": "string"},
            "provider": {"type": "string", "enum": ["hoiio", "voipnow"]},
            "provider_status": {"type": "string", "examples": ["error_dest_invalid", "pc_pin_invalid"]},
            "meaning": {"type": "string"},
            "retryable": {"type": "boolean"},
            "maybe_delivered": {"type": "boolean"},
            "session": {"type": "string"},
        },
    },
    "CallStarted": {
        "type": "object",
        "required": ["status", "session", "flow", "to", "links"],
        "properties": {
            "status": {"const": "ok"},
            "session": {"type": "string", "description": "The engine's key for this call (GET /api/calls/{ref})."},
            "flow": _STRING,
            "to": _STRING,
            "txn_ref": _nullable(_STRING),
            "hoiio_session": _nullable(_STRING),
            "call_status": _STRING,
            "node": _nullable(_STRING),
            "links": _LINKS,
        },
    },
    "CallInfo": {
        "type": "object",
        "required": ["status", "ref", "kind", "state", "events"],
        "properties": {
            "status": {"const": "ok"},
            "ref": _STRING,
            "kind": {"type": "string", "enum": ["flow", "voice/call", "conference/call"]},
            "txn_ref": _nullable(_STRING),
            "state": {"type": "string", "description": "flow: active | ended; side calls: sending | in_progress | "
                      "failed | unknown | ended"},
            "session": _STRING,
            "room": _nullable(_STRING),
            "flow": {"type": "object", "description": "For an outbound flow: where it is and the notifications "
                     "received (dial results included)."},
            "request": {"type": "object"},
            "legs": {"type": "array", "items": _LEG},
            "billing": _nullable(_BILLING),
            "events": {"type": "array", "items": {"type": "object", "required": ["kind", "received_at"]}},
            "hoiio": {"type": "object", "description": "Hoiio's voice/query_status answer (with ?refresh=1)."},
        },
    },
    "CallbackStarted": {
        "type": "object",
        "required": ["status", "txn_ref", "first", "second", "state", "links"],
        "properties": {
            "status": {"const": "ok"},
            "txn_ref": _nullable(_STRING),
            "first": _STRING,
            "second": _STRING,
            "state": _STRING,
            "links": _LINKS,
        },
    },
    "ConferenceStarted": {
        "type": "object",
        "required": ["status", "room", "participants", "links"],
        "properties": {
            "status": {"const": "ok"},
            "room": _nullable(_STRING),
            "participants": {
                "type": "array",
                "items": {"type": "object", "required": ["txn_ref", "number", "state"]},
            },
            "links": _LINKS,
        },
    },
    "Conference": {
        "type": "object",
        "required": ["status", "room", "active", "participants"],
        "properties": {
            "status": {"const": "ok"},
            "room": _STRING,
            "active": {"type": "integer", "minimum": 0},
            "participants": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["txn_ref", "number", "state", "result", "muted", "kicked"],
                    "properties": {
                        "txn_ref": _STRING,
                        "number": _nullable(_STRING),
                        "state": {"type": "string", "enum": ["in_progress", "kicked", "ended"]},
                        "result": _nullable(_STRING),
                        "muted": {"type": "boolean"},
                        "kicked": {"type": "boolean"},
                        "billing": _nullable(_BILLING),
                        "origin": _nullable(_STRING),
                    },
                },
            },
        },
    },
    "Moderated": {
        "type": "object",
        "required": ["status", "room", "txn_ref", "action"],
        "properties": {
            "status": {"const": "ok"},
            "room": _STRING,
            "txn_ref": _STRING,
            "action": {"type": "string", "enum": ["kick", "mute", "unmute"]},
        },
    },
    "InviteCreated": {
        "type": "object",
        "required": ["status", "id", "number", "extension", "links"],
        "properties": {
            "status": {"const": "ok"},
            "id": _nullable(_STRING),
            "number": _STRING,
            "extension": _STRING,
            "links": _LINKS,
        },
    },
    "InviteStatus": {
        "type": "object",
        "required": ["status", "id", "state"],
        "properties": {
            "status": {"const": "ok"},
            "id": _STRING,
            "number": _nullable(_STRING),
            "state": {"type": "string", "description": "ended, or VoipNow's view status: unknown, off_hook, "
                      "trying, ringing, other_side_ringing, on_call"},
            "answered_at": _nullable(_STRING),
            "phone_call": _nullable({"type": "object"}),
        },
    },
    "InviteHungUp": {
        "type": "object",
        "required": ["status", "id", "hung_up", "state"],
        "properties": {
            "status": {"const": "ok"},
            "id": _STRING,
            "hung_up": {"type": "boolean"},
            "state": {"const": "ended"},
        },
    },
    "EventReceived": {
        "type": "object",
        "required": ["status", "txn_ref"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "ignored"]},
            "kind": {"type": "string", "enum": ["voice/call", "conference/call"]},
            "txn_ref": _STRING,
            "reason": _STRING,
        },
    },
    "CallEventForm": {
        "type": "object",
        "description": "Hoiio's end-of-call notification: a voice/call (dest1, dest2, call_status_dest1/2) or "
        "one conference/call participant (dest, call_status_dest), with billing.",
        "required": ["txn_ref"],
        "properties": {
            name: _STRING
            for name in ("txn_ref", "dest", "call_status_dest", "dest1", "dest2", "call_status_dest1",
                         "call_status_dest2", "tag", "date", "duration", "currency", "rate", "debit")
        },  # fmt: skip
    },
}

_ERRORS = {
    "400": ("BadRequest", "The body is not a JSON object."),
    "401": ("Unauthorized", "No or a wrong bearer token (Authorization: Bearer $IVR_API_TOKEN)."),
    "404": ("NotFound", "No such flow, call, room, participant or invite."),
    "409": ("Conflict", "The call has no Hoiio txn_ref yet."),
    "422": ("Invalid", "A field is missing or invalid; `field` names it. Nothing was dialled."),
    "429": ("TooManyAttempts", "Too many wrong tokens from this address (10 in 5 minutes per worker); "
            "`Retry-After` says when to try again."),
    "502": ("ProviderError", "Hoiio or VoipNow refused the request; `provider_status` and `meaning` say why."),
    "503": ("Unavailable", "The API is off (IVR_API_TOKEN unset), VoipNow is not configured, or the database "
            "is unavailable."),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/{_ERRORS[code][0]}"} for code in codes}


def _path_param(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern}}  # fmt: skip


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


_ROOM = _path_param("room", ROOM_PATTERN, "The conference room ID.")
_COMMON = ("401", "429", "503")


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy each time)."""
    paths: dict[str, Any] = {
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        },  # fmt: skip
        "/api/calls": {
            "post": {
                "operationId": "startCall",
                "summary": "Start an outbound flow (Hoiio ivr/start/dial)",
                "description": "Dials `to` with the flow's dial node (its message and max_duration); the call "
                "then runs through the flow like an incoming one. The dial's answered / unanswered / busy / "
                "failed exits are followed as the flow says.",
                "requestBody": _body("CallRequest"),
                "responses": {
                    "201": _json(_ref("CallStarted"), "Hoiio accepted the dial."),
                    **_errors("400", "404", "409", "422", "502", *_COMMON),
                },
            },
        },
        "/api/calls/{ref}": {
            "get": {
                "operationId": "getCall",
                "summary": "What is known of a call",
                "description": "`ref` is the session returned by POST /api/calls, or a Hoiio txn_ref (of an "
                "outbound flow, a callback or a conference participant). Shows the notifications received; "
                "`refresh=1` also asks Hoiio (voice/query_status).",
                "parameters": [
                    _path_param("ref", REF_PATTERN, "Session or txn_ref."),
                    {"name": "refresh", "in": "query", "required": False,
                     "description": "1 or true: ask Hoiio for the call's status now.",
                     "schema": {"type": "string", "enum": ["0", "1", "true", "false"]}},
                ],  # fmt: skip
                "responses": {
                    "200": _json(_ref("CallInfo"), "The call."),
                    **_errors("404", "409", "422", "502", *_COMMON),
                },
            },
        },
        "/api/callbacks": {
            "post": {
                "operationId": "startCallback",
                "summary": "Click-to-call: join two numbers (Hoiio voice/call)",
                "requestBody": _body("CallbackRequest"),
                "responses": {
                    "201": _json(_ref("CallbackStarted"), "Hoiio is ringing `first`."),
                    **_errors("400", "422", "502", *_COMMON),
                },
            },
        },
        "/api/conferences": {
            "post": {
                "operationId": "startConference",
                "summary": "Dial up to 8 numbers into a room (Hoiio conference/call)",
                "requestBody": _body("ConferenceRequest"),
                "responses": {
                    "201": _json(_ref("ConferenceStarted"), "Hoiio is dialling the numbers, one after another."),
                    **_errors("400", "422", "502", *_COMMON),
                },
            },
        },
        "/api/conferences/{room}": {
            "get": {
                "operationId": "getConference",
                "summary": "The participants dialled into a room, with their states",
                "parameters": [_ROOM],
                "responses": {
                    "200": _json(_ref("Conference"), "The room."),
                    **_errors("404", "422", *_COMMON),
                },
            },
        },
        "/api/conferences/{room}/participants/{txn_ref}/{action}": {
            "post": {
                "operationId": "moderateParticipant",
                "summary": "Kick, mute or unmute a participant (Hoiio conference/moderate)",
                "parameters": [
                    _ROOM,
                    _path_param("txn_ref", REF_PATTERN, "The participant's txn_ref."),
                    {"name": "action", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": ["kick", "mute", "unmute"]}},
                ],  # fmt: skip
                "responses": {
                    "200": _json(_ref("Moderated"), "Hoiio carried out the action."),
                    **_errors("404", "422", "502", *_COMMON),
                },
            },
        },
        "/api/conferences/voipnow/invites": {
            "post": {
                "operationId": "inviteVoipNow",
                "summary": "Invite a number into a scheduled VoipNow conference",
                "requestBody": _body("VoipNowInviteRequest"),
                "responses": {
                    "201": _json(_ref("InviteCreated"), "VoipNow is calling the number."),
                    **_errors("400", "422", "502", *_COMMON),
                },
            },
        },
        "/api/conferences/voipnow/invites/{id}": {
            "parameters": [_path_param("id", PHONE_CALL_ID_PATTERN, "VoipNow's phone call id.")],
            "get": {
                "operationId": "getVoipNowInvite",
                "summary": "The invite's state, asked of VoipNow",
                "responses": {
                    "200": _json(_ref("InviteStatus"), "The phone call."),
                    **_errors("404", "422", "502", *_COMMON),
                },
            },
            "delete": {
                "operationId": "hangUpVoipNowInvite",
                "summary": "Hang up the invite's phone call",
                "responses": {
                    "200": _json(_ref("InviteHungUp"), "Hung up (or it had already ended)."),
                    **_errors("404", "422", "502", *_COMMON),
                },
            },
        },
        "/hoiio/events": {
            "post": {
                "operationId": "receiveCallEvent",
                "summary": "Hoiio's end-of-call notifications of callbacks and conference participants",
                "description": "The notify_url the engine gives voice/call and conference/call. Signed by "
                "Hoiio (X-Hoiio-Signature) and by the engine (sig); never an IVR step.",
                "security": [],
                "parameters": [
                    {"name": "kind", "in": "query", "required": True,
                     "schema": {"type": "string", "enum": ["voice", "conference"]}},
                    {"name": "ref", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "X-Hoiio-Signature", "in": "header", "required": False, "schema": {"type": "string"}},
                ],  # fmt: skip
                "requestBody": {
                    "required": True,
                    "content": {"application/x-www-form-urlencoded": {"schema": _ref("CallEventForm")}},
                },
                "responses": {
                    "200": _json(_ref("EventReceived"), "Stored (or a repeat, ignored)."),
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "403": _json(_ref("Error"), "A signature is missing or wrong."),
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
        },
    }
    schemas = {**copy.deepcopy(SCHEMAS), **copy.deepcopy(RESPONSE_SCHEMAS)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hoiio IVR engine API",
            "version": API_VERSION,
            "description": "Outbound call flows, click-to-call, conferences and VoipNow conference invites. "
            "Every request is validated before anything is dialled; a provider's refusal is a 502 naming its "
            "status and meaning. Authenticate with `Authorization: Bearer <IVR_API_TOKEN>`.",
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": {
                name: _json(_ref("Error"), description) for name, description in _ERRORS.values()
            },
        },
    }
