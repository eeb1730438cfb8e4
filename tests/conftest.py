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


_PG_DATABASE: dict[str, str] = {}


def _private_postgres_url() -> str:
    """A database of this test process's own on the PostgreSQL server, created on first use and
    dropped at exit, so that concurrent test runs never drop each other's tables."""
    if "url" in _PG_DATABASE:
        return _PG_DATABASE["url"]
    import atexit
    import uuid

    import sqlalchemy as sa

    name = f"ivr_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.orig}. Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.",
            pytrace=False,
        )
    finally:
        admin.dispose()

    def drop() -> None:
        engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception:  # noqa: S110 - best effort at exit
            pass
        finally:
            engine.dispose()

    atexit.register(drop)
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    _PG_DATABASE["url"] = url
    return url


def fresh_postgres_url() -> str:
    """Drop every table in this process's PostgreSQL test database and return its URL."""
    import sqlalchemy as sa

    url = _private_postgres_url()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is not reachable at {url}: {exc.orig}", pytrace=False)
    finally:
        engine.dispose()
    return url
