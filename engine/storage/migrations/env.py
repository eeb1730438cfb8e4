"""Alembic environment for the engine's schema (``engine.storage.tables.metadata``).

Run through ``engine.storage.migrate`` (``ivr db upgrade``), which hands over an open connection in
``config.attributes["connection"]``. Without one (e.g. ``alembic -x`` tooling with a
``sqlalchemy.url``), an engine is built with ``engine.storage.db.create_engine`` so the SQLite
pragmas and BEGIN IMMEDIATE apply. SQLite migrations use batch mode ("move and copy"), because
SQLite has almost no ALTER TABLE.

May import engine.storage, sqlalchemy, alembic.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from engine.storage.tables import metadata

# Any constant shared by every process of the engine: serialises concurrent upgrades on PostgreSQL.
MIGRATION_LOCK_KEY = 0x1F0_DB_2024

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from engine.storage.db import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
