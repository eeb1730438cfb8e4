"""Table definitions (SQLAlchemy Core). The single source of truth for the schema: the Alembic
environment compares against ``metadata``, and a test fails when a migration and these tables drift.

* ``calls``          one row per call session: the serialised ``CallState`` plus columns to list/prune.
* ``notifications``  every webhook request as received, recorded before it is processed.
* ``blocks``         the outbox: one row per Hoiio block the engine decided to send.
* ``side_calls``     provider requests outside the IVR session (conference dial-outs, ...).
* ``call_events``    per-leg notifications of side calls, keyed by ``txn_ref``.
* ``flow_versions``  the source of every flow version a call was started on.

Timestamps are timezone-aware UTC on both backends (``UTCDateTime``). Request bodies are stored as
bytes (``LargeBinary``): exactly what arrived, so a replay can re-verify the signature, and no
NUL byte can break PostgreSQL ``text``.

May import sqlalchemy and the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

CALL_DIRECTIONS = ("inbound", "outbound")
NOTIFICATION_OUTCOMES = ("accepted", "duplicate", "stale", "refused", "invalid", "error")
BLOCK_STATUSES = ("pending", "sending", "sent", "failed", "unknown")

# Length of columns holding identifiers that came from the provider or a request.
SESSION_LEN = 64
NAME_LEN = 128


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (no zone support) and PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the storage layer only accepts aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SafeText(TypeDecorator[str]):
    """Text that came from outside (query strings, provider messages). PostgreSQL ``text`` refuses
    NUL characters; they are replaced by U+FFFD rather than failing the insert that records them."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        return str(value).replace("\x00", "\ufffd")


def _id() -> sa.Column[int]:
    # BIGINT on PostgreSQL; INTEGER on SQLite, where only "INTEGER PRIMARY KEY" is an auto-increment
    # rowid alias.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _json(name: str, nullable: bool = True) -> sa.Column[Any]:
    # Plain JSON, not JSONB: key order is kept (block parameters are golden-tested in order).
    return sa.Column(name, sa.JSON(), nullable=nullable)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


calls = sa.Table(
    "calls",
    metadata,
    _id(),
    sa.Column("session", sa.String(SESSION_LEN), nullable=False),
    sa.Column("flow", sa.String(NAME_LEN), nullable=False),
    sa.Column("flow_version", sa.String(64), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("node", sa.String(NAME_LEN), nullable=True),
    sa.Column("step", sa.Integer(), nullable=False),
    _json("state", nullable=False),
    sa.Column("caller", sa.String(64), nullable=True),
    sa.Column("called", sa.String(64), nullable=True),
    sa.Column("dest", sa.String(255), nullable=True),
    sa.Column("txn_ref", sa.String(SESSION_LEN), nullable=True),
    sa.Column("outcome", sa.String(255), nullable=True),
    _json("billing"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("row_version", sa.Integer(), nullable=False),
    sa.UniqueConstraint("session"),
    sa.CheckConstraint(_in("direction", CALL_DIRECTIONS), name="direction"),
    # No index holds a column that changes while a call is in progress (``CALL_UPDATED_COLUMNS``),
    # so PostgreSQL updates the row in place, on the room its fillfactor leaves (migration 0002).
    sa.Index("ix_calls_status_id", "status", "id"),
    sa.Index("ix_calls_created_at", "created_at"),
    sa.Index("ix_calls_ended_at", "ended_at"),
    sa.Index("ix_calls_txn_ref", "txn_ref"),
    postgresql_with={"fillfactor": 70},
)

#: The columns of ``calls`` every notification of a call in progress may change.
CALL_UPDATED_COLUMNS = ("state", "node", "step", "outcome", "billing", "updated_at", "row_version")

notifications = sa.Table(
    "notifications",
    metadata,
    _id(),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("session", sa.String(SESSION_LEN), nullable=True),
    sa.Column("route", sa.String(255), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("query_string", SafeText(), nullable=False),
    _json("headers", nullable=False),
    sa.Column("body", sa.LargeBinary(), nullable=False),
    sa.Column("step", sa.Integer(), nullable=True),
    sa.Column("dedupe_key", sa.String(64), nullable=True),
    # NULL while the notification is being processed (or when the worker died doing it).
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("reason", SafeText(), nullable=True),
    _json("response"),
    sa.Column("duration_ms", sa.Integer(), nullable=True),
    sa.UniqueConstraint("dedupe_key"),
    sa.CheckConstraint(_in("outcome", NOTIFICATION_OUTCOMES), name="outcome"),
    sa.Index("ix_notifications_session", "session"),
    sa.Index("ix_notifications_received_at", "received_at"),
    # room on each page for the outcome written after the request (migration 0002)
    postgresql_with={"fillfactor": 80},
)

blocks = sa.Table(
    "blocks",
    metadata,
    _id(),
    sa.Column(
        "session",
        sa.String(SESSION_LEN),
        sa.ForeignKey("calls.session", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("step", sa.Integer(), nullable=False),
    sa.Column("node", sa.String(NAME_LEN), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    _json("params", nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("http_status", sa.Integer(), nullable=True),
    sa.Column("provider_status", sa.String(64), nullable=True),
    _json("response"),
    sa.Column("duration_ms", sa.Integer(), nullable=True),
    sa.Column("error", SafeText(), nullable=True),
    # Also the index for "blocks of a session" (leading column).
    sa.UniqueConstraint("session", "step"),
    sa.CheckConstraint(_in("status", BLOCK_STATUSES), name="status"),
    sa.Index("ix_blocks_status_updated_at", "status", "updated_at"),
    sa.Index("ix_blocks_created_at", "created_at"),
)

side_calls = sa.Table(
    "side_calls",
    metadata,
    _id(),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("txn_ref", sa.String(SESSION_LEN), nullable=True),
    sa.Column("session", sa.String(SESSION_LEN), nullable=True),
    _json("request", nullable=False),
    _json("response"),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_side_calls_txn_ref", "txn_ref"),
    sa.Index("ix_side_calls_session", "session"),
    sa.Index("ix_side_calls_created_at", "created_at"),
)

call_events = sa.Table(
    "call_events",
    metadata,
    _id(),
    sa.Column("txn_ref", sa.String(SESSION_LEN), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    _json("payload", nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Index("ix_call_events_txn_ref", "txn_ref"),
    sa.Index("ix_call_events_received_at", "received_at"),
)

flow_versions = sa.Table(
    "flow_versions",
    metadata,
    _id(),
    sa.Column("flow", sa.String(NAME_LEN), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("loaded_at", UTCDateTime(), nullable=False),
    sa.Column("source", sa.Text(), nullable=False),
    sa.UniqueConstraint("flow", "version"),
)
