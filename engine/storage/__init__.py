"""Storage: SQLAlchemy tables, the repository / unit of work with per-session locking, and Alembic
migrations. SQLite by default (one host, WAL), PostgreSQL in production (psycopg 3).

* ``tables``      the schema (``metadata``).
* ``db``          URL handling, the pooled engine, ``Database`` (the API the service holds).
* ``repository``  ``Transaction`` (``tx``) with every query, and the row dataclasses.
* ``migrate``     ``upgrade``, ``current_revision``, ``head_revision`` (Alembic, configured in code).
* ``errors``      ``StorageError`` and subclasses.

May import engine.core, sqlalchemy, alembic and the standard library. Never Flask.
"""

from engine.storage.db import DEFAULT_DATABASE_URL, Database, default_database_url, normalize_url
from engine.storage.errors import (
    ConcurrentUpdate,
    DatabaseUnavailable,
    DuplicateBlock,
    DuplicateCall,
    InvalidDatabaseURL,
    NestedTransaction,
    SchemaNotReady,
    StorageBusy,
    StorageError,
)
from engine.storage.repository import (
    BlockRow,
    CallEventRow,
    CallRow,
    NotificationRow,
    SideCallRow,
    TimelineEntry,
    Transaction,
    make_dedupe_key,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "BlockRow",
    "CallEventRow",
    "CallRow",
    "ConcurrentUpdate",
    "Database",
    "DatabaseUnavailable",
    "DuplicateBlock",
    "DuplicateCall",
    "InvalidDatabaseURL",
    "NestedTransaction",
    "NotificationRow",
    "SchemaNotReady",
    "SideCallRow",
    "StorageBusy",
    "StorageError",
    "TimelineEntry",
    "Transaction",
    "default_database_url",
    "make_dedupe_key",
    "normalize_url",
]
