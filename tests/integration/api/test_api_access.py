"""Turning the API on and off, the bearer token, the OpenAPI document, unknown routes."""

from __future__ import annotations

import pytest
import requests

from engine.web.openapi import document
from tests.integration.api.conftest import World, assert_error, nothing_sent

ROUTES = [
    ("POST", "/api/calls"),
    ("GET", "/api/calls/AA-1"),
    ("POST", "/api/callbacks"),
    ("POST", "/api/conferences"),
    ("GET", "/api/conferences/standup"),
    ("POST", "/api/conferences/standup/participants/AA-1/kick"),
    ("POST", "/api/conferences/voipnow/invites"),
    ("GET", "/api/conferences/voipnow/invites/abc"),
    ("DELETE", "/api/conferences/voipnow/invites/abc"),
]


@pytest.fixture
def api_off(tmp_path):
    w = World(f"sqlite:///{tmp_path / 'off.sqlite3'}", api_token=None)
    yield w
    w.close()


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_without_ivr_api_token_the_api_is_off(api_off, method, path):
    r = api_off.api(method, path, json={"numbers": ["+6591234567"]})
    body = assert_error(r, 503, code="api_disabled")
    assert "IVR_API_TOKEN" in body["error"]
    assert api_off.hoiio.log == [] and api_off.voipnow.log == []  # nothing dialled


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_missing_or_wrong_token_is_refused(shared_world, method, path):
    url = shared_world.url + path
    with nothing_sent(shared_world):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                        {"Authorization": "Bearer"}):  # fmt: skip
            r = requests.request(method, url, json={"numbers": ["+6591234567"]}, headers=headers, timeout=10)
            assert_error(r, 401, code="unauthorized")
            assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_openapi_document_is_served_without_a_token(shared_world, api_off):
    for w in (shared_world, api_off):
        r = requests.get(w.url + "/api/openapi.json", timeout=10)
        assert r.status_code == 200
        spec = r.json()
        assert spec["openapi"] == "3.1.0"
        assert spec == document()
    paths = spec["paths"]
    for path in ("/api/calls", "/api/calls/{ref}", "/api/callbacks", "/api/conferences", "/api/conferences/{room}",
                 "/api/conferences/{room}/participants/{txn_ref}/{action}", "/api/conferences/voipnow/invites",
                 "/api/conferences/voipnow/invites/{id}", "/hoiio/events"):  # fmt: skip
        assert path in paths


def test_the_openapi_document_is_valid_openapi_3_1():
    from jsonschema import Draft202012Validator

    spec = document()
    # every component schema is itself a valid JSON Schema 2020-12
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    # every $ref resolves
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    for ref in refs:
        target = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


def test_unknown_api_routes_answer_json_404(shared_world):
    assert_error(shared_world.get("/api/nothing-here"), 404)
    assert_error(shared_world.post("/api/conferences/standup/participants/AA-1/shout"), 404)


def test_a_wrong_method_is_a_405_with_allow(shared_world):
    r = shared_world.api("PUT", "/api/calls", json={})
    assert_error(r, 405, code="method_not_allowed")
    assert r.headers["Allow"] == "POST"
    r = shared_world.api("PATCH", "/api/conferences/voipnow/invites/abc")
    assert r.status_code == 405 and set(r.headers["Allow"].split(", ")) == {"DELETE", "GET", "HEAD"}


def test_wrong_tokens_from_one_address_are_refused_for_a_while(sqlite_world):
    with nothing_sent(sqlite_world):
        for _ in range(10):
            r = requests.get(sqlite_world.url + "/api/calls/AA-1", headers={"Authorization": "Bearer nope"}, timeout=10)
            assert_error(r, 401, code="unauthorized")
        r = sqlite_world.get("/api/calls/AA-1")  # the right token, from the same address
        body = assert_error(r, 429, code="too_many_attempts")
        assert int(r.headers["Retry-After"]) > 0 and "try again" in body["error"]
