"""Statements of the request path, run on the database driver directly.

A notification runs the same handful of statements (claim, lock, update, queue, mark, finish) on
every call. Even prebuilt, each one cost SQLAlchemy about ten times what the driver needs to run it
(execution context, parameter processing, result object, events: about 65 µs against 7 µs on
SQLite, ``bench/profile_engine.py``), and on SQLite that time is spent holding the database's single
write lock. ``DirectStatement`` compiles a SQLAlchemy statement once per dialect, with SQLAlchemy's
own compiler and type processors, and runs it on the driver connection of the ``sa.Connection`` it
is given, inside that connection's transaction. So the SQL text, the column types (aware UTC
datetimes, JSON, safe text) and the results are exactly those of ``conn.execute``; what is skipped
is the per-execution machinery.

On SQLite a statement runs on a DBAPI cursor. On PostgreSQL the statements of one round trip
(``BEGIN``, the statement, its riders, ``COMMIT``) go through psycopg's protocol layer
(``psycopg.pq``) in libpq's pipeline mode: each statement prepared once per connection, the
parameters dumped and the rows loaded by psycopg's own ``Transformer`` (the connection's adapters,
as its cursors would), everything sent in one write, and the answers awaited once with the GIL
released. Through psycopg's cursors the same round trip cost about five times the client CPU and
polled the socket twice per statement, releasing the GIL each time (``bench/README.md``).

What the direct path keeps: driver errors are raised as SQLAlchemy's ``DBAPIError`` (so
``translated_errors`` maps them as before), and a dropped connection is invalidated so the pool
does not hand it out again. ``before_cursor_execute`` listeners are called (statement counters of
the benchmarks and tests; the cursor they are given is None on PostgreSQL); ``echo`` logging is not.

Not for statements with expanding ``IN`` parameters or with ``executemany``: those go through
``conn.execute``.

May import sqlalchemy, and psycopg when the database is PostgreSQL. Never Flask.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import select
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["DirectResult", "DirectStatement", "RiderFailed", "begin_lazily"]

_Processor = Callable[[Any], Any] | None

#: a parameter of SQLAlchemy's psycopg dialect (``%(name)s``) or an escaped ``%``
_PYFORMAT = re.compile(r"%\(([^)]+)\)s|%%")


class _Plan:
    """One statement compiled for one dialect: its SQL text, how to lay out and convert its
    parameters, and how to convert its result columns (filled on the first result). On PostgreSQL
    also the text psycopg's protocol layer takes (``$1``, ``$2`` …) and the names in that order."""

    __slots__ = ("columns", "defaults", "names", "positional", "pq_names", "pq_sql", "processors",
                 "result_processors", "sql")

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
        self.pq_sql: bytes | None = None
        self.pq_names: tuple[str, ...] = ()
        if _on_psycopg(dialect):
            self.pq_sql, self.pq_names = _numbered(self.sql, dict(compiled.escaped_bind_names or {}))

    def values(self, given: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
        """The parameters ``names`` (in that order) from ``given`` or the statement's literals, each
        through its type's bind processor."""
        processors = self.processors
        defaults = self.defaults
        values = []
        for name in names:
            value = given[name] if name in given else defaults[name]
            processor = processors.get(name)
            values.append(value if processor is None else processor(value))
        return values

    def parameters(self, given: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        """The parameters as the DBAPI cursor takes them (SQLite)."""
        values = self.values(given, self.names)
        return values if self.positional else dict(zip(self.names, values, strict=True))

    def convert(self, dialect: sa.Dialect, type_codes: Callable[[], Sequence[Any]],
                rows: list[Sequence[Any]]) -> list[dict[str, Any]]:
        """``rows`` as dicts by column key, each value through its type's result processor.
        ``type_codes``: gives the driver's type of each column (``cursor.description``'s second
        item); asked once, for the first rows converted."""
        processors = self.result_processors
        if processors is None:
            processors = self.result_processors = tuple(
                type_.dialect_impl(dialect).result_processor(dialect, code)
                for (_key, type_), code in zip(self.columns, type_codes(), strict=True)
            )
        keys = [key for key, _type in self.columns]
        return [{key: value if processor is None else processor(value)
                 for key, processor, value in zip(keys, processors, row, strict=True)} for row in rows]


def _on_psycopg(dialect: sa.Dialect) -> bool:
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def _numbered(sql: str, escaped: Mapping[str, str]) -> tuple[bytes, tuple[str, ...]]:
    """SQLAlchemy's psycopg text (``%(name)s``, ``%%``) in PostgreSQL's own style (``$1``, ``%``),
    and the parameters' names in the order of their numbers (a name used twice has one number).
    ``escaped``: SQLAlchemy's names as given → as written in the text."""
    original = {written: name for name, written in escaped.items()}
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "%"
        name = original.get(match.group(1), match.group(1))
        return f"${order.setdefault(name, len(order) + 1)}"

    return _PYFORMAT.sub(number, sql).encode(), tuple(order)


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
        driver = conn.connection.dbapi_connection
        if driver is None:
            raise sa.exc.ResourceClosedError("this connection is closed")
        if plan.pq_sql is not None:
            return _run_postgresql(conn, driver, plan, params, commit, riders)
        return _run_on_cursor(conn, driver, plan, params, riders)


# ------------------------------------------------------------------------------------ SQLite: a cursor
def _run_on_cursor(conn: sa.Connection, driver: Any, plan: _Plan, params: Mapping[str, Any],
                   riders: Sequence[tuple[DirectStatement, Mapping[str, Any]]]) -> DirectResult:
    """The statement, then its riders, one after the other on DBAPI cursors."""
    dialect = conn.dialect
    parameters = plan.parameters(params)
    converted = []  # the riders' parameters, converted before anything is run
    for statement, values in riders:
        rider_plan = statement.plan(dialect)
        try:
            converted.append((rider_plan, rider_plan.parameters(values)))
        except Exception as exc:  # a value its types refuse (JSON that cannot be encoded, say)
            raise RiderFailed(exc) from exc
    listeners = conn.dispatch.before_cursor_execute
    cursor = driver.cursor()
    try:
        if listeners:
            _announce(conn, listeners, cursor, plan.sql, parameters)
        try:
            cursor.execute(plan.sql, parameters)
            rows: list[dict[str, Any]] = []
            if plan.columns:  # a SELECT, or DML with RETURNING
                fetched = cursor.fetchall()
                if fetched:
                    rows = plan.convert(dialect, lambda: [entry[1] for entry in cursor.description], fetched)
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, plan.sql, parameters, exc, cursor) from exc
        result = DirectResult(cursor.rowcount, rows)
    finally:
        cursor.close()
    for rider_plan, values in converted:
        rider = driver.cursor()
        try:
            if listeners:
                _announce(conn, listeners, rider, rider_plan.sql, values)
            try:
                rider.execute(rider_plan.sql, values)
            except dialect.loaded_dbapi.Error as exc:
                error = _wrapped(conn, rider_plan.sql, values, exc, rider)
                if error.connection_invalidated:
                    raise error from exc
                raise RiderFailed(error) from exc
        finally:
            rider.close()
    return result


def _announce(conn: sa.Connection, listeners: Any, cursor: Any, sql: str, parameters: Any) -> None:
    """Call the ``before_cursor_execute`` listeners of ``conn`` for a statement about to run."""
    for listener in listeners:
        listener(conn, cursor, sql, parameters, None, False)


# ------------------------------------------------------------------ PostgreSQL: psycopg's protocol layer
class _Query:
    """One statement of a round trip, ready to send: its text, its parameters as psycopg dumped
    them, and the prepared statement it runs as (``prepare``: prepared in this round trip, first)."""

    __slots__ = ("formats", "name", "params", "prepare", "sql", "types")

    def __init__(self, sql: bytes, params: Any = None, types: Any = None, formats: Any = None) -> None:
        self.sql = sql
        self.params = params
        self.types = types
        self.formats = formats
        self.name: bytes | None = None
        self.prepare = False

    @property
    def key(self) -> tuple[bytes, Any]:
        """What it is prepared by in ``_Session.prepared``: its text and parameter types."""
        return self.sql, self.types


_BEGIN = _Query(b"BEGIN")
_COMMIT = _Query(b"COMMIT")
#: prepared statements kept per connection, at most; beyond, a statement is sent with its text
PREPARED_MAX = 256


class _Session:
    """What the direct path keeps for one psycopg connection: the ``Transformer`` that dumps
    parameters and loads rows with the connection's adapters, and the statements it has prepared
    there, by text and parameter types.

    The engines' connections have psycopg's own preparing turned off (``prepare_threshold`` None,
    ``engine.storage.db``): psycopg's ``rollback()`` sends ``DEALLOCATE ALL`` once it has prepared
    anything itself, which would drop these too (a round trip that finds one gone fails, and the
    next prepares them anew)."""

    __slots__ = ("names", "prepared", "transformer")

    def __init__(self, driver: Any) -> None:
        from psycopg.adapt import Transformer

        self.transformer = Transformer(driver)
        self.prepared: dict[tuple[bytes, Any], bytes] = {}  # (text, parameter types) → name
        self.names = itertools.count(1)

    def query(self, plan: _Plan, given: Mapping[str, Any]) -> _Query:
        """``plan`` with ``given``, dumped; raises what psycopg raises for a value it cannot dump."""
        values = plan.values(given, plan.pq_names)
        transformer = self.transformer
        params = transformer.dump_sequence(values, _auto_formats(len(values)))
        query = _Query(plan.pq_sql or b"", params, transformer.types, tuple(transformer.formats))
        key = query.key
        name = self.prepared.get(key)
        if name is None and len(self.prepared) < PREPARED_MAX:
            name = self.prepared[key] = b"_ivr_%d" % next(self.names)
            query.prepare = True  # forgotten again unless the server prepares it (_settle_prepared)
        query.name = name
        return query

    def forget(self, query: _Query) -> None:
        """``query`` is not prepared after all (if it was to be prepared in its round trip)."""
        if query.prepare and self.prepared.get(query.key) == query.name:
            del self.prepared[query.key]


def _session_of(driver: Any) -> _Session:
    session = getattr(driver, "_ivr_direct", None)
    if session is None:
        session = driver._ivr_direct = _Session(driver)
    return session


_FORMATS: dict[int, list[Any]] = {}


def _auto_formats(count: int) -> list[Any]:
    found = _FORMATS.get(count)
    if found is None:
        from psycopg.adapt import PyFormat

        found = _FORMATS[count] = [PyFormat.AUTO] * count
    return found


def _run_postgresql(conn: sa.Connection, driver: Any, plan: _Plan, params: Mapping[str, Any], commit: bool,
                    riders: Sequence[tuple[DirectStatement, Mapping[str, Any]]]) -> DirectResult:
    """``BEGIN`` (a transaction's first statement), the statement, its riders and ``COMMIT`` (its
    last) in one round trip; see ``DirectStatement.execute``."""
    dialect = conn.dialect
    session = _session_of(driver)
    pgconn = driver.pgconn
    if driver.autocommit:
        begin = begin_lazily(conn, driver)
    else:  # psycopg would begin a transaction before the statement: so is it here
        begin, commit = pgconn.transaction_status == _PG_IDLE, False
    sent: list[tuple[_Query, _Plan | None]] = [(_BEGIN, None)] if begin else []
    try:
        main = session.query(plan, params)
        sent.append((main, plan))
        for statement, values in riders:
            rider_plan = statement.plan(dialect)
            try:
                sent.append((session.query(rider_plan, values), rider_plan))
            except Exception as exc:  # a value its types refuse (JSON that cannot be encoded, say)
                raise RiderFailed(exc) from exc
        if commit:
            sent.append((_COMMIT, None))
        listeners = conn.dispatch.before_cursor_execute
        if listeners:
            for query, statement_plan in sent:
                if statement_plan is not None:
                    _announce(conn, listeners, None, statement_plan.sql, query.params)
        queries = [query for query, _plan in sent]
        try:
            results = _round_trip(pgconn, queries)
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, plan.sql, main.params, exc, None) from exc
    except BaseException:  # the statements to be prepared in a round trip that broke off are not
        for query, _plan in sent:
            session.forget(query)
        raise
    failed = _settle_prepared(session, queries, results)
    if failed is not None:
        at, failure = failed
        exc = _error_of(driver, failure)
        query, statement_plan = sent[at]
        if query is main or statement_plan is None:  # the statement itself, or BEGIN or COMMIT
            raise _wrapped(conn, plan.sql, main.params, exc, None) from exc
        error = _wrapped(conn, statement_plan.sql, query.params, exc, None)
        if error.connection_invalidated:
            raise error from exc
        raise RiderFailed(error) from exc
    result = results[int(begin)][1]
    rows: list[dict[str, Any]] = []
    if plan.columns and result.ntuples:  # a SELECT, or DML with RETURNING
        transformer = session.transformer
        transformer.set_pgresult(result)
        loaded = transformer.load_rows(0, result.ntuples, tuple)
        rows = plan.convert(dialect, lambda: [result.ftype(i) for i in range(result.nfields)], loaded)
    counted = result.command_tuples
    return DirectResult(-1 if counted is None else counted, rows)


def _settle_prepared(session: _Session, queries: Sequence[_Query],
                     results: Sequence[tuple[Any, Any]]) -> tuple[int, Any] | None:
    """Forget the statements whose preparation the server did not carry out; return the position
    of the first statement that failed, with its failing result, or None."""
    failed = None
    for at, (query, (prepared, result)) in enumerate(zip(queries, results, strict=True)):
        if prepared is not None and prepared.status != _COMMAND_OK:
            session.forget(query)
        if failed is None:
            for got in (prepared, result):
                if got is not None and got.status == _FATAL_ERROR:
                    failed = (at, got)
                    break
    if failed is not None and failed[1].error_field(_SQLSTATE) in _PREPARE_AGAIN:
        session.prepared.clear()  # the next round trips prepare their statements anew
    return failed


def _error_of(driver: Any, result: Any) -> Exception:
    from psycopg import errors

    return errors.error_from_result(result, encoding=driver.info.encoding)


def _round_trip(pgconn: Any, queries: Sequence[_Query]) -> list[tuple[Any, Any]]:
    """Send ``queries`` in libpq's pipeline mode, with one sync at the end (one write), wait for all
    their results (the GIL released while waiting) and return, for each query, the result of its
    preparation (None if not prepared here) and its own. A statement after one that failed has a
    ``PIPELINE_ABORTED`` result. Raises psycopg's ``OperationalError`` if the connection fails."""
    pgconn.enter_pipeline_mode()
    try:
        for query in queries:
            if query.prepare:
                pgconn.send_prepare(query.name, query.sql, param_types=query.types)
            if query.name is not None:
                pgconn.send_query_prepared(query.name, query.params, param_formats=query.formats)
            else:
                pgconn.send_query_params(query.sql, query.params, param_types=query.types,
                                         param_formats=query.formats)
        pgconn.pipeline_sync()  # sends what is queued
        fd = pgconn.socket
        while pgconn.flush():  # not all of it fitted in the socket's buffer
            if _wait(fd, _WRITABLE) & select.POLLIN:
                pgconn.consume_input()
        got = _results_until_sync(pgconn, fd)
        pgconn.exit_pipeline_mode()
    except BaseException:
        _leave_pipeline(pgconn)
        raise
    results = []
    position = 0
    for query in queries:
        prepared = None
        if query.prepare:
            prepared = got[position]
            position += 1
        results.append((prepared, got[position]))
        position += 1
    return results


def _leave_pipeline(pgconn: Any) -> None:
    """After a round trip broke off: read what is still coming and leave pipeline mode, so that the
    connection can be used again; if that cannot be done, close it (the pool then replaces it)."""
    if not pgconn.pipeline_status:
        return
    if pgconn.status == _PG_OK:
        with contextlib.suppress(Exception):  # if it fails, the connection is closed below
            _results_until_sync(pgconn, pgconn.socket)
            pgconn.exit_pipeline_mode()
            return
    with contextlib.suppress(Exception):
        pgconn.finish()


def _results_until_sync(pgconn: Any, fd: int) -> list[Any]:
    """The results of a round trip, read as they arrive, up to its sync (not included)."""
    got = []
    while True:
        while pgconn.is_busy():
            _wait(fd, select.POLLIN)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:  # the end of one statement's results
            continue
        if result.status == _PIPELINE_SYNC:
            return got
        got.append(result)


def _wait(fd: int, events: int) -> int:
    """Block (the GIL released) until ``fd`` is ready for ``events``; the events that are ready."""
    poller = select.poll()
    poller.register(fd, events)
    ready = poller.poll()
    return ready[0][1] if ready else 0


_WRITABLE = select.POLLOUT | select.POLLIN
# libpq's codes (psycopg.pq's enums are IntEnums of the same values)
_PG_OK = 0  # ConnStatus.OK
_COMMAND_OK = 1  # ExecStatus.COMMAND_OK
_FATAL_ERROR = 7  # ExecStatus.FATAL_ERROR
_PIPELINE_SYNC = 10  # ExecStatus.PIPELINE_SYNC
_SQLSTATE = ord("C")  # DiagnosticField.SQLSTATE
#: a prepared statement that is gone (deallocated behind our back), or whose result columns changed
#: type (a migration run under a live server): "cached plan must not change result type"
_PREPARE_AGAIN = (b"26000", b"0A000")


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
