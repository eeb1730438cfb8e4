"""Shared fixtures.

Storage, locking and concurrency tests run on SQLite *and* PostgreSQL. PostgreSQL is expected at
``IVR_TEST_POSTGRES_URL`` (default: the local server, database ``test``); when it cannot be reached
the tests fail loudly rather than skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOWS_DIR = ROOT / "flows"
POSTGRES_URL = os.environ.get("IVR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ivr.sqlite3'}"
    return fresh_postgres_url()


def fresh_postgres_url() -> str:
    """Drop every table in the PostgreSQL test database and return its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.orig}. Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.",
            pytrace=False,
        )
    finally:
        engine.dispose()
    return POSTGRES_URL
