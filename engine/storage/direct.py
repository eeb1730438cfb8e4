"""Statements of the request path, run on the database driver directly.

A notification runs the same handful of statements (claim, lock, update, queue, mark, finish) on
every call. Even prebuilt, each one cost SQLAlchemy about ten times what the driver needs to run it
(execution context, parameter processing, result object, events: about 65 µs against 7 µs on
SQLite, ``bench/profile_engine.py``), and on SQLite that time is spent holding the database's single
write lock. ``DirectStatement`` compiles a SQLAlchemy statement once per dialect, with SQLAlchemy's
own compiler and type processors, and runs it on the DBAPI cursor of the ``sa.Connection`` it is
given, inside that connection's transaction. So the SQL text, the column types (aware UTC
datetimes, JSON, safe text) and the results are exactly those of ``conn.execute``; what is skipped
is the per-execution machinery.

On PostgreSQL, the statements of one round trip (``BEGIN``, the statement, its riders, ``COMMIT``)
go in psycopg's pipeline mode, which sends each one with a system call of its own. On a TCP
connection they are held in the kernel until the last one (``_corked``), so that the server is
handed them together rather than woken for each.

What the direct path keeps: driver errors are raised as SQLAlchemy's ``DBAPIError`` (so
``translated_errors`` maps them as before), and a dropped connection is invalidated so the pool
does not hand it out again. ``before_cursor_execute`` listeners are called (statement counters of
the benchmarks and tests); ``echo`` logging is not.

Not for statements with expanding ``IN`` parameters or with ``executemany``: those go through
``conn.execute``.

May import sqlalchemy. Never Flask.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["DirectResult", "DirectStatement", "RiderFailed", "begin_lazily"]

_Processor = Callable[[Any], Any] | None


class _Plan:
    """One statement compiled for one dialect: its SQL text, how to lay out and convert its
    parameters, and how to convert its result columns (filled on the first result)."""

    __slots__ = ("columns", "defaults", "names", "positional", "processors", "result_processors", "sql")

    def __init__(self, statement: Any, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        # the order in which qmark/format parameters appear; for named styles each name once
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ()) if self.positional else tuple(compiled.binds)
        self.defaults: dict[str, Any] = {}
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            if bind.expanding:
                raise ValueError(f"{name}: expanding parameters are not supported on the direct path")
            if not bind.required:
                self.defaults[name] = bind.effective_value  # a literal of the statement, e.g. the 1 of "+ 1"
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor
        self.columns: tuple[tuple[str, Any], ...] = tuple(
            (column.key, column.type) for column in getattr(statement, "exported_columns", ()) or ()
        )
        self.result_processors: tuple[_Processor, ...] | None = None

    def parameters(self, given: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        processors = self.processors
        defaults = self.defaults
        values = []
        for name in self.names:
            value = given[name] if name in given else defaults[name]
            processor = processors.get(name)
            values.append(value if processor is None else processor(value))
        return values if self.positional else dict(zip(self.names, values, strict=True))

    def convert(self, dialect: sa.Dialect, cursor: Any, rows: list[Sequence[Any]]) -> list[dict[str, Any]]:
        processors = self.result_processors
        if processors is None:
            # once: psycopg builds cursor.description anew, column by column, at every reading
            processors = self.result_processors = tuple(
                type_.dialect_impl(dialect).result_processor(dialect, entry[1])
                for (_key, type_), entry in zip(self.columns, cursor.description, strict=True)
            )
        keys = [key for key, _type in self.columns]
        return [{key: value if processor is None else processor(value)
                 for key, processor, value in zip(keys, processors, row, strict=True)} for row in rows]


class DirectResult:
    """What a direct execution returned: ``rowcount`` and the rows, converted, as dicts."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rowcount: int, rows: list[dict[str, Any]]) -> None:
        self.rowcount = rowcount
        self.rows = rows

    def first(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None when there is no row."""
        return next(iter(self.rows[0].values())) if self.rows else None


class RiderFailed(Exception):
    """A statement run along with another (``DirectStatement.execute(riders=...)``) was refused:
    by its types, before anything was sent, or by the database, where the statement it rode with
    succeeded. The transaction is lost all the same (it can only roll back), but the fault is the
    rider's: run the transaction again without it. ``error``: the refusal (a driver's error as
    SQLAlchemy raises it)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class DirectStatement:
    """A SQLAlchemy statement compiled once per dialect and run on the driver: see the module."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}
        self._guard = threading.Lock()

    def plan(self, dialect: sa.Dialect) -> _Plan:
        found = self._plans.get(dialect.name)
        if found is None:
            with self._guard:
                found = self._plans.get(dialect.name) or _Plan(self.statement, dialect)
                self._plans[dialect.name] = found
        return found

    def execute(self, conn: sa.Connection, params: Mapping[str, Any], *, commit: bool = False,
                riders: Sequence[tuple[DirectStatement, Mapping[str, Any]]] = ()) -> DirectResult:
        """Run on ``conn``'s driver connection, in its current transaction. ``commit`` (PostgreSQL):
        then commit the transaction, ``COMMIT`` sent with the statement; if the statement fails, the
        ``COMMIT`` is not carried out (the pipeline stops at the error) and the transaction is left
        to roll back. Only for the transaction's last statement.

        ``riders``: other statements (with their parameters) to run right after this one, in the
        same transaction; on PostgreSQL sent with it, in the same round trip. Their results are not
        returned. If this statement succeeds and a rider fails, ``RiderFailed`` is raised (the
        transaction is lost: it can only roll back)."""
        dialect = conn.dialect
        plan = self.plan(dialect)
        parameters = plan.parameters(params)
        driver = conn.connection.dbapi_connection
        if driver is None:
            raise sa.exc.ResourceClosedError("this connection is closed")
        postgresql = dialect.name == "postgresql"
        prepared = []  # the riders' parameters, converted before anything is sent
        for statement, values in riders:
            rider_plan = statement.plan(dialect)
            try:
                prepared.append((rider_plan, rider_plan.parameters(values)))
            except Exception as exc:  # a value its types refuse (JSON that cannot be encoded, say)
                raise RiderFailed(exc) from exc
        cursor = driver.cursor()
        ridden: list[tuple[_Plan, Any, Any]] = []  # each rider's plan, parameters and cursor
        pipelined = main_done = False  # main_done: the statement ran and its rows were read
        try:
            listeners = conn.dispatch.before_cursor_execute
            begin = postgresql and begin_lazily(conn, driver)
            if listeners:
                for listener in listeners:
                    listener(conn, cursor, plan.sql, parameters, None, False)
            commit = commit and postgresql and driver.autocommit
            pipelined = postgresql and bool(begin or commit or prepared)
            if pipelined:
                # BEGIN (the transaction's first statement), the statement, its riders, COMMIT (its
                # last), in one round trip: psycopg's pipeline mode; their results arrive at its end
                with driver.pipeline(), _corked(driver):
                    if begin:
                        driver.execute(b"BEGIN")
                    cursor.execute(plan.sql, parameters)
                    for rider in prepared:
                        _ride(conn, *rider, driver, listeners, ridden)
                    if commit:
                        driver.execute(b"COMMIT")
            else:
                cursor.execute(plan.sql, parameters)
            rows: list[dict[str, Any]] = []
            if plan.columns:  # a SELECT, or DML with RETURNING
                fetched = cursor.fetchall()
                if fetched:
                    rows = plan.convert(dialect, cursor, fetched)
            main_done = True
            if not pipelined:
                for rider in prepared:
                    _ride(conn, *rider, driver, listeners, ridden)
            return DirectResult(cursor.rowcount, rows)
        except dialect.loaded_dbapi.Error as exc:
            failed = None  # the rider at fault, if the statement itself succeeded
            if pipelined:  # the results arrive in order: a statement succeeded if it has its own
                if ridden and getattr(cursor, "pgresult", None) is not None:
                    failed = next((r for r in ridden if r[2].pgresult is None), ridden[-1])
            elif main_done and ridden:  # run one after the other: the last one sent failed
                failed = ridden[-1]
            if failed is None:
                raise _wrapped(conn, plan.sql, parameters, exc, cursor) from exc
            error = _wrapped(conn, failed[0].sql, failed[1], exc, failed[2])
            if error.connection_invalidated:
                raise error from exc
            raise RiderFailed(error) from exc
        finally:
            cursor.close()
            for _plan, _values, rider in ridden:
                rider.close()


def _ride(conn: sa.Connection, plan: _Plan, parameters: Any, driver: Any, listeners: Any,
          ridden: list[tuple[_Plan, Any, Any]]) -> None:
    """Run (in a pipeline: send) one rider of ``DirectStatement.execute``, noted in ``ridden``."""
    cursor = driver.cursor()
    ridden.append((plan, parameters, cursor))
    if listeners:
        for listener in listeners:
            listener(conn, cursor, plan.sql, parameters, None, False)
    try:
        cursor.execute(plan.sql, parameters)
    except conn.dialect.loaded_dbapi.Error:
        raise  # the database's refusal, or the driver's: told apart from the statement's own by the caller
    except Exception as exc:  # a value the driver could not convert (psycopg dumps JSON here)
        raise RiderFailed(exc) from exc


@contextlib.contextmanager
def _corked(driver: Any) -> Any:
    """Hold what is sent on ``driver``'s TCP connection in the kernel until the end of the block,
    then send it at once (Linux's ``TCP_CORK``; the kernel would send it after 200 ms anyway). Any
    other connection (a Unix socket, another system) is left as it is.

    The option is set on the driver's descriptor through the C library. Un-corking runs with the GIL
    released: it hands the server everything held, and on loopback the kernel delivers it (and wakes
    the server's process) inside that call, which ``socket.setsockopt`` would make every other
    thread of the worker wait for. Corking does no I/O and keeps the GIL: released for it, the GIL
    was often taken by another thread meanwhile, and getting it back made this one wait (about 0.7
    of these waits per notification under load; bench/README.md)."""
    fd = driver.fileno()
    corked = _TCP_CORK is not None and _set_cork(fd, 1)
    try:
        yield
    finally:
        if corked:
            _set_cork(fd, 0)


def _set_cork(fd: int, on: int) -> bool:
    """``TCP_CORK`` on or off on ``fd``; False when it cannot be set (not a TCP socket). On: the GIL
    kept (``_LIBC_HOLDING``); off, which sends: the GIL released (``_LIBC``)."""
    if on:
        return _LIBC_HOLDING.setsockopt(fd, socket.IPPROTO_TCP, _TCP_CORK, _ON_REF, _INT_SIZE) == 0
    return _LIBC.setsockopt(fd, socket.IPPROTO_TCP, _TCP_CORK, _OFF_REF, _INT_SIZE) == 0


_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)  # Linux only
#: the C library twice: a ``CDLL``, whose functions run with the GIL released, and a ``PyDLL``,
#: whose functions keep it
_LIBC = ctypes.CDLL(None, use_errno=True) if _TCP_CORK is not None else None
_LIBC_HOLDING = ctypes.PyDLL(None, use_errno=True) if _TCP_CORK is not None else None
_ON, _OFF = ctypes.c_int(1), ctypes.c_int(0)  # only read: shared by every thread
_ON_REF, _OFF_REF = ctypes.byref(_ON), ctypes.byref(_OFF)
_INT_SIZE = ctypes.sizeof(ctypes.c_int)


def begin_lazily(conn: sa.Connection, driver: Any) -> bool:
    """Whether a PostgreSQL transaction is wanted on ``conn`` and still has to be begun: its next
    statement is then sent after ``BEGIN``, in one round trip where the statement is run on the
    driver (``engine.storage.direct``).

    The PostgreSQL engines are in autocommit at the driver, so psycopg sends no ``BEGIN`` of its own
    (it would wait for its answer before sending the statement). SQLAlchemy still begins and ends
    its transactions, and psycopg's ``commit``/``rollback`` send ``COMMIT``/``ROLLBACK`` whenever
    the server is in a transaction. A connection given ``isolation_level="AUTOCOMMIT"`` explicitly
    runs each statement on its own (``Database._write_autocommitted``)."""
    if not driver.autocommit or driver.pgconn.transaction_status != _PG_IDLE or not conn.in_transaction():
        return False
    return conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT"


_PG_IDLE = 0  # libpq's PQTRANS_IDLE (psycopg.pq.TransactionStatus.IDLE): no transaction open


def _wrapped(conn: sa.Connection, sql: str, parameters: Any, exc: Exception, cursor: Any) -> sa.exc.DBAPIError:
    """A driver error as SQLAlchemy raises it: a ``DBAPIError`` subclass; a lost connection is
    invalidated first, so the pool replaces it."""
    dialect = conn.dialect
    lost = False
    with contextlib.suppress(Exception):  # deciding is best effort; the error itself is raised below
        lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
    if lost:
        conn.invalidate(exc)
    return sa.exc.DBAPIError.instance(
        sql, parameters, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
    )
