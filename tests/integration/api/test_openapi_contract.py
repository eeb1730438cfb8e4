"""The API against its own OpenAPI document, with schemathesis: generated requests (valid and
invalid) sent to the Flask app through WSGI, each response checked against the document and for
server errors. Bounded (``max_examples``) so the whole run stays well under a minute.

The document is the one ``GET /api/openapi.json`` serves (``engine.web.openapi.document()``; a test
in test_api_access.py checks they are equal), loaded when the module is imported so that pytest can
name one test per operation; the app it is sent to is the module's running ``World``."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from engine.web.openapi import document
from tests.integration.api.conftest import API_TOKEN, World

schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def contract_world(tmp_path_factory):
    w = World(f"sqlite:///{tmp_path_factory.mktemp('contract') / 'ivr.sqlite3'}")
    yield w
    w.close()


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_openapi_document(case, contract_world):
    case.operation.schema.app = contract_world.app  # checks that send more requests go there too
    if case.operation.path == "/api/callbacks" and isinstance(case.body, dict):
        # first != second is a rule JSON Schema cannot state: keep generated callbacks to two
        # different numbers (requests breaking it are tested in test_api_callbacks.py)
        first = case.body.get("first")
        if isinstance(first, str) and first == case.body.get("second") and len(first) > 2:
            case.body["second"] = first[:-1] + ("1" if first[-1] != "1" else "2")
    case.call_and_validate(app=contract_world.app, headers={"Authorization": f"Bearer {API_TOKEN}"})
