"""Initial schema: calls, notifications, blocks (outbox), side_calls, call_events, flow_versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Types are spelled out here rather than imported from engine.storage.tables, so this revision keeps
creating the same schema when the tables module moves on (``UTCDateTime`` and ``SafeText`` are
``DateTime(timezone=True)`` and ``Text`` in the database).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", ID, nullable=False),
        sa.Column("session", sa.String(length=64), nullable=False),
        sa.Column("flow", sa.String(length=128), nullable=False),
        sa.Column("flow_version", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("node", sa.String(length=128), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=True),
        sa.Column("called", sa.String(length=64), nullable=True),
        sa.Column("dest", sa.String(length=255), nullable=True),
        sa.Column("txn_ref", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.Column("billing", sa.JSON(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f("ck_calls_direction")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("session", name=op.f("uq_calls_session")),
    )
    op.create_index("ix_calls_status_updated_at", "calls", ["status", "updated_at"])
    op.create_index("ix_calls_updated_at", "calls", ["updated_at"])
    op.create_index("ix_calls_created_at", "calls", ["created_at"])
    op.create_index("ix_calls_ended_at", "calls", ["ended_at"])
    op.create_index("ix_calls_txn_ref", "calls", ["txn_ref"])

    op.create_table(
        "notifications",
        sa.Column("id", ID, nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("session", sa.String(length=64), nullable=True),
        sa.Column("route", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("query_string", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('accepted', 'duplicate', 'stale', 'refused', 'invalid', 'error')",
            name=op.f("ck_notifications_outcome"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    op.create_index("ix_notifications_session", "notifications", ["session"])
    op.create_index("ix_notifications_received_at", "notifications", ["received_at"])

    op.create_table(
        "blocks",
        sa.Column("id", ID, nullable=False),
        sa.Column("session", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("provider_status", sa.String(length=64), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'unknown')", name=op.f("ck_blocks_status")
        ),
        sa.ForeignKeyConstraint(
            ["session"], ["calls.session"], name=op.f("fk_blocks_session_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocks")),
        sa.UniqueConstraint("session", "step", name=op.f("uq_blocks_session_step")),
    )
    op.create_index("ix_blocks_status_updated_at", "blocks", ["status", "updated_at"])
    op.create_index("ix_blocks_created_at", "blocks", ["created_at"])

    op.create_table(
        "side_calls",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("txn_ref", sa.String(length=64), nullable=True),
        sa.Column("session", sa.String(length=64), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_side_calls")),
    )
    op.create_index("ix_side_calls_txn_ref", "side_calls", ["txn_ref"])
    op.create_index("ix_side_calls_session", "side_calls", ["session"])
    op.create_index("ix_side_calls_created_at", "side_calls", ["created_at"])

    op.create_table(
        "call_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("txn_ref", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
    )
    op.create_index("ix_call_events_txn_ref", "call_events", ["txn_ref"])
    op.create_index("ix_call_events_received_at", "call_events", ["received_at"])

    op.create_table(
        "flow_versions",
        sa.Column("id", ID, nullable=False),
        sa.Column("flow", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", TIMESTAMP, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_versions")),
        sa.UniqueConstraint("flow", "version", name=op.f("uq_flow_versions_flow_version")),
    )


def downgrade() -> None:
    op.drop_table("flow_versions")
    op.drop_table("call_events")
    op.drop_table("side_calls")
    op.drop_table("blocks")
    op.drop_table("notifications")
    op.drop_table("calls")
