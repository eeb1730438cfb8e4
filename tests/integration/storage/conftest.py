"""Fixtures for the storage tests: a migrated ``Database`` on each backend with a controllable clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from storage_helpers import FakeClock

from engine.storage import Database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(database_url: str, clock: FakeClock) -> Iterator[Database]:
    database = Database.open(database_url, clock=clock, auto_migrate=True)
    try:
        yield database
    finally:
        database.close()
