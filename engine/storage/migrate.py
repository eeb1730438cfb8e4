"""Schema migrations (Alembic), driven from code: no ``alembic.ini`` on disk.

The scripts live in ``engine/storage/migrations`` (package data); ``alembic_config()`` builds the
``Config`` pointing at them. ``upgrade`` runs in one transaction on the engine's own connection
(``BEGIN IMMEDIATE`` on SQLite, plus an advisory lock on PostgreSQL), so several processes
upgrading at once run the migrations once; the others find the schema at head.

Every function takes a URL, a ``Database`` or an SQLAlchemy ``Engine``.

May import engine.storage, sqlalchemy, alembic. Never Flask.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import URL, Engine

from engine.storage.db import READ_ONLY, Database, display_url, translated_errors
from engine.storage.errors import SchemaNotReady, StorageError

if TYPE_CHECKING:
    Target = str | URL | Database | Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic ``Config`` for the packaged migrations (for ``command.*`` and ``ScriptDirectory``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The revision the code expects."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise SchemaNotReady("no migration scripts found in " + str(MIGRATIONS_DIR))
    return head


@contextmanager
def _database(target: Target) -> Iterator[tuple[Engine, URL]]:
    if isinstance(target, Database):
        yield target.engine, target.url
    elif isinstance(target, Engine):
        yield target, target.url
    else:
        db = Database(target)
        try:
            yield db.engine, db.url
        finally:
            db.close()


def current_revision(target: Target) -> str | None:
    """The revision the database is at; None for an empty database."""
    with _database(target) as (engine, url), translated_errors(url), engine.connect() as conn:
        conn.execution_options(**READ_ONLY)
        with conn.begin():
            return MigrationContext.configure(conn).get_current_revision()


def is_current(target: Target) -> bool:
    return current_revision(target) == head_revision()


def upgrade(target: Target, revision: str = "head") -> str | None:
    """Upgrade the schema to ``revision`` (default: head); returns the revision reached."""
    with _database(target) as (engine, url), translated_errors(url):
        try:
            _upgrade(engine, revision)
        except CommandError as exc:
            raise SchemaNotReady(f"cannot upgrade {display_url(url)} to {revision}: {exc}") from None
    return current_revision(target)


def _upgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations on SQLite copy and drop tables; with foreign keys on, dropping
            # `calls` would cascade into `blocks`. The pragma is ignored inside a transaction, so it
            # is set on the raw connection before BEGIN and checked before COMMIT.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StorageError(f"the migration left rows with broken foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]


__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "is_current", "upgrade"]
