"""Fixtures for the dashboard tests (``/admin``)."""

from __future__ import annotations

import pytest
from admin_support import admin_app, copy_flows


@pytest.fixture(autouse=True)
def _masked_numbers(monkeypatch):
    monkeypatch.delenv("IVR_LOG_NUMBERS", raising=False)


@pytest.fixture
def admin(database_url, tmp_path):
    """The app with the dashboard on, on SQLite and PostgreSQL (flows copied: the reload button
    touches the folder's reload stamp)."""
    h = admin_app(database_url, flows_dir=copy_flows(tmp_path))
    yield h
    h.db.dispose()


@pytest.fixture
def admin_sqlite(tmp_path):
    """The app with the dashboard on, SQLite only (access checks need no second backend)."""
    h = admin_app(f"sqlite:///{tmp_path / 'admin.sqlite3'}", flows_dir=copy_flows(tmp_path))
    yield h
    h.db.dispose()
