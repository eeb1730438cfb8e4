"""Before the workers start, the server compares the connections they may open with what
PostgreSQL accepts: past ``max_connections`` it refuses them, and notifications get 503s."""

from __future__ import annotations

import sqlalchemy as sa

from engine.storage.db import connection_shortfall
from tests.conftest import fresh_postgres_url


def _limit(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return (int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
                    - int(conn.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one()))
    finally:
        engine.dispose()


def test_enough_connections_for_the_workers_pass_in_silence():
    url = fresh_postgres_url()
    # each worker: its pool, 10 more at a burst, 2 for the results written behind
    workers = _limit(url) // (5 + 10 + 2)
    assert connection_shortfall(url, workers=workers, pool_size=5) is None


def test_too_many_workers_for_the_server_are_named_with_the_numbers():
    url = fresh_postgres_url()
    limit = _limit(url)
    workers = limit // (9 + 10 + 2) + 1
    warning = connection_shortfall(url, workers=workers, pool_size=9)
    assert warning is not None
    assert f"PostgreSQL accepts {limit} connections" in warning
    assert f"{workers} workers may open {workers * 21} at a burst" in warning
    assert "IVR_THREADS" in warning and "max_connections" in warning


def test_sqlite_and_an_unreachable_server_give_no_warning(tmp_path):
    assert connection_shortfall(f"sqlite:///{tmp_path}/x.db", workers=100, pool_size=200) is None
    assert connection_shortfall("postgresql://nobody@127.0.0.1:1/x", workers=100, pool_size=200) is None
