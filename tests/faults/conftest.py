"""Fixtures of the fault-tolerance tests: flow folder, fake Hoiio, PostgreSQL databases.

Each test module starts its own server(s) with the settings its faults need; everything started here
is stopped in teardown (yield fixtures), whatever the test did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import copy_flows, new_fake

from engine.fakes import FakeHoiio
from engine.storage import Database
from tests.conftest import fresh_postgres_url


@pytest.fixture(scope="session")
def flows_dir(tmp_path_factory) -> Path:
    """A copy of the example flows (a reload stamp written there never touches the repository)."""
    return copy_flows(tmp_path_factory.mktemp("flows"))


@pytest.fixture(scope="module")
def pg_url() -> str:
    """This test process's private database on the shared server, emptied and migrated to head."""
    url = fresh_postgres_url()
    Database.open(url, auto_migrate=True).close()
    return url


@pytest.fixture(scope="module")
def pg_db(pg_url: str) -> Iterator[Database]:
    db = Database.open(pg_url)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeHoiio]:
    """The strict fake Hoiio, serving on loopback from this process."""
    fake = new_fake(notify_delay=0.05)
    try:
        yield fake
    finally:
        fake.stop()
