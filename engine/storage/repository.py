"""Repository / unit of work: every query the engine makes, on one open transaction.

``Transaction`` (the ``tx`` of ``with db.transaction() as tx:``) holds one connection inside one
database transaction; ``Database`` (``engine.storage.db``, re-exported here) opens it and offers the
same operations as short transactions of their own. Results are plain frozen dataclasses
(``CallRow``, ``BlockRow``, ...), never ORM objects bound to a session.

Idempotency, as the service layer uses it (reliability notes, section 2):

1. ``with db.transaction() as tx:`` then ``tx.record_claimed(key, ...)`` stores the raw request and
   claims its dedupe key in one statement: the unique ``notifications.dedupe_key`` makes a
   redelivered notification come back unclaimed (it is still stored, without the key). The claim
   commits or rolls back together with the state change, so a crash between the two cannot
   swallow a notification. ``tx.lock_call(session)`` serialises everything for one call. (When the
   transaction rolls back, the caller records the request again, with its outcome, in a short
   transaction of its own: ``db.record_notification(..., outcome=...)``.)
2. ``tx.update_call(..., expected_row_version=row.row_version)`` and ``tx.add_block(...)`` (the
   outbox) in the same transaction; ``tx.mark_block`` and ``tx.finish_notification`` record the
   send and the outcome afterwards, again in one transaction.

May import engine.core, engine.storage.tables / errors, sqlalchemy. Never Flask.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from engine.core.state import CallState
from engine.storage.direct import DirectStatement
from engine.storage.errors import ConcurrentUpdate, DuplicateBlock, DuplicateCall, StorageError
from engine.storage.tables import (
    BLOCK_STATUSES,
    CALL_DIRECTIONS,
    NOTIFICATION_OUTCOMES,
    SESSION_LEN,
    blocks,
    call_events,
    calls,
    flow_versions,
    notifications,
    side_calls,
)

if TYPE_CHECKING:
    from engine.storage.db import Database

__all__ = [
    "BlockRow",
    "CallEventRow",
    "CallRow",
    "ConcurrentUpdate",
    "Database",
    "DuplicateBlock",
    "DuplicateCall",
    "NotificationRow",
    "SideCallRow",
    "StorageError",
    "TimelineEntry",
    "Transaction",
    "make_dedupe_key",
    "scrub_headers",
]

#: Request headers never stored (compared lower-case); names containing these words are dropped too.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_HEADER_WORDS = ("token", "secret", "password", "api-key", "apikey")
#: Block parameters the outbox must never hold: the client adds them when sending.
FORBIDDEN_BLOCK_PARAMS = frozenset({"access_token", "app_id"})


def __getattr__(name: str) -> Any:
    # ``Database`` lives in engine.storage.db, which imports this module; re-exported lazily.
    if name == "Database":
        from engine.storage.db import Database

        return Database
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------- rows
def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


class _Row:
    """Rows read like objects (``row.outcome``) and like mappings (``row["outcome"]``)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601, bytes decoded as UTF-8 (invalid bytes replaced)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in dataclasses.fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


@dataclass(frozen=True, slots=True)
class CallRow(_Row):
    id: int
    session: str
    flow: str
    flow_version: str
    direction: str
    status: str
    node: str | None
    step: int
    state: dict[str, Any]  # CallState.to_dict()
    caller: str | None
    called: str | None
    dest: str | None
    txn_ref: str | None
    outcome: str | None
    billing: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    row_version: int

    def call_state(self) -> CallState:
        return CallState.from_dict(self.state)


@dataclass(frozen=True, slots=True)
class NotificationRow(_Row):
    id: int
    received_at: datetime
    session: str | None
    route: str
    method: str
    query_string: str
    headers: dict[str, str]
    body: bytes  # exactly as received
    step: int | None
    dedupe_key: str | None
    outcome: str | None  # None while processing, or when the worker died doing it
    reason: str | None
    response: Any
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class BlockRow(_Row):
    id: int
    session: str
    step: int
    node: str
    kind: str
    endpoint: str
    params: dict[str, str]
    status: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    attempts: int
    http_status: int | None
    provider_status: str | None
    response: Any
    duration_ms: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class SideCallRow(_Row):
    id: int
    kind: str
    txn_ref: str | None
    session: str | None
    request: Any
    response: Any
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CallEventRow(_Row):
    id: int
    txn_ref: str
    kind: str
    payload: Any
    received_at: datetime


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of ``timeline()``. ``entry["kind"]``, ``entry["at"]`` and the row's own fields
    (``entry["outcome"]``, ``entry["params"]``, ...) can be read by key too."""

    at: datetime
    kind: str  # "notification" | "block" | "side_call"
    row: NotificationRow | BlockRow | SideCallRow

    def to_dict(self) -> dict[str, Any]:
        return {**self.row.to_dict(), "at": self.at.isoformat(), "kind": self.kind}

    def __getitem__(self, key: str) -> Any:
        if key in ("at", "kind", "row"):
            return getattr(self, key)
        return self.row[key]


def _row(cls: type, mapping: Mapping[str, Any]) -> Any:
    return cls(**{f.name: mapping[f.name] for f in dataclasses.fields(cls)})


# ---------------------------------------------------------------------------------------- helpers
DEDUPE_LEAD_CHARS = 20  # of the first part, in front of the digest (64 characters in all)


def make_dedupe_key(*parts: object) -> str:
    """A notification's dedupe key: the first part (the call's session, up to 20 characters), ``:``,
    then the sha256 hex of all the parts joined with ``|`` (e.g. session, step, body), cut to 64
    characters (the digest keeps at least 172 bits).

    Led by the session, a call's keys lie side by side in the unique index: each notification's
    insert lands on the page its call's earlier keys are on, or, for sessions handed out in order, at
    the index's end. A bare digest lands on a random page of an index that holds a key for every
    notification ever stored, which a large database has to read from disk when it has gone cold."""
    digest = hashlib.sha256("|".join("" if p is None else str(p) for p in parts).encode()).hexdigest()
    lead = "" if not parts or parts[0] is None else str(parts[0])[:DEDUPE_LEAD_CHARS]
    return f"{lead}:{digest}"[:64]


def scrub_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> dict[str, str]:
    """Headers without credentials (Authorization, cookies, anything named like a token/secret).
    Repeated headers are joined with ``", "``."""
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    kept: dict[str, str] = {}
    for name, value in items:
        lower = str(name).lower()
        if lower in SECRET_HEADERS or any(word in lower for word in _SECRET_HEADER_WORDS):
            continue
        key = str(name)
        kept[key] = f"{kept[key]}, {value}" if key in kept else str(value)
    return kept


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else str(value)[:length]


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def _choose(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)} (got {value!r})")
    return value


# ------------------------------------------------------------------ statements of the request path
# Built once, with bound parameters, instead of on every call: building a statement (and its cache
# key) cost SQLAlchemy three to four times as much as executing it (``bench/profile_engine.py``).
# Those a notification runs are wrapped in ``DirectStatement`` (engine.storage.direct): compiled once
# per dialect and run on the driver, in the same transaction.
# Optional values are written as ``COALESCE(:value, column)``: None keeps what the row has.
def _param(column: sa.Column[Any], name: str | None = None) -> Any:
    return sa.bindparam(name or column.name, type_=column.type)


def _keep_unless(column: sa.Column[Any], name: str | None = None) -> Any:
    """``COALESCE(:<name>, <column>)``: the given value, or the column's own when None is given."""
    return sa.func.coalesce(_param(column, name), column)


_LOCK_CALL = DirectStatement(sa.select(calls).where(calls.c.session == sa.bindparam("key")).with_for_update())
_GET_CALL = DirectStatement(sa.select(calls).where(calls.c.session == sa.bindparam("key")))
_UPDATE_CALL = DirectStatement(
    sa.update(calls)
    .where(calls.c.session == sa.bindparam("key"), calls.c.row_version == sa.bindparam("expected"))
    .values(
        state=_param(calls.c.state),
        node=_param(calls.c.node),
        step=_param(calls.c.step),
        status=_param(calls.c.status),
        outcome=_param(calls.c.outcome),
        billing=_param(calls.c.billing),
        updated_at=_param(calls.c.updated_at),
        row_version=calls.c.row_version + 1,
        # set the first time the call ends; cleared while it is active
        ended_at=sa.case((_param(calls.c.status, "ended_status") == "ended",
                          sa.func.coalesce(calls.c.ended_at, _param(calls.c.updated_at, "ended_now"))),
                         else_=sa.null()),
        caller=_keep_unless(calls.c.caller),
        called=_keep_unless(calls.c.called),
        dest=_keep_unless(calls.c.dest),
        txn_ref=_keep_unless(calls.c.txn_ref),
    )
)
def _finish_notification_statement(prefix: str = "") -> Any:
    """``finish_notification``'s UPDATE; parameters named ``<prefix><name>``."""
    return (
        sa.update(notifications)
        .where(notifications.c.id == sa.bindparam(prefix + "notification_id"))
        .values(
            outcome=_param(notifications.c.outcome, prefix + "outcome"),
            reason=_param(notifications.c.reason, prefix + "reason"),
            response=_param(notifications.c.response, prefix + "response"),
            duration_ms=_param(notifications.c.duration_ms, prefix + "duration_ms"),
            session=_keep_unless(notifications.c.session, prefix + "session"),
            step=_keep_unless(notifications.c.step, prefix + "step"),
        )
    )


_FINISH_NOTIFICATION_STATEMENT = _finish_notification_statement()
_FINISH_NOTIFICATION = DirectStatement(_FINISH_NOTIFICATION_STATEMENT)


def _mark_block_values(prefix: str = "") -> dict[str, Any]:
    """The SET of a block's send attempt; parameters named ``<prefix><column>``."""
    def given(column: sa.Column[Any]) -> Any:
        return _param(column, prefix + column.name)

    def keep_unless(column: sa.Column[Any]) -> Any:
        return sa.func.coalesce(given(column), column)

    return {
        "status": given(blocks.c.status),
        "updated_at": given(blocks.c.updated_at),
        "sent_at": keep_unless(blocks.c.sent_at),
        "http_status": keep_unless(blocks.c.http_status),
        "provider_status": keep_unless(blocks.c.provider_status),
        "response": keep_unless(blocks.c.response),
        "duration_ms": keep_unless(blocks.c.duration_ms),
        "error": keep_unless(blocks.c.error),
        "attempts": sa.func.coalesce(given(blocks.c.attempts),
                                     blocks.c.attempts + sa.bindparam(prefix + "add_attempt")),
    }


def _mark_block_statement(by_id: bool, from_status: bool) -> Any:
    where = ([blocks.c.id == sa.bindparam("block_id")] if by_id else
             [blocks.c.session == sa.bindparam("key"), blocks.c.step == sa.bindparam("block_step")])
    if from_status:
        where.append(blocks.c.status.in_(sa.bindparam("from_status", expanding=True)))
    return sa.update(blocks).where(*where).values(**_mark_block_values())


#: (by block id, with from_status) -> the UPDATE; the expanding ``IN`` of from_status needs SQLAlchemy
_MARK_BLOCK: dict[tuple[bool, bool], Any] = {
    (by_id, from_status): (_mark_block_statement(by_id, from_status) if from_status
                           else DirectStatement(_mark_block_statement(by_id, from_status)))
    for by_id in (True, False) for from_status in (True, False)}
#: PostgreSQL: a block's send attempt (by session and step) and a notification's outcome in one
#: statement (the block's UPDATE as a data-modifying CTE), so that it can run on its own, committed:
#: one round trip where a transaction of two statements takes four.
_MARK_BLOCK_AND_FINISH = DirectStatement(
    _FINISH_NOTIFICATION_STATEMENT.add_cte(
        sa.update(blocks)
        .where(blocks.c.session == sa.bindparam("key"), blocks.c.step == sa.bindparam("block_step"))
        .values(**_mark_block_values(prefix="block_"))
        .returning(blocks.c.id)
        .cte("marked")
    )
)
_NOTIFICATION_COLUMNS = ("received_at", "session", "route", "method", "query_string", "headers", "body", "step")
_RECORD_NOTIFICATION = DirectStatement(
    sa.insert(notifications).values(
        **{name: _param(notifications.c[name]) for name in _NOTIFICATION_COLUMNS},
        outcome=_param(notifications.c.outcome),
        reason=_param(notifications.c.reason),
        # None is SQL NULL here (no response yet), not the JSON null a plain JSON parameter makes
        response=sa.bindparam("response", type_=sa.JSON(none_as_null=True)),
        duration_ms=_param(notifications.c.duration_ms),
    ).returning(notifications.c.id)
)
_CALL_COLUMNS = tuple(column.name for column in calls.c if column.name != "id")
_BLOCK_COLUMNS = ("session", "step", "node", "kind", "endpoint", "params", "status", "created_at", "updated_at",
                  "attempts")
#: (dialect name, what) -> INSERT ... ON CONFLICT DO NOTHING RETURNING, built on first use
_INSERTS: dict[tuple[str, str], DirectStatement] = {}


def _insert_or_nothing(dialect: str, what: str) -> DirectStatement:
    found = _INSERTS.get((dialect, what))
    if found is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        if what == "notification":
            names = (*_NOTIFICATION_COLUMNS, "dedupe_key")
            query = (insert(notifications).values(**{name: _param(notifications.c[name]) for name in names})
                     .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(notifications.c.id))
        elif what == "block":
            query = (insert(blocks).values(**{name: _param(blocks.c[name]) for name in _BLOCK_COLUMNS})
                     .on_conflict_do_nothing(index_elements=["session", "step"]).returning(blocks.c.id))
        else:
            query = (insert(calls).values(**{name: _param(calls.c[name]) for name in _CALL_COLUMNS})
                     .on_conflict_do_nothing(index_elements=["session"]).returning(*calls.c))
        found = _INSERTS[(dialect, what)] = DirectStatement(query)
    return found


def _claim_cte() -> Any:
    """PostgreSQL: the request's INSERT claiming its dedupe key, as a data-modifying CTE ``claimed``
    (``claimed_id``: no row when the key was already claimed)."""
    names = (*_NOTIFICATION_COLUMNS, "dedupe_key")
    return (postgresql.insert(notifications).values(**{name: _param(notifications.c[name]) for name in names})
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(notifications.c.id.label("claimed_id")).cte("claimed"))


def _one_row() -> Any:
    """``(SELECT 1)``: the row CTEs are outer-joined to, so a statement answers one row whatever they did."""
    return sa.select(sa.literal(1).label("one")).subquery("one")


def _block_binds(names: Sequence[str]) -> list[Any]:
    """The parameters ``block_<column>`` of a block's columns, typed as the columns."""
    return [sa.bindparam(f"block_{name}", type_=blocks.c[name].type) for name in names]


def _claim_and_lock_statement() -> DirectStatement:
    """PostgreSQL: ``record_claimed``'s INSERT and ``lock_call``'s SELECT ... FOR UPDATE in one
    statement (the INSERT a data-modifying CTE): one row, ``claimed_id`` (NULL when the key was
    already claimed) and the call's columns (NULL when there is no such call)."""
    claimed = _claim_cte()
    locked = sa.select(calls).where(calls.c.session == sa.bindparam("key")).with_for_update().cte("locked")
    one = _one_row()
    return DirectStatement(sa.select(claimed.c.claimed_id, *locked.c)
                           .select_from(one.outerjoin(claimed, sa.true()).outerjoin(locked, sa.true())))


def _update_and_queue_statement() -> DirectStatement:
    """PostgreSQL: ``update_call``'s UPDATE and the INSERT of the one block it queues (block parameters named
    ``block_<column>``) in one statement; the block is inserted only if the call was updated. One
    row: ``updated`` (0 or 1) and ``block_id`` (NULL when not inserted)."""
    updated = _UPDATE_CALL.statement.returning(calls.c.id).cte("updated")
    values = sa.select(*_block_binds(_BLOCK_COLUMNS))
    queued = (postgresql.insert(blocks).from_select(list(_BLOCK_COLUMNS), values.where(sa.exists(updated.select())))
              .on_conflict_do_nothing(index_elements=["session", "step"]).returning(blocks.c.id).cte("queued"))
    return DirectStatement(sa.select(sa.select(sa.func.count()).select_from(updated).scalar_subquery().label("updated"),
                                     sa.select(queued.c.id).scalar_subquery().label("block_id")))


def _start_call_statement() -> DirectStatement:
    """PostgreSQL: ``start_call``'s three INSERTs in one statement (data-modifying CTEs): the
    request, claiming its dedupe key; the call (parameters named ``call_<column>``), if the key was
    claimed; its block (``block_<column>``), if the call was inserted and ``with_block``. One row: ``claimed_id`` (NULL
    when the key was already claimed), the call's columns (NULL when not inserted) and ``block_id``."""
    claimed = _claim_cte()
    call_values = sa.select(*[_param(calls.c[name], f"call_{name}") for name in _CALL_COLUMNS]).where(
        sa.exists(claimed.select()))
    started = (postgresql.insert(calls).from_select(list(_CALL_COLUMNS), call_values)
               .on_conflict_do_nothing(index_elements=["session"]).returning(*calls.c).cte("started"))
    block_values = sa.select(*_block_binds(_BLOCK_COLUMNS))
    queued = (postgresql.insert(blocks)
              .from_select(list(_BLOCK_COLUMNS), block_values.where(sa.exists(started.select()),
                                                                   sa.bindparam("with_block", type_=sa.Boolean)))
              .on_conflict_do_nothing(index_elements=["session", "step"]).returning(blocks.c.id).cte("queued"))
    one = _one_row()
    return DirectStatement(
        sa.select(claimed.c.claimed_id, *started.c, sa.select(queued.c.id).scalar_subquery().label("block_id"))
        .select_from(one.outerjoin(claimed, sa.true()).outerjoin(started, sa.true())))


def _update_queue_strict_statement() -> DirectStatement:
    """PostgreSQL: ``_UPDATE_AND_QUEUE`` for a transaction committed with it: the block's session is
    the updated row's (a stale ``row_version`` inserts NULL there: a NOT NULL violation), and there
    is no ON CONFLICT (a block already queued: a unique violation). Either fails the statement."""
    updated = _UPDATE_CALL.statement.returning(calls.c.session.label("updated_session")).cte("updated")
    others = [name for name in _BLOCK_COLUMNS if name != "session"]
    values = sa.select(updated.c.updated_session, *_block_binds(others))
    values = values.select_from(_one_row().outerjoin(updated, sa.true()))
    return DirectStatement(postgresql.insert(blocks).from_select(["session", *others], values))


def _update_finish_strict_statement() -> DirectStatement:
    """PostgreSQL: ``update_call``'s UPDATE and ``finish_notification``'s (parameters named
    ``finish_<name>``) for a transaction committed with them, when there is nothing to send. The
    request keeps its ``received_at`` only if the call was updated: a stale ``row_version`` writes
    NULL there, a NOT NULL violation that fails the statement."""
    updated = _UPDATE_CALL.statement.returning(calls.c.id).cte("updated")
    finish = _finish_notification_statement("finish_").values(
        received_at=sa.case((sa.exists(updated.select()), notifications.c.received_at), else_=sa.null()))
    return DirectStatement(finish.add_cte(updated))


_CLAIM_AND_LOCK = _claim_and_lock_statement()
_UPDATE_QUEUE_STRICT = _update_queue_strict_statement()
_UPDATE_FINISH_STRICT = _update_finish_strict_statement()
_START_CALL = _start_call_statement()
_UPDATE_AND_QUEUE = _update_and_queue_statement()


# ---------------------------------------------------------------------------------------- transaction
class Transaction:
    """Queries on one open transaction. Obtained from ``db.transaction()`` (write) or
    ``db.reading()`` (read-only); unusable once the ``with`` block has ended."""

    def __init__(self, conn: sa.Connection, clock: Callable[[], datetime], *, write: bool = True) -> None:
        self._conn: sa.Connection | None = conn
        self._clock = clock
        self.write = write
        #: committed by its last statement (``update_call(..., commit=True)`` on PostgreSQL)
        self.committed = False
        #: statements to send with this transaction's next claim (``claim_and_lock``, ``start_call``)
        #: on PostgreSQL, in the same round trip: the results written behind (``Database.write``)
        self.riders: list[tuple[DirectStatement, dict[str, Any]]] = []

    def close(self) -> None:
        self._conn = None

    @property
    def conn(self) -> sa.Connection:
        """The underlying connection, for queries this class does not offer."""
        if self._conn is None:
            raise StorageError("this transaction has ended: use it only inside its `with` block")
        if self.committed:
            raise StorageError("this transaction was committed with its last statement "
                               "(update_call(..., commit=True)): nothing can follow it")
        return self._conn

    def now(self) -> datetime:
        return self._clock()

    def _insert(self, table: sa.Table) -> Any:
        # Dialect insert for ON CONFLICT DO NOTHING (keeps a PostgreSQL transaction usable, unlike a
        # caught IntegrityError).
        return (postgresql.insert if self.conn.dialect.name == "postgresql" else sqlite.insert)(table)

    def _require_write(self) -> None:
        if not self.write:
            raise StorageError("this is a read-only transaction (db.reading()): use db.transaction()")

    # ------------------------------------------------------------------ calls
    def lock_call(self, session: str) -> CallRow | None:
        """The call row, locked until the transaction ends (PostgreSQL ``SELECT ... FOR UPDATE``;
        on SQLite the whole database is already locked by ``BEGIN IMMEDIATE``)."""
        self._require_write()
        found = _LOCK_CALL.execute(self.conn, {"key": session}).first()
        return None if found is None else CallRow(**found)

    def get_call(self, session: str) -> CallRow | None:
        found = _GET_CALL.execute(self.conn, {"key": session}).first()
        return None if found is None else CallRow(**found)

    def insert_call(
        self,
        *,
        session: str,
        flow: str,
        flow_version: str,
        state: Mapping[str, Any],
        direction: str = "inbound",
        node: str | None = None,
        step: int = 0,
        status: str = "active",
        caller: str | None = None,
        called: str | None = None,
        dest: str | None = None,
        txn_ref: str | None = None,
        outcome: str | None = None,
        billing: Mapping[str, Any] | None = None,
    ) -> CallRow:
        """Insert a new call (``row_version`` 1). Raises ``DuplicateCall`` when the session exists;
        the transaction stays usable (on PostgreSQL the insert first waits for a concurrent
        transaction inserting the same session, then ``tx.lock_call`` sees its row)."""
        self._require_write()
        values = self._call_values(session=session, flow=flow, flow_version=flow_version, state=state,
                                   direction=direction, node=node, step=step, status=status, caller=caller,
                                   called=called, dest=dest, txn_ref=txn_ref, outcome=outcome, billing=billing)
        inserted = _insert_or_nothing(self.conn.dialect.name, "call").execute(self.conn, values).first()
        if inserted is None:
            raise DuplicateCall(session)
        return CallRow(**inserted)

    def _call_values(self, *, session: str, flow: str, flow_version: str, state: Mapping[str, Any],
                     direction: str = "inbound", node: str | None = None, step: int = 0, status: str = "active",
                     caller: str | None = None, called: str | None = None, dest: str | None = None,
                     txn_ref: str | None = None, outcome: str | None = None,
                     billing: Mapping[str, Any] | None = None) -> dict[str, Any]:
        now = self.now()
        return {
            "session": session,
            "flow": flow,
            "flow_version": flow_version,
            "direction": _choose(direction, CALL_DIRECTIONS, "direction"),
            "status": status,
            "node": node,
            "step": step,
            "state": dict(state),
            "caller": caller,
            "called": called,
            "dest": dest,
            "txn_ref": txn_ref,
            "outcome": outcome,
            "billing": None if billing is None else dict(billing),
            "created_at": now,
            "updated_at": now,
            "ended_at": now if status == "ended" else None,
            "row_version": 1,
        }

    def start_call(self, dedupe_key: str, *request: Any, call: Mapping[str, Any],
                   queue: Sequence[Mapping[str, Any]] = (), **details: Any) -> tuple[int, bool, CallRow | None]:
        """A call's first notification: ``record_claimed(dedupe_key, *request, **details)``, then, if
        claimed, ``insert_call(**call)`` and, if inserted, ``add_block(**block)`` for each block of
        ``queue``. ``(id, claimed, row)``: ``row`` is the new call, None when the key was already
        claimed or the call already exists (``DuplicateCall`` is not raised). On PostgreSQL, with at
        most one block, one statement."""
        if self.conn.dialect.name != "postgresql" or len(queue) > 1:
            found_id, claimed = self.record_claimed(dedupe_key, *request, **details)
            if not claimed:
                return found_id, False, None
            try:
                row = self.insert_call(**call)
            except DuplicateCall:
                return found_id, True, None
            for block in queue:
                self.add_block(**block)
            return found_id, True, row
        self._require_write()
        values = self._notification_values(*request, **details)
        params = {**values, "dedupe_key": dedupe_key,
                  **{f"call_{name}": value for name, value in self._call_values(**call).items()}}
        if queue:
            block = self._block_params(**queue[0])
        else:  # no row is inserted; the values only give the parameters their types
            block = dict.fromkeys(_BLOCK_COLUMNS)
        params.update({f"block_{name}": value for name, value in block.items()}, with_block=bool(queue))
        found = _START_CALL.execute(self.conn, params, riders=self._take_riders()).first()
        if found is None or found["claimed_id"] is None:
            return self._record_unclaimed(values), False, None
        claimed_id = int(found.pop("claimed_id"))
        block_id = found.pop("block_id")
        if found["id"] is None:
            return claimed_id, True, None
        if queue and block_id is None:
            raise DuplicateBlock(queue[0]["session"], queue[0]["step"])
        return claimed_id, True, CallRow(**found)

    def update_call(
        self,
        session: str,
        state: Mapping[str, Any],
        node: str | None,
        step: int,
        status: str,
        outcome: str | None = None,
        billing: Mapping[str, Any] | None = None,
        *,
        expected_row_version: int,
        caller: str | None = None,
        called: str | None = None,
        dest: str | None = None,
        txn_ref: str | None = None,
        queue: Sequence[Mapping[str, Any]] = (),
        finish: Mapping[str, Any] | None = None,
        commit: bool = False,
    ) -> int:
        """Store a call's new state; returns the new ``row_version``.

        ``state``, ``node``, ``step``, ``status``, ``outcome`` and ``billing`` are written as given
        (they mirror the state); ``caller``/``called``/``dest``/``txn_ref`` only when not None.
        ``ended_at`` is set the first time ``status`` is ``"ended"``. Raises ``ConcurrentUpdate``
        when the row's ``row_version`` is not ``expected_row_version`` (or the row is gone).

        ``queue``: blocks to add (``add_block`` arguments) once the call is updated; on PostgreSQL
        an update with one block is one statement.

        ``finish``: then ``finish_notification(**finish)`` (only without ``queue``); on PostgreSQL
        in the same statement.

        ``commit``: this is the transaction's last statement. On PostgreSQL, with one block or with
        ``finish``, the transaction is then committed with it, in the same round trip; ``tx`` is
        unusable after (``committed``). Elsewhere the transaction commits at the end of its block,
        as usual."""
        self._require_write()
        if finish is not None and queue:
            raise ValueError("update_call finishes a notification only when it queues no block")
        now = self.now()
        params = {
            "key": session,
            "expected": expected_row_version,
            "state": dict(state),
            "node": node,
            "step": step,
            "status": status,
            "ended_status": status,
            "outcome": outcome,
            "billing": None if billing is None else dict(billing),
            "updated_at": now,
            "ended_now": now,
            "caller": caller,
            "called": called,
            "dest": dest,
            "txn_ref": txn_ref,
        }
        if len(queue) == 1 and self.conn.dialect.name == "postgresql":
            params.update({f"block_{name}": value for name, value in self._block_params(**queue[0]).items()})
            if commit:
                self._commit_strictly(_UPDATE_QUEUE_STRICT, params, expected_row_version, queue[0])
                return expected_row_version + 1
            found = _UPDATE_AND_QUEUE.execute(self.conn, params).first() or {}
            if found.get("updated") != 1:
                self._concurrent_update(session, expected_row_version)
            if found.get("block_id") is None:
                raise DuplicateBlock(queue[0]["session"], queue[0]["step"])
            return expected_row_version + 1
        if finish is not None:
            finished = self._finish_params(**finish)
            if commit and self.conn.dialect.name == "postgresql":
                params.update({f"finish_{name}": value for name, value in finished.items()})
                self._commit_strictly(_UPDATE_FINISH_STRICT, params, expected_row_version)
                return expected_row_version + 1
        if _UPDATE_CALL.execute(self.conn, params).rowcount != 1:
            self._concurrent_update(session, expected_row_version)
        for block in queue:
            self.add_block(**block)
        if finish is not None:
            _FINISH_NOTIFICATION.execute(self.conn, finished)
        return expected_row_version + 1

    def _commit_strictly(self, statement: DirectStatement, params: dict[str, Any], expected_row_version: int,
                         block: Mapping[str, Any] | None = None) -> None:
        """PostgreSQL: the update with its block (``_UPDATE_QUEUE_STRICT``) or its notification's
        outcome (``_UPDATE_FINISH_STRICT``), and ``COMMIT``, in one round trip. A stale row or a
        block already queued is an error inside the statement (a NULL written where the updated row
        would have given a value; no ON CONFLICT), so the ``COMMIT`` sent with it never commits past
        one."""
        try:
            statement.execute(self.conn, params, commit=True)
        except sa.exc.IntegrityError as exc:
            diag = getattr(exc.orig, "diag", None)
            sqlstate = getattr(exc.orig, "sqlstate", None)
            where = (getattr(diag, "table_name", None), getattr(diag, "column_name", None))
            if sqlstate == "23502" and where in (("blocks", "session"), ("notifications", "received_at")):
                raise ConcurrentUpdate(params["key"], expected_row_version, None) from None
            if block is not None and sqlstate == "23505" \
                    and getattr(diag, "constraint_name", None) == "uq_blocks_session_step":
                raise DuplicateBlock(block["session"], block["step"]) from None
            raise
        self.committed = True

    def _concurrent_update(self, session: str, expected_row_version: int) -> None:
        query = sa.select(calls.c.row_version).where(calls.c.session == session)
        actual = self.conn.execute(query).scalar_one_or_none()
        raise ConcurrentUpdate(session, expected_row_version, actual)

    def list_calls(self, limit: int = 50, status: str | Collection[str] | None = None) -> list[CallRow]:
        """Most recently started first; finished calls alone (``status="ended"``): most recently
        ended first. Both orders follow an index (``ix_calls_status_id``, ``ix_calls_ended_at``), none
        of which a call in progress changes (``tables.CALL_UPDATED_COLUMNS``)."""
        if status == "ended":
            order = (calls.c.ended_at.desc(), calls.c.id.desc())
        else:
            order = (calls.c.id.desc(),)
        query = sa.select(calls).order_by(*order).limit(limit)
        if isinstance(status, str):
            query = query.where(calls.c.status == status)
        elif status is not None:
            query = query.where(calls.c.status.in_(list(status)))
        return [_row(CallRow, m) for m in self.conn.execute(query).mappings()]

    def count_calls(self, status: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(calls)
        if status is not None:
            query = query.where(calls.c.status == status)
        return int(self.conn.execute(query).scalar_one())

    # ------------------------------------------------------------------ notifications
    def record_notification(self, *request: Any, outcome: str | None = None, reason: str | None = None,
                            response: Any = None, duration_ms: float | None = None, **details: Any) -> int:
        """Store a request as received (``request`` and ``details``: see ``_notification_values``);
        returns its id. With ``outcome`` (and ``reason``, ``response``, ``duration_ms``) the request
        is stored already finished: one statement for a request refused before any processing."""
        self._require_write()
        values = self._notification_values(*request, **details)
        values.update(outcome=None if outcome is None else _choose(outcome, NOTIFICATION_OUTCOMES, "outcome"),
                      reason=reason, response=response, duration_ms=_ms(duration_ms))
        return int(_RECORD_NOTIFICATION.execute(self.conn, values).scalar())

    def record_claimed(self, dedupe_key: str, *request: Any, **details: Any) -> tuple[int, bool]:
        """Store a request (``request`` and ``details``: see ``_notification_values``) and claim its
        dedupe key, in one statement: ``(id, True)``. When the key was already claimed (a
        redelivery) the request is still stored, without the key, and the answer is ``(id, False)``.
        Like ``claim_notification``, the claim commits or rolls back with the transaction, and on
        PostgreSQL a concurrent claim of the same key waits for the first transaction."""
        self._require_write()
        values = self._notification_values(*request, **details)
        query = _insert_or_nothing(self.conn.dialect.name, "notification")
        found = query.execute(self.conn, {**values, "dedupe_key": dedupe_key}).scalar()
        if found is not None:
            return int(found), True
        return self._record_unclaimed(values), False

    def claim_and_lock(self, dedupe_key: str, *request: Any, lock: str,
                       **details: Any) -> tuple[int, bool, CallRow | None]:
        """``record_claimed(dedupe_key, *request, **details)``, then, if claimed, ``lock_call(lock)``:
        ``(id, claimed, row)``, ``row`` None when not claimed or when there is no such call. On
        PostgreSQL one statement."""
        if self.conn.dialect.name != "postgresql":
            found_id, claimed = self.record_claimed(dedupe_key, *request, **details)
            return found_id, claimed, self.lock_call(lock) if claimed else None
        self._require_write()
        values = self._notification_values(*request, **details)
        found = _CLAIM_AND_LOCK.execute(self.conn, {**values, "dedupe_key": dedupe_key, "key": lock},
                                        riders=self._take_riders()).first()
        if found is None or found["claimed_id"] is None:
            return self._record_unclaimed(values), False, None
        claimed_id = found.pop("claimed_id")
        return int(claimed_id), True, None if found["id"] is None else CallRow(**found)

    def _take_riders(self) -> list[tuple[DirectStatement, dict[str, Any]]]:
        riders, self.riders = self.riders, []
        return riders

    def _record_unclaimed(self, values: dict[str, Any]) -> int:
        """A redelivery: its request stored all the same, without the dedupe key, not finished."""
        values.update(outcome=None, reason=None, response=None, duration_ms=None)
        return int(_RECORD_NOTIFICATION.execute(self.conn, values).scalar())

    def _notification_values(
        self,
        route: str,
        method: str,
        query_string: str = "",
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes | str = b"",
        *,
        session: str | None = None,
        step: int | None = None,
        received_at: datetime | None = None,
    ) -> dict[str, Any]:
        """The columns of a stored request: ``route`` (answer, notify, ...) and ``method`` as
        received, the raw ``query_string``, ``headers`` without credentials (``scrub_headers``) and
        ``body`` byte for byte (a ``str`` is stored UTF-8 encoded); ``session`` and ``step`` when
        known; ``received_at`` (default: now)."""
        return {
            "received_at": received_at or self.now(),
            "session": _clip(session, SESSION_LEN),
            "route": _clip(route, 255) or "",
            "method": _clip(method, 16) or "",
            "query_string": query_string or "",
            "headers": scrub_headers(headers),
            "body": body.encode("utf-8") if isinstance(body, str) else bytes(body),
            "step": step,
        }

    def finish_notification(
        self,
        notification_id: int,
        outcome: str,
        reason: str | None = None,
        response: Any = None,
        session: str | None = None,
        step: int | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """Record how a notification was handled. ``session``/``step`` are kept when None."""
        self._require_write()
        _FINISH_NOTIFICATION.execute(self.conn, self._finish_params(notification_id, outcome, reason, response,
                                                                    session, step, duration_ms))

    @staticmethod
    def _finish_params(notification_id: int, outcome: str, reason: str | None = None, response: Any = None,
                       session: str | None = None, step: int | None = None,
                       duration_ms: float | None = None) -> dict[str, Any]:
        return {
            "notification_id": notification_id,
            "outcome": _choose(outcome, NOTIFICATION_OUTCOMES, "outcome"),
            "reason": reason,
            "response": response,
            "duration_ms": _ms(duration_ms),
            "session": _clip(session, SESSION_LEN),
            "step": step,
        }

    def claim_notification(self, dedupe_key: str, notification_id: int | None = None) -> bool:
        """Claim a dedupe key for this transaction; False when it was already claimed (a redelivery).

        With ``notification_id`` the key is stored on that recorded request. Without it a bare
        marker row (route ``"(claim)"``, no session) holds the key. The claim is undone if the
        transaction rolls back. On PostgreSQL a concurrent claim of the same key waits for the
        first transaction and then returns False (or True if that one rolled back)."""
        self._require_write()
        try:
            with self.conn.begin_nested():
                if notification_id is None:
                    self.conn.execute(
                        sa.insert(notifications).values(
                            received_at=self.now(),
                            route="(claim)",
                            method="",
                            query_string="",
                            headers={},
                            body=b"",
                            dedupe_key=dedupe_key,
                            outcome="accepted",
                        )
                    )
                else:
                    updated = self.conn.execute(
                        sa.update(notifications).where(notifications.c.id == notification_id),
                        {"dedupe_key": dedupe_key},
                    ).rowcount
                    if updated != 1:
                        raise StorageError(f"no recorded notification with id {notification_id}")
        except sa.exc.IntegrityError:
            return False
        return True

    def recent_notifications(
        self, limit: int = 50, *, session: str | None = None, outcome: str | None = None
    ) -> list[NotificationRow]:
        """Newest first, optionally for one session or one outcome."""
        query = sa.select(notifications).order_by(notifications.c.id.desc()).limit(limit)
        if session is not None:
            query = query.where(notifications.c.session == session)
        if outcome is not None:
            query = query.where(notifications.c.outcome == outcome)
        return [_notification(m) for m in self.conn.execute(query).mappings()]

    def get_notification(self, notification_id: int) -> NotificationRow | None:
        found = (
            self.conn.execute(sa.select(notifications).where(notifications.c.id == notification_id)).mappings().first()
        )
        return None if found is None else _notification(found)

    # ------------------------------------------------------------------ blocks (outbox)
    def add_block(self, *block: Any, **details: Any) -> int:
        """Queue one block (``block`` and ``details``: see ``_block_params``; status ``pending``, or
        ``sending`` when the caller sends it right after commit: one transaction fewer than claiming
        it separately); returns its id. Raises ``DuplicateBlock`` when (session, step) is already
        queued; the transaction stays usable."""
        self._require_write()
        query = _insert_or_nothing(self.conn.dialect.name, "block")
        values = self._block_params(*block, **details)
        block_id = query.execute(self.conn, values).scalar()
        if block_id is None:
            raise DuplicateBlock(values["session"], values["step"])
        return int(block_id)

    def _block_params(
        self,
        session: str,
        step: int,
        node: str,
        kind: str,
        endpoint: str,
        params: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        status: str = "pending",
    ) -> dict[str, Any]:
        """The columns of a queued block: the call's ``session`` and the block's ``step``, the flow
        ``node`` and block ``kind`` it comes from, the Hoiio ``endpoint`` and its ``params`` (kept in
        their order; never ``access_token`` or ``app_id``), ``status`` ``pending`` or ``sending``."""
        params = dict(params.items() if isinstance(params, Mapping) else params)
        leaked = FORBIDDEN_BLOCK_PARAMS.intersection(params)
        if leaked:
            raise ValueError(f"block parameters must not contain {', '.join(sorted(leaked))}")
        now = self.now()
        return {
            "session": session,
            "step": step,
            "node": node,
            "kind": kind,
            "endpoint": endpoint,
            "params": params,
            "status": _choose(status, ("pending", "sending"), "new block status"),
            "created_at": now,
            "updated_at": now,
            "attempts": 1 if status == "sending" else 0,
        }

    def mark_block(
        self,
        block_id: int | None = None,
        status: str | None = None,
        http_status: int | None = None,
        provider_status: str | None = None,
        response: Any = None,
        duration_ms: float | None = None,
        attempts: int | None = None,
        error: str | None = None,
        *,
        session: str | None = None,
        step: int | None = None,
        from_status: Collection[str] | None = None,
    ) -> bool:
        """Record a send attempt of a block, found by ``block_id`` or by ``session`` + ``step``.

        Only the given (non-None) details are written. ``status="sending"`` without ``attempts``
        adds one to ``attempts``. ``sent_at`` is set when the status becomes ``sent``, ``failed`` or
        ``unknown`` (the attempt finished). With ``from_status`` the row changes only if its current
        status is one of them: ``mark_block(id, "sending", from_status=("pending",))`` is how a
        dispatcher claims a block so that two workers never send it twice. Returns True when the
        row was changed."""
        self._require_write()
        if block_id is None and (session is None or step is None):
            raise ValueError("mark_block needs block_id, or session and step")
        params = self._mark_params(status, http_status, provider_status, response, duration_ms, attempts, error)
        params.update(block_id=block_id, key=session, block_step=step)
        if from_status is not None:
            params["from_status"] = list(from_status)
        statement = _MARK_BLOCK[(block_id is not None, from_status is not None)]
        if isinstance(statement, DirectStatement):
            return statement.execute(self.conn, params).rowcount == 1
        return self.conn.execute(statement, params).rowcount == 1

    def mark_block_and_finish(self, mark: Mapping[str, Any], finish: Mapping[str, Any]) -> None:
        """``mark_block(**mark)`` (by ``session`` and ``step``) and ``finish_notification(**finish)``:
        on PostgreSQL in one statement (``Database.record_sent`` writes it behind)."""
        self._require_write()
        if self.conn.dialect.name != "postgresql":
            finished = self._finish_params(**finish)  # checked before the first write
            self.mark_block(**mark)
            _FINISH_NOTIFICATION.execute(self.conn, finished)
            return
        _MARK_BLOCK_AND_FINISH.execute(self.conn, self._mark_and_finish_params(mark, finish))

    def sent_statements(self, marks: Sequence[Mapping[str, Any]],
                        finish: Mapping[str, Any]) -> list[tuple[DirectStatement, dict[str, Any]]]:
        """PostgreSQL: the statements (with their parameters) of ``mark_block(**mark)`` for each of
        ``marks`` but the last, then ``mark_block_and_finish(last, finish)``, for ``riders``. Raises
        ``ValueError`` for values these methods would refuse."""
        *first, last = marks
        statements = []
        for mark in first:
            if mark.get("from_status") is not None:
                raise ValueError("a result written behind claims nothing (no from_status)")
            params = self._mark_by_step_params(mark)
            params["block_id"] = None
            statements.append((_MARK_BLOCK[(False, False)], params))
        statements.append((_MARK_BLOCK_AND_FINISH, self._mark_and_finish_params(last, finish)))
        return statements

    def _mark_and_finish_params(self, mark: Mapping[str, Any], finish: Mapping[str, Any]) -> dict[str, Any]:
        params = self._finish_params(**finish)
        marked = self._mark_by_step_params(mark)
        key, step = marked.pop("key"), marked.pop("block_step")
        params.update({f"block_{name}": value for name, value in marked.items()}, key=key, block_step=step)
        return params

    def _mark_by_step_params(self, mark: Mapping[str, Any]) -> dict[str, Any]:
        """``mark_block(**mark)``'s parameters, for a block found by ``session`` and ``step``."""
        if mark.get("session") is None or mark.get("step") is None or mark.get("block_id") is not None:
            raise ValueError("a result written behind finds its block by session and step")
        params = self._mark_params(mark["status"], mark.get("http_status"), mark.get("provider_status"),
                                   mark.get("response"), mark.get("duration_ms"), mark.get("attempts"),
                                   mark.get("error"))
        params.update(key=mark["session"], block_step=mark["step"])
        return params

    def _mark_params(self, status: str | None, http_status: int | None, provider_status: str | None, response: Any,
                     duration_ms: float | None, attempts: int | None, error: str | None) -> dict[str, Any]:
        if status is None:
            raise ValueError("mark_block needs a status")
        _choose(status, BLOCK_STATUSES, "block status")
        now = self.now()
        return {
            "status": status,
            "updated_at": now,
            "sent_at": now if status in ("sent", "failed", "unknown") else None,
            "http_status": http_status,
            "provider_status": _clip(provider_status, 64),
            "response": response,
            "duration_ms": _ms(duration_ms),
            "error": error,
            "attempts": attempts,
            "add_attempt": 1 if status == "sending" else 0,
        }

    def get_block(self, block_id: int) -> BlockRow | None:
        found = self.conn.execute(sa.select(blocks).where(blocks.c.id == block_id)).mappings().first()
        return None if found is None else _row(BlockRow, found)

    def blocks_for(self, session: str) -> list[BlockRow]:
        query = sa.select(blocks).where(blocks.c.session == session).order_by(blocks.c.step, blocks.c.id)
        return [_row(BlockRow, m) for m in self.conn.execute(query).mappings()]

    def blocks_in_status(
        self,
        statuses: Collection[str] = ("pending", "sending"),
        older_than_seconds: float = 0.0,
        limit: int = 100,
    ) -> list[BlockRow]:
        """Blocks in one of ``statuses`` not touched for ``older_than_seconds`` (crash recovery),
        oldest first."""
        if isinstance(statuses, str):
            statuses = (statuses,)
        cutoff = self.now() - timedelta(seconds=older_than_seconds)
        query = (
            sa.select(blocks)
            .where(blocks.c.status.in_(list(statuses)), blocks.c.updated_at <= cutoff)
            .order_by(blocks.c.id)
            .limit(limit)
        )
        return [_row(BlockRow, m) for m in self.conn.execute(query).mappings()]

    # ------------------------------------------------------------------ side calls and their events
    def add_side_call(
        self,
        kind: str,
        request: Any,
        *,
        txn_ref: str | None = None,
        session: str | None = None,
        status: str = "pending",
    ) -> int:
        self._require_write()
        now = self.now()
        result = self.conn.execute(
            sa.insert(side_calls).values(
                kind=kind,
                txn_ref=txn_ref,
                session=session,
                request=request,
                status=status,
                created_at=now,
                updated_at=now,
            )
        )
        return int(result.inserted_primary_key[0])

    def update_side_call(
        self, side_call_id: int, status: str, response: Any = None, *, txn_ref: str | None = None
    ) -> bool:
        self._require_write()
        values: dict[str, Any] = {"status": status, "updated_at": self.now()}
        if response is not None:
            values["response"] = response
        if txn_ref is not None:
            values["txn_ref"] = txn_ref
        query = sa.update(side_calls).where(side_calls.c.id == side_call_id).values(**values)
        return self.conn.execute(query).rowcount == 1

    def side_calls(self, *, session: str | None = None, txn_ref: str | None = None) -> list[SideCallRow]:
        query = sa.select(side_calls).order_by(side_calls.c.id)
        if session is not None:
            query = query.where(side_calls.c.session == session)
        if txn_ref is not None:
            query = query.where(side_calls.c.txn_ref == txn_ref)
        return [_row(SideCallRow, m) for m in self.conn.execute(query).mappings()]

    def record_call_event(self, txn_ref: str, kind: str, payload: Any) -> int:
        self._require_write()
        result = self.conn.execute(
            sa.insert(call_events).values(txn_ref=txn_ref, kind=kind, payload=payload, received_at=self.now())
        )
        return int(result.inserted_primary_key[0])

    def call_events(self, txn_ref: str) -> list[CallEventRow]:
        query = sa.select(call_events).where(call_events.c.txn_ref == txn_ref).order_by(call_events.c.id)
        return [_row(CallEventRow, m) for m in self.conn.execute(query).mappings()]

    # ------------------------------------------------------------------ flow versions
    def record_flow_version(self, flow: str, version: str, source: str) -> bool:
        """Keep the source of a flow version (first one wins). True when newly stored."""
        self._require_write()
        query = (
            self._insert(flow_versions)
            .values(flow=flow, version=version, source=source, loaded_at=self.now())
            .on_conflict_do_nothing(index_elements=["flow", "version"])
            .returning(flow_versions.c.id)
        )
        return self.conn.execute(query).scalar_one_or_none() is not None

    def get_flow_source(self, flow: str, version: str) -> str | None:
        query = sa.select(flow_versions.c.source).where(
            flow_versions.c.flow == flow, flow_versions.c.version == version
        )
        return self.conn.execute(query).scalar_one_or_none()

    def flow_versions(self, flow: str | None = None) -> list[dict[str, Any]]:
        """Stored versions (``flow``, ``version``, ``loaded_at``, ``source``), newest first."""
        query = sa.select(flow_versions).order_by(flow_versions.c.loaded_at.desc(), flow_versions.c.id.desc())
        if flow is not None:
            query = query.where(flow_versions.c.flow == flow)
        return [
            {"flow": m["flow"], "version": m["version"], "loaded_at": m["loaded_at"], "source": m["source"]}
            for m in self.conn.execute(query).mappings()
        ]

    # ------------------------------------------------------------------ views and housekeeping
    def timeline(self, session: str) -> list[TimelineEntry]:
        """Notifications (by ``received_at``), blocks (by ``created_at``) and side calls of a session,
        merged in time order; at equal times a notification comes before what it caused. The side
        calls include the conference requests the call's flow made, with the people they dialled in
        (stored under their room, ``room:<id>``)."""
        entries: list[tuple[datetime, int, int, TimelineEntry]] = []
        query = sa.select(notifications).where(notifications.c.session == session)
        for m in self.conn.execute(query).mappings():
            row = _notification(m)
            entries.append((row.received_at, 0, row.id, TimelineEntry(row.received_at, "notification", row)))
        for block in self.blocks_for(session):
            entries.append((block.created_at, 1, block.id, TimelineEntry(block.created_at, "block", block)))
        for side in self.side_calls(session=session) + self._room_side_calls_of(session):
            entries.append((side.created_at, 2, side.id, TimelineEntry(side.created_at, "side_call", side)))
        entries.sort(key=lambda e: e[:3])
        return [e[3] for e in entries]

    def _room_side_calls_of(self, session: str) -> list[SideCallRow]:
        """The ``conference/call`` requests made by the call ``session`` (its session is kept in the
        request) and the participants each dialled in: room side calls created while the call lasted."""
        call = self.get_call(session)
        if call is None:
            return []
        query = (
            sa.select(side_calls)
            .where(side_calls.c.session.like("room:%"), side_calls.c.created_at >= call.created_at)
            .order_by(side_calls.c.id)
        )
        if call.ended_at is not None:
            query = query.where(side_calls.c.created_at <= call.ended_at)
        rows = [_row(SideCallRow, m) for m in self.conn.execute(query).mappings()]
        made = {r.id for r in rows if r.kind == "conference/call" and r.request.get("session") == session}
        return [r for r in rows if r.id in made
                or (r.kind == "conference/participant" and r.request.get("request_id") in made)]

    def prune(self, older_than: timedelta) -> dict[str, int]:
        """Delete what is older than the retention period; returns the number of rows per table.

        Calls ended before the cutoff, or never ended and untouched since it (abandoned), go with
        their blocks. Notifications, side calls and call events go by their own timestamps. Flow
        versions are kept. Dedupe keys go with their notifications: by then a redelivery finds no
        call and is refused."""
        self._require_write()
        cutoff = self.now() - older_than
        doomed = sa.or_(
            calls.c.ended_at < cutoff,
            sa.and_(calls.c.ended_at.is_(None), calls.c.updated_at < cutoff),
        )
        doomed_sessions = sa.select(calls.c.session).where(doomed).scalar_subquery()
        counts = {
            "blocks": self.conn.execute(sa.delete(blocks).where(blocks.c.session.in_(doomed_sessions))).rowcount,
            "calls": self.conn.execute(sa.delete(calls).where(doomed)).rowcount,
            "notifications": self.conn.execute(
                sa.delete(notifications).where(notifications.c.received_at < cutoff)
            ).rowcount,
            "side_calls": self.conn.execute(sa.delete(side_calls).where(side_calls.c.created_at < cutoff)).rowcount,
            "call_events": self.conn.execute(sa.delete(call_events).where(call_events.c.received_at < cutoff)).rowcount,
        }
        return counts


def _notification(mapping: Mapping[str, Any]) -> NotificationRow:
    values = dict(mapping)
    values["body"] = bytes(values["body"] or b"")  # memoryview on PostgreSQL
    return _row(NotificationRow, values)
