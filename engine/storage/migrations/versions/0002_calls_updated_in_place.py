"""Calls updated in place: no index on ``calls.updated_at``; room for updates on PostgreSQL's pages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Every notification updates its call's row (state, step, ``updated_at``). PostgreSQL writes such an
update in place (a heap-only tuple, no new entry in any index) only when no indexed column changed
and the row's page has room for the new version. ``updated_at`` was in two indexes, so each update
added an entry to all seven of the table's indexes. They are replaced by ``(status, id)``: calls in
a status, most recently started first (``Transaction.list_calls``), and a status changes once per
call, when it ends. ``fillfactor`` leaves room on each page for the updates of ``calls`` (several
per call) and of ``notifications`` (one outcome per request); it applies to pages written from now
on. SQLite rewrites the changed indexes only, so it is spared two of them as well.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = {"calls": 70, "notifications": 80}


def upgrade() -> None:
    op.drop_index("ix_calls_status_updated_at", table_name="calls")
    op.drop_index("ix_calls_updated_at", table_name="calls")
    op.create_index("ix_calls_status_id", "calls", ["status", "id"])
    if op.get_context().dialect.name == "postgresql":
        for table, percent in FILLFACTOR.items():
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in FILLFACTOR:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    op.drop_index("ix_calls_status_id", table_name="calls")
    op.create_index("ix_calls_updated_at", "calls", ["updated_at"])
    op.create_index("ix_calls_status_updated_at", "calls", ["status", "updated_at"])
