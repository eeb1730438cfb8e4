"""Errors raised by the storage layer.

Every error the service layer is expected to handle derives from ``StorageError``. Driver errors
(``sqlite3``, ``psycopg``) never leave ``engine.storage`` untranslated when they mean something the
caller can act on: a busy lock, an unreachable server, a missing schema.

May import the standard library only.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every storage error. ``retryable`` says whether trying again may succeed."""

    retryable = False


class InvalidDatabaseURL(StorageError, ValueError):
    """The database URL cannot be parsed or names a backend the engine does not support."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached or opened (server down, wrong host, unreadable file)."""

    retryable = True


class StorageBusy(StorageError):
    """A lock could not be taken within the lock timeout (another worker holds the call for too long),
    or PostgreSQL chose this transaction as a deadlock victim. Nothing was written."""

    retryable = True


class SchemaNotReady(StorageError):
    """The tables are missing or the schema revision is unknown: run ``ivr db upgrade``."""


class NestedTransaction(StorageError, RuntimeError):
    """A write was started on ``Database`` while the same thread already holds ``db.transaction()``.

    On SQLite the second write would wait for the first, which is waiting for it: use the ``tx``
    methods inside the transaction instead."""


class ConcurrentUpdate(StorageError):
    """``update_call`` found a ``row_version`` other than the expected one: somebody else changed the
    call since it was read. The transaction should be rolled back and the notification re-read."""

    retryable = True

    def __init__(self, session: str, expected: int, actual: int | None) -> None:
        if actual is None:
            detail = "the call no longer exists"
        else:
            detail = f"row_version is {actual}, expected {expected}"
        super().__init__(f"call {session!r} was changed concurrently: {detail}")
        self.session = session
        self.expected = expected
        self.actual = actual


class DuplicateCall(StorageError):
    """``insert_call`` for a session that already has a row. The transaction is still usable."""

    def __init__(self, session: str) -> None:
        super().__init__(f"a call with session {session!r} already exists")
        self.session = session


class DuplicateBlock(StorageError):
    """``add_block`` for a (session, step) that already has an outbox row. The transaction is still
    usable; the earlier row is kept."""

    def __init__(self, session: str, step: int) -> None:
        super().__init__(f"a block for session {session!r} step {step} is already queued")
        self.session = session
        self.step = step
