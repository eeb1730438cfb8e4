"""Database connection: URL handling, the pooled engine, transactions, and ``Database``.

``Database`` is the storage API the service layer holds (one per process). Writes happen in
``with db.transaction() as tx:`` (see ``engine.storage.repository.Transaction``), or as a function
``db.write(fn)``, which on SQLite may share its commit with other threads' (group commit: the
notifications' main transactions); the other methods are short transactions of their own.

How one call's notifications are serialised:

* **SQLite**: the driver's own transaction handling is switched off (``isolation_level = None`` on
  connect) and every write transaction starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's documented
  pysqlite ``begin`` event recipe). The write lock is therefore taken before the first read, so a
  read-then-write transaction never fails half-way with "database is locked": it waits up to
  ``lock_timeout_ms`` (``PRAGMA busy_timeout``) at BEGIN instead. Read-only work uses a plain
  (deferred) ``BEGIN`` and, in WAL mode, never waits for writers. Each connection sets
  ``journal_mode=WAL``, ``synchronous=NORMAL``, ``foreign_keys=ON``.
  Writers queue for that lock (``WriterQueue``) before ``BEGIN IMMEDIATE``: a thread lock inside
  the process and an ``flock`` on ``<file>-writer.lock`` between processes, so the lock passes to
  the next writer as soon as it is free. (SQLite's own busy handler sleeps 1, 2, 5, 10 ... 100 ms
  between tries: under load the lock sat free while writers slept, which capped throughput and
  made the slowest notifications slow.) ``busy_timeout`` stays as the backstop for writers
  outside this process's ``Database`` (the ``ivr`` commands use it too).
  The WAL is copied back into the database file by a thread of each writing process
  (``WalCheckpointer``: ``PRAGMA wal_checkpoint(PASSIVE)`` every ``CHECKPOINT_INTERVAL_S``), not by
  whichever commit happens to cross SQLite's 1,000-page mark: that commit did the copy and its fsync
  while holding the write lock, and every writer behind it waited (the slowest 1% of notifications).
  ``wal_autocheckpoint`` is raised to ``AUTOCHECKPOINT_PAGES`` as a safety net.
* **PostgreSQL** (psycopg 3): ``tx.lock_call`` is ``SELECT ... FOR UPDATE``; a waiting transaction
  gives up after ``lock_timeout_ms`` (server setting ``lock_timeout``) with ``StorageBusy``.
  A pooled connection is pinged before use only when it has been idle for ``IDLE_PING_S`` or more,
  or when its socket has something to read (a server ending a session says so and closes it): a
  busy server is not asked ``SELECT 1`` before every transaction. A connection that dies while in
  use is reported as ``DatabaseUnavailable`` and SQLAlchemy replaces the whole pool.
  The driver is in autocommit and a transaction's ``BEGIN`` is sent with its first statement, in
  one round trip where that statement runs on the driver (``engine.storage.direct.begin_lazily``):
  psycopg would send it alone and wait for its answer first.

Inside ``with db.transaction() as tx:`` use ``tx.*`` for every write: a write through ``db.*`` from
the same thread raises ``NestedTransaction`` at once (on SQLite it would wait for the enclosing
transaction, which waits for it). Reads through ``db.*`` are fine.

After ``os.fork()`` (gunicorn ``preload_app``) call ``db.dispose()`` in the child: pooled connections
must not be shared between processes.

May import engine.core, engine.storage, sqlalchemy, alembic (lazily, for ``open``). Never Flask.
"""

from __future__ import annotations

import atexit
import copy
import fcntl
import logging
import os
import re
import select
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import StaticPool

from engine.storage.direct import DirectStatement, RiderFailed, begin_lazily
from engine.storage.errors import (
    DatabaseUnavailable,
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
)

log = logging.getLogger("engine.storage")

DEFAULT_DATABASE_URL = "sqlite:///ivr.sqlite3"
DEFAULT_LOCK_TIMEOUT_MS = 5000
DEFAULT_CONNECT_TIMEOUT_S = 3
#: connections a pool may open beyond its size at a burst, closed again when they come back
DEFAULT_MAX_OVERFLOW = 10
#: connections of the pool of the results written behind (``Database.sent_engine``), overflow included
SENT_CONNECTIONS = 2

# Connection execution option read by the SQLite ``begin`` hook: False -> plain (deferred) BEGIN.
_WRITE_OPTION = "ivr_write"
#: ``conn.execution_options(**READ_ONLY)`` before the first statement: a read-only transaction.
READ_ONLY: dict[str, Any] = {_WRITE_OPTION: False}

_POSTGRES_SCHEMES = ("postgres://", "postgresql://")
#: A pooled PostgreSQL connection idle this long is pinged before it is used again.
IDLE_PING_S = 2.0
#: SQLite: seconds between background WAL checkpoints, and the WAL size (pages) at which a commit
#: checkpoints anyway (SQLite's default is 1,000).
CHECKPOINT_INTERVAL_S = 0.5
AUTOCHECKPOINT_PAGES = 10_000
#: How long sent blocks' results (``record_sent``) wait for another write transaction to carry them
#: before the writer thread writes them in one of its own: under load, a notification's main
#: transaction commits them at almost no extra cost (on SQLite under the single write lock it
#: already holds, on PostgreSQL in the round trip of its claim).
SENT_LINGER_S = 0.02
#: PostgreSQL: at most this many queued results ride with one notification's transaction.
SENT_CARRIED_MAX = 8
#: The writer thread of ``record_sent`` looks for results every ``SENT_LINGER_S`` while they keep
#: coming, and sleeps until woken once none came for this long.
SENT_WAKE_AFTER_IDLE_S = 1.0


def default_database_url(environ: Mapping[str, str] | None = None) -> str:
    """``DATABASE_URL`` from the environment, else ``sqlite:///ivr.sqlite3`` (working directory)."""
    env = os.environ if environ is None else environ
    return (env.get("DATABASE_URL") or "").strip() or DEFAULT_DATABASE_URL


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; ``postgres://`` and ``postgresql://`` become ``postgresql+psycopg://``.

    Raises ``InvalidDatabaseURL`` for anything that is not SQLite or PostgreSQL."""
    if isinstance(url, URL):
        parsed = url
    else:
        text = str(url).strip()
        for scheme in _POSTGRES_SCHEMES:
            if text.startswith(scheme):
                text = "postgresql+psycopg://" + text[len(scheme) :]
                break
        try:
            parsed = sa.make_url(text)
        except sa.exc.ArgumentError:
            shown = re.sub(r":[^:@/]*@", ":***@", text)  # never echo a password
            raise InvalidDatabaseURL(
                f"invalid database URL {shown!r}: expected sqlite:///path/to/file.sqlite3 or "
                "postgresql://user:password@host:5432/dbname"
            ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise InvalidDatabaseURL(f"unsupported SQLite driver {parsed.drivername!r}: use sqlite:///path")
        return parsed
    raise InvalidDatabaseURL(
        f"unsupported database {backend!r} in {display_url(parsed)}: use sqlite:///path or postgresql://..."
    )


def display_url(url: URL) -> str:
    """The URL with its password masked, for messages and logs."""
    return url.render_as_string(hide_password=True)


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def create_engine(
    url: str | URL,
    *,
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
    connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
    pool_size: int = 5,
    max_overflow: int = DEFAULT_MAX_OVERFLOW,
    echo: bool = False,
    settings: Mapping[str, str] | None = None,
) -> Engine:
    """A pooled engine configured as described in the module docstring. ``settings``: PostgreSQL
    server settings for its connections (``-c name=value``; ignored when the URL has ``options``)."""
    parsed = normalize_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, lock_timeout_ms=lock_timeout_ms, echo=echo)
        return _postgres_engine(
            parsed,
            lock_timeout_ms=lock_timeout_ms,
            connect_timeout_s=connect_timeout_s,
            pool_size=pool_size,
            max_overflow=max_overflow,
            echo=echo,
            settings=settings,
        )
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise InvalidDatabaseURL(f"cannot use {display_url(parsed)}: {exc}") from None
    except sa.exc.ArgumentError as exc:
        raise InvalidDatabaseURL(f"invalid database URL {display_url(parsed)}: {exc}") from None


def _sqlite_engine(url: URL, *, lock_timeout_ms: int, echo: bool) -> Engine:
    memory = _is_memory(url)
    kwargs: dict[str, Any] = {}
    if memory:
        # One shared connection, so every thread sees the same in-memory database. Concurrency
        # tests need a file: an in-memory database cannot be locked by two connections.
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = sa.create_engine(url, echo=echo, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module: SQLAlchemy emits BEGIN below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(lock_timeout_ms)}")
            if not memory:
                _use_wal(cursor, lock_timeout_ms / 1000)
                cursor.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, True)
        (_BEGIN_IMMEDIATE if write else _BEGIN).execute(conn, {})

    return engine


# On the driver directly (engine.storage.direct): through SQLAlchemy, the BEGIN of every transaction
# cost a whole statement execution.
_BEGIN_IMMEDIATE = DirectStatement(sa.text("BEGIN IMMEDIATE"))
_BEGIN = DirectStatement(sa.text("BEGIN"))


def _use_wal(cursor: Any, timeout_s: float) -> None:
    """Switch the file to WAL once (the mode is stored in the file). The switch needs an exclusive
    lock and SQLite does not call the busy handler for it, so workers opening a new file together
    retry here instead of failing with "database is locked"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
            if mode != "wal":
                log.warning("SQLite refused WAL mode (journal_mode is %s): is the file on a network share?", mode)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def connection_shortfall(url: str | URL, *, workers: int, pool_size: int) -> str | None:
    """A warning for the operator when the PostgreSQL server at ``url`` accepts fewer connections
    than ``workers`` processes with pools of ``pool_size`` may open at a burst (each: its pool,
    ``DEFAULT_MAX_OVERFLOW`` more, and the results' pool): past its ``max_connections`` the server
    refuses them and the notifications waiting for them are answered 503. None when there are
    enough, or for SQLite, or when the server cannot be asked (readiness reports that)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    wanted = workers * (pool_size + DEFAULT_MAX_OVERFLOW + SENT_CONNECTIONS)
    engine = sa.create_engine(parsed, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            limit = int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
            reserved = int(conn.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one())
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    if wanted <= limit - reserved:
        return None
    return (f"PostgreSQL accepts {limit - reserved} connections (max_connections {limit}, {reserved} reserved) and "
            f"{workers} workers may open {wanted} at a burst ({pool_size} in each pool, {DEFAULT_MAX_OVERFLOW} more "
            f"at a burst, {SENT_CONNECTIONS} for the results written behind): raise max_connections, or lower "
            "IVR_WORKERS, IVR_THREADS or IVR_DB_POOL_SIZE")


def _postgres_engine(
    url: URL,
    *,
    lock_timeout_ms: int,
    connect_timeout_s: int,
    pool_size: int,
    max_overflow: int,
    echo: bool,
    settings: Mapping[str, str] | None = None,
) -> Engine:
    # psycopg prepares nothing of its own: its rollback() deallocates every prepared statement of the
    # session whenever it has prepared one, those of the request path included (engine.storage.direct
    # prepares them, once per connection)
    connect_args: dict[str, Any] = {"prepare_threshold": None}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = max(2, int(connect_timeout_s))  # libpq's minimum is 2 s
    if "application_name" not in url.query:
        connect_args["application_name"] = "ivr-engine"
    if "options" not in url.query:
        given = {"lock_timeout": str(int(lock_timeout_ms)), **(settings or {})}
        connect_args["options"] = " ".join(f"-c {name}={value}" for name, value in given.items())
    engine = sa.create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        connect_args=connect_args,
        # psycopg would send BEGIN on a round trip of its own before a transaction's first
        # statement; the transaction is begun here instead (``begin_lazily``), with that statement
        isolation_level="AUTOCOMMIT",
    )

    @event.listens_for(engine, "before_cursor_execute")
    def _begin(conn: sa.Connection, cursor: Any, _statement: Any, _params: Any, context: Any, _many: bool) -> None:
        # context None: a DirectStatement, which sends the BEGIN with its statement
        if context is not None and begin_lazily(conn, cursor.connection):
            cursor.connection.execute(b"BEGIN")

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["ivr_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # SQLAlchemy's pessimistic-ping recipe, for connections that sat idle only: raising
        # DisconnectionError makes the pool drop this connection and check out another.
        idle_since = record.info.get("ivr_idle_since")
        recent = idle_since is not None and time.monotonic() - idle_since < IDLE_PING_S
        if recent and not _has_news(dbapi_connection):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"a pooled connection is dead: {_first_line(exc)}") from exc
        if not alive:
            raise sa.exc.DisconnectionError("a pooled connection is dead")

    return engine


def _has_news(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket has something to read: a server that ended the session
    (restart, ``pg_terminate_backend``) sends its reason and closes. No round trip: a poll of the
    socket. True also when the socket cannot be examined."""
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except Exception:
        return True


class WalCheckpointer:
    """Copies an SQLite database's WAL back into the file from a daemon thread of its own, every
    ``interval_s`` (``PRAGMA wal_checkpoint(PASSIVE)``: it never waits for writers and they never
    wait for it), on a connection of its own that never creates the file. Started by the first write
    transaction of each process (``ensure``); stopped by ``Database.close``/``dispose``, or when the
    ``Database`` is gone."""

    def __init__(self, path: str, interval_s: float) -> None:
        self.uri = Path(path).resolve().as_uri() + "?mode=rw"
        self.interval_s = interval_s
        self.runs = 0  # checkpoints done by the thread of this process
        self._pid: int | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()

    def ensure(self, owner: object) -> None:
        if self._pid == os.getpid():
            return
        with self._guard:
            if self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self.runs = 0
            thread = threading.Thread(target=self._run, args=(self._stop, weakref.ref(owner)),
                                      name="ivr-wal-checkpoint", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def stop(self) -> None:
        with self._guard:
            self._stop.set()
            self._pid = None

    def _run(self, stop: threading.Event, owner: weakref.ref) -> None:
        while not stop.wait(self.interval_s) and owner() is not None:
            if self.checkpoint() is not None:
                self.runs += 1

    def checkpoint(self) -> tuple[int, int, int] | None:
        """One passive checkpoint: (busy, WAL frames, frames copied), or None if it could not run."""
        try:
            with closing(sqlite3.connect(self.uri, uri=True, timeout=0.1, isolation_level=None)) as conn:
                return tuple(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        except sqlite3.Error as exc:
            log.debug("WAL checkpoint of %s skipped: %s", self.uri, exc)
            return None


class WriterQueue:
    """SQLite writers of this ``Database`` take turns here before ``BEGIN IMMEDIATE``: a thread lock
    inside the process, then an exclusive ``flock`` on a lock file beside the database, shared by
    every process using it. Both hand over at once when released (the ``flock`` is polled every
    0.2 to 0.4 ms, one thread per process: a longer pause leaves the lock idle after its release,
    and the lock is the ceiling of SQLite's throughput). Waiting longer than the lock timeout raises
    ``StorageBusy``, as SQLite's own timeout does. An in-memory database has the thread lock only."""

    def __init__(self, lock_file: str | None, timeout_s: float, where: str) -> None:
        self.lock_file = lock_file
        self.timeout_s = timeout_s
        self._where = where
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _for_this_process(self) -> None:
        # After fork: a new thread lock (the parent's may have been held) and a file descriptor of
        # our own (an inherited one shares the parent's flock).
        with self._guard:
            if self._pid != os.getpid():
                self._lock = threading.Lock()
                self._fd = None
                self._pid = os.getpid()
            if self._fd is None and self.lock_file is not None:
                try:
                    self._fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError as exc:
                    raise DatabaseUnavailable(f"cannot open {self.lock_file}, the writers' lock file of the "
                                              f"SQLite database {self._where}: {exc.strerror} (does the "
                                              "directory exist, and may this user write there?)") from None

    @contextmanager
    def turn(self, unless: Callable[[], bool] | None = None) -> Iterator[bool]:
        """Wait for the turn and hold it; yields True. With ``unless``: once this process's thread
        lock is held, if ``unless()`` is true the turn is given up before taking the file lock, and
        False is yielded (the work was done by the writer before)."""
        if self._pid != os.getpid() or (self._fd is None and self.lock_file is not None):
            self._for_this_process()
        deadline = time.monotonic() + self.timeout_s
        lock = self._lock
        if not lock.acquire(timeout=self.timeout_s):
            raise self.busy_error()
        try:
            if unless is not None and unless():
                yield False
                return
            fd = self._fd
            if fd is not None:
                self._flock(fd, deadline)
            try:
                yield True
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            lock.release()

    def _flock(self, fd: int, deadline: float) -> None:
        pause = 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self.busy_error() from None
                time.sleep(pause)
                pause = min(pause * 2, 0.0004)

    def busy_error(self) -> StorageBusy:
        return StorageBusy(f"the SQLite database {self._where} stayed locked beyond the lock timeout "
                           f"({self.timeout_s:g} s): another writer held it")


class _Sent:
    """Sent blocks' results and their notification's outcome, queued for a write (``record_sent``)."""

    __slots__ = ("alone", "finish", "marks")

    def __init__(self, marks: Sequence[Mapping[str, Any]], finish: Mapping[str, Any]) -> None:
        if not marks:
            raise ValueError("record_sent needs the result of at least one sent block")
        self.marks = tuple(marks)
        self.finish = finish
        self.alone = False  # failed in a transaction with others: written in one of its own

    def write(self, tx: Transaction) -> None:
        *first, last = self.marks
        for mark in first:
            tx.mark_block(**mark)
        tx.mark_block_and_finish(last, self.finish)

    def statements(self, tx: Transaction) -> list[tuple[DirectStatement, dict[str, Any]]]:
        """PostgreSQL: what ``write`` runs, as statements to ride with another (``tx.riders``)."""
        return tx.sent_statements(self.marks, self.finish)


class _SentQueue:
    """The results ``record_sent`` has not written yet, in one process: a list, the items taken
    by a transaction not yet committed, and the writer thread's stop signal."""

    def __init__(self, linger_s: float = 0.0) -> None:
        self.pid = os.getpid()
        self.linger_s = linger_s
        self.items: list[_Sent] = []
        self.taken = 0
        self.urgent = 0  # callers of settle_sent waiting: no lingering
        self.since = 0.0  # when the queue last became non-empty
        self.last_put = float("-inf")
        self.sleeping = False  # the writer thread waits for ``put`` to wake it (``wait_work``)
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def put(self, item: _Sent) -> None:
        now = time.monotonic()
        with self.cond:
            self.items.append(item)
            self.last_put = now
            if len(self.items) == 1:
                self.since = now
                if self.sleeping:  # else the writer thread looks on its own (``wait_work``)
                    self.cond.notify_all()

    def take(self, *, alone: bool, limit: int | None = None) -> list[_Sent]:
        """Take the queued items whose ``alone`` is the one given (the first ``limit`` of them)."""
        with self.cond:
            taken = [item for item in self.items if item.alone == alone][:limit]
            if len(taken) == len(self.items):
                self.items = []
            else:
                chosen = {id(item) for item in taken}
                self.items = [item for item in self.items if id(item) not in chosen]
            self.taken += len(taken)
            return taken

    def settle(self, taken: list[_Sent], back: list[_Sent]) -> None:
        """``taken`` are no longer in a transaction; ``back`` (some of them) go back to the queue."""
        with self.cond:
            self.taken -= len(taken)
            was_empty = not self.items
            self.items[:0] = back
            if back and was_empty:
                self.since = time.monotonic()
            # woken: the writer thread, for items back in an empty queue; callers of ``settle_sent``
            # once all is written. Waking the writer for nothing on every commit cost 2-3% of the CPU.
            if (back and was_empty) or (self.urgent and self.empty()):
                self.cond.notify_all()

    def empty(self) -> bool:
        return not self.items and not self.taken

    def wait_empty(self, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(self.empty, timeout_s)

    def linger(self) -> bool:
        """Give another write transaction up to ``linger_s`` to take the items; True if some are
        still queued (and nobody is waiting for them, or the time is up)."""
        with self.cond:
            while self.items and not self.urgent and not self.stop.is_set():
                remaining = self.since + self.linger_s - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)  # not woken when the items are taken: it finds out here
            return bool(self.items)

    def wait_work(self, timeout_s: float) -> bool:
        """The writer thread: wait up to ``timeout_s`` for an item (True) or the stop signal. While
        items keep coming (the last less than ``SENT_WAKE_AFTER_IDLE_S`` ago) it looks every
        ``linger_s`` without being woken, so a ``put`` under load wakes no thread (waking it cost
        each notification a thread switch, about 2% of a worker's Python time); after that it
        sleeps until the next ``put`` wakes it."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not self.items and not self.stop.is_set():
                now = time.monotonic()
                if now >= deadline:
                    return False
                if self.linger_s and now - self.last_put < SENT_WAKE_AFTER_IDLE_S:
                    self.cond.wait(min(self.linger_s, deadline - now))
                    continue
                self.sleeping = True
                try:
                    self.cond.wait(deadline - now)
                finally:
                    self.sleeping = False
            return True


_T = TypeVar("_T")


class _Unit:
    """One caller's work for ``Database.write``: ``fn(tx)``, and what came of it."""

    __slots__ = ("done", "error", "fn", "result", "taken")

    def __init__(self, fn: Callable[[Transaction], Any]) -> None:
        self.fn = fn
        self.taken = False  # in a leader's transaction
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class _Group:
    """The callers of ``Database.write`` in one process waiting for a shared transaction, and
    whether one of them is leading one (writing the others' work with its own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.pending: list[_Unit] = []
        self.leading = False


def _copied(exc: BaseException) -> BaseException:
    """``exc`` for another thread to raise (one exception object raised in several threads at once
    would gather all of their tracebacks)."""
    try:
        twin = copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is shared
        return exc
    twin.__cause__ = exc.__cause__
    return twin


_SAVEPOINT = DirectStatement(sa.text("SAVEPOINT ivr_unit"))
_ROLLBACK_TO = DirectStatement(sa.text("ROLLBACK TO ivr_unit"))
_RELEASE = DirectStatement(sa.text("RELEASE ivr_unit"))


#: Databases whose ``record_sent`` queue is written at interpreter exit (a gunicorn worker's graceful
#: shutdown ends with ``sys.exit``).
_SETTLE_AT_EXIT: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _settle_at_exit() -> None:
    for db in list(_SETTLE_AT_EXIT):
        try:
            if not db.settle_sent(2.0):
                log.error("exiting with %d sent block result(s) not stored", len(db._sent.items))
        except Exception:  # noqa: BLE001 - exiting anyway
            log.exception("storing sent blocks' results at exit failed")


def _write_sent_behind(owner: weakref.ref, queue: _SentQueue) -> None:
    """The writer thread of ``record_sent``: writes what is queued, as soon as it is queued, in as
    few transactions as there are moments the database lets it write. A database outage keeps the
    results queued and retries, pausing 0.05 s and up to 2 s in between. Ends with its ``Database``
    (closed, disposed or gone)."""
    pause = 0.0
    while not queue.stop.is_set():
        if pause:
            queue.stop.wait(pause)
        if not queue.wait_work(1.0) or queue.stop.is_set():
            continue
        if queue.linger_s and not queue.linger():
            continue  # another transaction wrote them
        db = owner()
        if db is None:
            return
        try:
            db._flush_sent()
            pause = 0.0
        except StorageError as exc:
            pause = min(max(pause * 2, 0.05), 2.0)
            log.error("could not store the results of %d sent block(s) yet (retrying in %.2f s): %s",
                      len(queue.items), pause, exc)
        except Exception:  # noqa: BLE001 - the thread must outlive a bug; what it failed to write is logged
            pause = 0.05
            log.exception("storing the results of sent blocks failed")
        del db


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def translate_error(exc: sa.exc.DBAPIError, url: URL) -> StorageError | None:
    """The ``StorageError`` a driver error means, or None when it is not one the caller handles."""
    orig = exc.orig
    where = display_url(url)
    if url.get_backend_name() == "sqlite":
        message = _first_line(orig).lower() if orig is not None else ""
        if "locked" in message or "busy" in message:
            return StorageBusy(f"the SQLite database {where} stayed locked beyond the lock timeout")
        if "no such table" in message:
            return SchemaNotReady(f"{where}: {_first_line(orig)}: run `ivr db upgrade`")
        if "unable to open" in message:
            return DatabaseUnavailable(
                f"cannot open the SQLite database {where}: {_first_line(orig)} (does the directory exist?)"
            )
        if isinstance(exc, sa.exc.OperationalError):
            return DatabaseUnavailable(f"SQLite database {where}: {_first_line(orig)}")
        return None
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if sqlstate in ("55P03", "40P01", "40001", "57014"):
        # lock_not_available, deadlock_detected, serialization_failure, query_canceled (timeout)
        return StorageBusy(f"PostgreSQL {where}: {_first_line(orig)}")
    if sqlstate == "42P01":
        return SchemaNotReady(f"PostgreSQL {where}: {_first_line(orig)}: run `ivr db upgrade`")
    if exc.connection_invalidated:
        return DatabaseUnavailable(f"lost the connection to the database at {where}: {_first_line(orig)}")
    if sqlstate.startswith(("08", "57P")) or (
        isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) and not sqlstate
    ):
        return DatabaseUnavailable(f"cannot connect to the database at {where}: {_first_line(orig)}")
    return None


@contextmanager
def translated_errors(url: URL) -> Iterator[None]:
    """Re-raise driver errors as ``StorageError`` where they have a meaning (see ``translate_error``)."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        storage_error = translate_error(exc, url)
        if storage_error is None:
            raise
        raise storage_error from exc


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """The storage API: one instance per process, safe to share between threads.

    ``clock`` returns the current aware datetime (tests pass a fake one)."""

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
        connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
        pool_size: int = 5,
        max_overflow: int = DEFAULT_MAX_OVERFLOW,
        echo: bool = False,
    ) -> None:
        self.url = normalize_url(url if url is not None else default_database_url())
        self.backend = self.url.get_backend_name()  # "sqlite" | "postgresql"
        self.engine = create_engine(
            self.url,
            lock_timeout_ms=lock_timeout_ms,
            connect_timeout_s=connect_timeout_s,
            pool_size=pool_size,
            max_overflow=max_overflow,
            echo=echo,
        )
        #: where ``record_sent``'s results are written: on PostgreSQL, a small pool of its own whose
        #: commits do not wait for the WAL to reach the disk (``synchronous_commit=off``). A result
        #: written behind already waits in the worker's memory before its commit; this lets a server
        #: crash lose the last ones too (at most 3 x ``wal_writer_delay``, 0.6 s by default), with the
        #: same consequence: the recovery pass finds the block ``sending``. Each notification then
        #: waits for one WAL flush, its main transaction's, not two.
        self.sent_engine = self.engine if self.backend == "sqlite" else create_engine(
            self.url, lock_timeout_ms=lock_timeout_ms, connect_timeout_s=connect_timeout_s, pool_size=1,
            max_overflow=SENT_CONNECTIONS - 1, echo=echo, settings={"synchronous_commit": "off"})
        self.clock = clock or _utcnow
        self._lock_timeout_s = lock_timeout_ms / 1000
        self._local = threading.local()
        #: sent blocks' results not written yet (see ``record_sent``)
        self._sent = _SentQueue(SENT_LINGER_S)
        self._sent_guard = threading.Lock()
        #: SQLite: callers of ``write`` waiting to share a transaction
        self._group = _Group()
        #: SQLite: where writers take turns (see ``WriterQueue``); None on PostgreSQL
        self.writers: WriterQueue | None = None
        #: SQLite file: the WAL checkpoints' thread (see ``WalCheckpointer``); else None
        self.checkpoints: WalCheckpointer | None = None
        if self.backend == "sqlite":
            path = None if _is_memory(self.url) else self.url.database
            self.writers = WriterQueue(f"{os.path.abspath(path)}-writer.lock" if path else None,
                                        lock_timeout_ms / 1000, display_url(self.url))
            if path:
                self.checkpoints = WalCheckpointer(path, CHECKPOINT_INTERVAL_S)

    @classmethod
    def open(
        cls,
        url: str | URL | None = None,
        *,
        auto_migrate_sqlite: bool = True,
        auto_migrate: bool = False,
        **kwargs: Any,
    ) -> Database:
        """A ``Database`` whose schema is ready: a new or outdated SQLite file is upgraded to the head
        revision (safe when several workers open it at once). PostgreSQL is never migrated here
        (``ivr db upgrade`` is a deploy step): an outdated schema or an unreachable server is logged
        as a warning and the ``Database`` is returned anyway (readiness checks report it), unless
        ``auto_migrate=True`` (tests, single-host demos) asks for an upgrade on any backend."""
        from engine.storage import migrate

        db = cls(url, **kwargs)
        try:
            head = migrate.head_revision()
            migrate_here = auto_migrate or (auto_migrate_sqlite and db.backend == "sqlite")
            try:
                current = migrate.current_revision(db)
            except DatabaseUnavailable as exc:
                if db.backend == "sqlite" or migrate_here:
                    raise
                # The server may come up later: start anyway; /readyz reports it meanwhile.
                log.warning("%s", exc)
                return db
            if current != head:
                if migrate_here:
                    migrate.upgrade(db)
                else:
                    log.warning(
                        "database %s is at revision %s, the code expects %s: run `ivr db upgrade`",
                        db.display_url,
                        current or "(empty)",
                        head,
                    )
        except BaseException:
            db.close()
            raise
        return db

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    # ------------------------------------------------------------------ lifecycle
    def dispose(self) -> None:
        """Forget pooled connections inherited from the parent process without closing them (call
        in the child after fork, e.g. gunicorn ``post_fork``). The WAL checkpoints' thread stops
        too; the next write starts it again. Results of sent blocks queued by the parent are the
        parent's to write: the child starts with none."""
        if self.checkpoints is not None:
            self.checkpoints.stop()
        self._renew_sent()
        self.engine.dispose(close=False)
        if self.sent_engine is not self.engine:
            self.sent_engine.dispose(close=False)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what ``record_sent`` still holds (waiting up to ``timeout_s``), then close every
        pooled connection (shutdown, tests)."""
        self.settle_sent(timeout_s)
        self._renew_sent()
        if self.checkpoints is not None:
            self.checkpoints.stop()
        self.engine.dispose()
        if self.sent_engine is not self.engine:
            self.sent_engine.dispose()

    def ping(self, timeout_s: float = 1.0) -> float:
        """Round trip to the database; returns the seconds it took. Raises ``DatabaseUnavailable`` when
        it cannot be reached or answers slower than ``timeout_s`` (readiness checks)."""
        started = time.monotonic()
        with translated_errors(self.url), self.engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: False})
            with conn.begin():
                if self.backend == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
                    conn.exec_driver_sql("SELECT 1")
                else:
                    conn.exec_driver_sql("SELECT count(*) FROM sqlite_master")
        elapsed = time.monotonic() - started
        if elapsed > timeout_s:
            raise DatabaseUnavailable(f"the database at {self.display_url} answered after {elapsed:.2f} s")
        return elapsed

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One write transaction: committed when the block ends, rolled back when it raises.

        SQLite: ``BEGIN IMMEDIATE`` (waits for other writers up to the lock timeout). PostgreSQL:
        READ COMMITTED; ``tx.lock_call`` takes the row lock. A lock not obtained in time raises
        ``StorageBusy``; a lost connection ``DatabaseUnavailable``."""
        with self._write_guard():
            if self.checkpoints is not None:
                self.checkpoints.ensure(self)
            with self._transaction(write=True) as tx:
                yield tx

    def write(self, fn: Callable[[Transaction], _T]) -> _T:
        """``fn(tx)`` in a write transaction, committed when it returns, undone when it raises (the
        exception is raised here); returns what ``fn`` returned. ``fn`` may be run on another
        thread, and must not touch the database but through ``tx``.

        On SQLite this is group commit: callers of this process arriving while a write is under
        way wait, and the next of them writes all of their work in one transaction, each under a
        savepoint of its own, so one failing ``fn`` undoes only its own writes. One turn of the
        database-wide write lock and one commit then serve several notifications, where each used
        to take its own. On PostgreSQL (row locks, many writers at once) it is ``transaction()``,
        which also carries the results queued by ``record_sent`` (``_write_carrying``)."""
        if self.writers is None:
            return self._write_carrying(fn)
        self._refuse_nested_write()
        group = self._group
        if group.pid != os.getpid():
            group = self._group_for_this_process()
        unit = _Unit(fn)
        deadline = time.monotonic() + self._lock_timeout_s
        with group.cond:
            group.pending.append(unit)
            while group.leading and not unit.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and not unit.taken:
                    group.pending.remove(unit)
                    raise self.writers.busy_error()
                group.cond.wait(remaining if remaining > 0 and not unit.taken else None)
            if unit.done:
                return unit.outcome()
            group.leading = True
        try:
            self._lead(group, unit)
        finally:
            with group.cond:
                group.leading = False
                group.cond.notify_all()
        return unit.outcome()

    def _lead(self, group: _Group, mine: _Unit) -> None:
        """Write ``mine`` and every other waiting caller's work in one transaction (see ``write``)."""
        batch: list[_Unit] = []
        try:
            with self.transaction() as tx:
                with group.cond:
                    batch, group.pending = group.pending, []
                    for unit in batch:
                        unit.taken = True
                if len(batch) == 1:
                    mine.result = mine.fn(tx)
                else:
                    self._run_units(tx, batch)
        except BaseException as exc:
            if not batch:  # no turn: only the leader's own work fails; the others get a new leader
                with group.cond:
                    group.pending.remove(mine)
                raise
            for unit in batch:
                unit.result = None
                if unit.error is None:
                    unit.error = exc if unit is mine else _copied(exc)
        finally:
            with group.cond:
                for unit in batch:
                    unit.done = True

    def _write_carrying(self, fn: Callable[[Transaction], _T]) -> _T:
        """PostgreSQL: ``fn(tx)`` in a transaction that also carries up to ``SENT_CARRIED_MAX``
        results queued by ``record_sent``: their statements ride with the transaction's claim
        (``tx.riders``), in its round trip, and commit with it. That saves the writer thread's own
        transaction and round trip for each of them.

        If ``fn`` never claims, or the transaction fails, they go back to the queue. If the database
        refuses one of them (``RiderFailed``, or any error of the database's once they were sent: an
        outage is a ``StorageError`` by then, and the transaction could not tell whose fault the
        rest was), ``fn`` runs again without them, and they are set aside to be written alone by the
        writer thread, which logs and drops one that is refused again: a bad result never costs a
        notification its answer."""
        queue = self._sent
        if queue.pid != os.getpid() or not queue.items:
            with self.transaction() as tx:
                return fn(tx)
        taken = queue.take(alone=False, limit=SENT_CARRIED_MAX)
        back: list[_Sent] = []
        sent = False
        try:
            with self.transaction() as tx:
                for item in taken:
                    try:
                        tx.riders.extend(item.statements(tx))
                    except ValueError:  # refused before any I/O: the writer thread logs and drops it
                        item.alone = True
                        back.append(item)
                try:
                    result = fn(tx)
                finally:
                    sent = not tx.riders
                if not sent:  # fn did not claim: nothing rode
                    back = taken
        except (RiderFailed, sa.exc.DBAPIError) as exc:
            if not sent:
                queue.settle(taken, taken)
                raise
            log.warning("results written behind were refused in a notification's transaction, which runs again "
                        "without them: %s", _first_line(getattr(exc, "error", exc)))
            for item in taken:
                item.alone = True
            queue.settle(taken, taken)
            with self.transaction() as tx:
                return fn(tx)
        except BaseException:
            queue.settle(taken, taken)
            raise
        queue.settle(taken, back)
        return result

    def _run_units(self, tx: Transaction, batch: list[_Unit]) -> None:
        conn = tx.conn
        for unit in batch:
            _SAVEPOINT.execute(conn, {})
            try:
                unit.result = unit.fn(tx)
            except BaseException as exc:
                if self._outage(exc) or not isinstance(exc, Exception):
                    raise  # the whole transaction is lost: every unit fails with it
                _ROLLBACK_TO.execute(conn, {})
                unit.error = exc
            _RELEASE.execute(conn, {})

    def _group_for_this_process(self) -> _Group:
        with self._sent_guard:
            if self._group.pid != os.getpid():
                self._group = _Group()
            return self._group

    @contextmanager
    def reading(self) -> Iterator[Transaction]:
        """A read-only transaction (deferred ``BEGIN`` on SQLite: never waits for writers in WAL mode).
        It sees what this process wrote, ``record_sent`` included: it first waits (up to the lock
        timeout) for the results still queued there, unless this thread is inside a write
        transaction (on SQLite the queue's writer would wait for that transaction's turn; its commit
        writes them)."""
        if not getattr(self._local, "writing", False):
            self.settle_sent()
        with self._transaction(write=False) as tx:
            yield tx

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Transaction]:
        # On SQLite a writer holds its turn from BEGIN to COMMIT only: the pool checkout before and
        # the connection's return after are done outside it.
        turn = self.writers.turn() if write and self.writers is not None else nullcontext()
        with translated_errors(self.url), self.engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: write})
            tx = Transaction(conn, self.clock, write=write)
            try:
                with turn, self._committing(conn, tx):
                    yield tx
            finally:
                tx.close()

    @contextmanager
    def _committing(self, conn: sa.Connection, tx: Transaction, *, drain: bool = False) -> Iterator[None]:
        """``conn.begin()`` around the body. On SQLite, a write transaction also writes the queued
        results of sent blocks (``record_sent``) after the body, in the same commit: on the single
        write lock one commit then serves several notifications. ``drain``: write them on any
        backend (the writer thread of ``record_sent``)."""
        queue = self._sent
        taken: list[_Sent] = []
        back: list[_Sent] = []
        try:
            with conn.begin():
                yield
                if tx.write and (drain or self.writers is not None) and queue.items:
                    taken = queue.take(alone=False)
                    back = self._write_sent(tx, taken, tolerant=self.writers is not None)
        except BaseException:
            queue.settle(taken, taken)
            raise
        queue.settle(taken, back)

    def _write_sent(self, tx: Transaction, items: list[_Sent], *, tolerant: bool) -> list[_Sent]:
        """Write ``items`` in ``tx``; returns those to write again, alone. ``tolerant`` (SQLite, or
        statements committed on their own: a failed statement is undone by itself): an item that
        fails is set aside and the others go on. Otherwise the first failure is raised and
        ``_flush_sent`` writes them one by one."""
        failed: list[_Sent] = []
        for item in items:
            try:
                item.write(tx)
            except Exception as exc:
                if not tolerant or self._outage(exc):
                    raise
                item.alone = True
                failed.append(item)
        return failed

    def _refuse_nested_write(self) -> None:
        if getattr(self._local, "writing", False):
            raise NestedTransaction(
                "a write on the Database was started inside `with db.transaction() as tx:` in the same "
                "thread; on SQLite it would wait for the enclosing transaction forever. Use the tx.* "
                "method of the enclosing transaction instead"
            )

    @contextmanager
    def _write_guard(self) -> Iterator[None]:
        self._refuse_nested_write()
        self._local.writing = True
        try:
            yield
        finally:
            self._local.writing = False

    # ------------------------------------------------------------------ short write transactions
    def record_notification(self, *request: Any, **details: Any) -> int:
        """Record a webhook request (own transaction): ``Transaction.record_notification``. Returns
        its id. With ``outcome`` it is stored already finished."""
        with self.transaction() as tx:
            return tx.record_notification(*request, **details)

    def finish_notification(self, *args: Any, **kwargs: Any) -> None:
        """``Transaction.finish_notification`` in a transaction of its own."""
        with self.transaction() as tx:
            tx.finish_notification(*args, **kwargs)

    def mark_block(self, *args: Any, **kwargs: Any) -> bool:
        """``Transaction.mark_block`` in a transaction of its own."""
        with self.transaction() as tx:
            return tx.mark_block(*args, **kwargs)

    def record_sent(self, marks: Sequence[Mapping[str, Any]], finish: Mapping[str, Any]) -> None:
        """Sent blocks' results (``tx.mark_block(**mark)`` each, by session and step) and the
        outcome of the notification that led to them, written behind: queued here and written
        moments later, together, so the notification's answer does not wait for a commit.

        The queue goes into the next write transaction of this process, or, when none comes within
        ``SENT_LINGER_S``, into one of the writer thread's own. On SQLite that transaction writes
        the queue just before its commit; on PostgreSQL the queued statements ride with its claim,
        in the same round trip (``_write_carrying``). Under load, a notification's commit thus
        carries the results of the ones before it, instead of one commit (and round trip) each.

        Reads through this ``Database`` wait for the queue first (``reading``), so a process always
        sees what it recorded. If the process dies before the write, the block stays ``sending``
        and its notification unfinished: the recovery pass treats it as a send interrupted by a
        crash (``CallService.recover_stuck_blocks``). An item the database refuses is logged with
        its error and dropped; a database outage keeps the queue until the database is back."""
        queue = self._sent
        if queue.pid != os.getpid():
            queue = self._sent_for_this_process()
        if queue.thread is None:
            self._start_sent_writer(queue)
        queue.put(_Sent(marks, finish))

    def settle_sent(self, timeout_s: float | None = None) -> bool:
        """Wait until every result queued by ``record_sent`` is committed (or dropped); False when
        ``timeout_s`` (default: the lock timeout) ran out first."""
        queue = self._sent
        if queue.pid != os.getpid() or queue.empty():
            return True
        if queue.thread is None:
            self._start_sent_writer(queue)
        timeout = timeout_s if timeout_s is not None else self._lock_timeout_s
        with queue.cond:
            queue.urgent += 1
            queue.cond.notify_all()
        try:
            return queue.wait_empty(timeout)
        finally:
            with queue.cond:
                queue.urgent -= 1

    def _renew_sent(self) -> None:
        """Stop this queue's writer thread; a new queue (and thread, at its first use) replaces it."""
        with self._sent_guard:
            self._sent.stop.set()
            self._sent = _SentQueue(SENT_LINGER_S)

    def _sent_for_this_process(self) -> _SentQueue:
        with self._sent_guard:
            if self._sent.pid != os.getpid():  # after fork: the parent's items are the parent's
                self._sent = _SentQueue(SENT_LINGER_S)
            return self._sent

    def _start_sent_writer(self, queue: _SentQueue) -> None:
        with self._sent_guard:
            if queue.thread is None:
                queue.thread = threading.Thread(target=_write_sent_behind, args=(weakref.ref(self), queue),
                                                name="ivr-sent-writer", daemon=True)
                queue.thread.start()
                _SETTLE_AT_EXIT.add(self)

    def _flush_sent(self) -> None:
        """Write what is queued (the writer thread): those that failed in company first, each in
        a transaction of its own, then all the others in one."""
        queue = self._sent
        alone = queue.take(alone=True)
        for position, item in enumerate(alone):
            try:
                self._write_alone(item)
            except StorageError:
                queue.settle(alone[position:], alone[position:])
                raise
            except Exception as exc:  # noqa: BLE001 - this item's own fault: logged, the others go on
                # logged before it leaves the queue: whoever waits for the queue then finds the log line
                log.error("dropped the result of a sent block that could not be stored (session %s, step %s, "
                          "notification %s): %s", item.marks[-1].get("session"), item.marks[-1].get("step"),
                          item.finish.get("notification_id"), _first_line(getattr(exc, "orig", None) or exc))
                queue.settle([item], [])
            else:
                queue.settle([item], [])
        if not queue.items:
            return
        if self.writers is None and len(queue.items) == 1 and len(queue.items[0].marks) == 1:
            # PostgreSQL, one result: its statement committed on its own is one round trip, where
            # BEGIN, statement, COMMIT are three
            self._write_autocommitted(queue.take(alone=False))
            return
        try:
            with self._write_turn(lambda: not queue.items) as (conn, tx):
                if tx is not None:
                    with self._committing(conn, tx, drain=True):
                        pass
        except StorageError:
            raise
        except Exception:  # one of them is refused: each is written alone next time
            with queue.cond:
                for item in queue.items:
                    item.alone = True
                queue.cond.notify_all()

    def _outage(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the database's trouble (busy, unreachable), not a written item's."""
        return isinstance(exc, StorageError) or (
            isinstance(exc, sa.exc.DBAPIError) and translate_error(exc, self.url) is not None)

    def _write_autocommitted(self, items: list[_Sent]) -> None:
        back = items  # on an outage, all again (rewriting a stored result stores the same values)
        try:
            with translated_errors(self.url), self.sent_engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                tx = Transaction(conn, self.clock)
                try:
                    back = self._write_sent(tx, items, tolerant=True)
                finally:
                    tx.close()
        finally:
            self._sent.settle(items, back)

    def _write_alone(self, item: _Sent) -> None:
        with self._write_turn(None) as (conn, tx):
            assert tx is not None
            with conn.begin():
                item.write(tx)

    @contextmanager
    def _write_turn(self, unless: Callable[[], bool] | None) -> Iterator[tuple[sa.Connection, Transaction | None]]:
        """A pooled connection for results written behind and, on SQLite, the writer turn (none
        when ``unless()`` is true once this process's turn comes: the ``Transaction`` is then None)."""
        turn = self.writers.turn(unless=unless) if self.writers is not None else nullcontext(True)
        with translated_errors(self.url), self.sent_engine.connect() as conn, turn as mine:
            tx = Transaction(conn, self.clock) if mine else None
            try:
                yield conn, tx
            finally:
                if tx is not None:
                    tx.close()

    def record_flow_version(self, flow: str, version: str, source: str) -> bool:
        with self.transaction() as tx:
            return tx.record_flow_version(flow, version, source)

    def add_side_call(self, *args: Any, **kwargs: Any) -> int:
        """``Transaction.add_side_call`` in a transaction of its own."""
        with self.transaction() as tx:
            return tx.add_side_call(*args, **kwargs)

    def update_side_call(
        self, side_call_id: int, status: str, response: Any = None, *, txn_ref: str | None = None
    ) -> bool:
        with self.transaction() as tx:
            return tx.update_side_call(side_call_id, status, response, txn_ref=txn_ref)

    def record_call_event(self, txn_ref: str, kind: str, payload: Any) -> int:
        with self.transaction() as tx:
            return tx.record_call_event(txn_ref, kind, payload)

    def prune(self, older_than: timedelta) -> dict[str, int]:
        with self.transaction() as tx:
            return tx.prune(older_than)

    # ------------------------------------------------------------------ reads
    def get_call(self, session: str) -> CallRow | None:
        with self.reading() as tx:
            return tx.get_call(session)

    def list_calls(self, limit: int = 50, status: str | Collection[str] | None = None) -> list[CallRow]:
        with self.reading() as tx:
            return tx.list_calls(limit, status)

    def count_calls(self, status: str | None = None) -> int:
        with self.reading() as tx:
            return tx.count_calls(status)

    def recent_notifications(
        self, limit: int = 50, *, session: str | None = None, outcome: str | None = None
    ) -> list[NotificationRow]:
        with self.reading() as tx:
            return tx.recent_notifications(limit, session=session, outcome=outcome)

    def get_notification(self, notification_id: int) -> NotificationRow | None:
        with self.reading() as tx:
            return tx.get_notification(notification_id)

    def get_block(self, block_id: int) -> BlockRow | None:
        with self.reading() as tx:
            return tx.get_block(block_id)

    def blocks_for(self, session: str) -> list[BlockRow]:
        with self.reading() as tx:
            return tx.blocks_for(session)

    def blocks_in_status(
        self,
        statuses: Collection[str] = ("pending", "sending"),
        older_than_seconds: float = 0.0,
        limit: int = 100,
    ) -> list[BlockRow]:
        with self.reading() as tx:
            return tx.blocks_in_status(statuses, older_than_seconds, limit)

    def timeline(self, session: str) -> list[TimelineEntry]:
        with self.reading() as tx:
            return tx.timeline(session)

    def side_calls(self, *, session: str | None = None, txn_ref: str | None = None) -> list[SideCallRow]:
        with self.reading() as tx:
            return tx.side_calls(session=session, txn_ref=txn_ref)

    def call_events(self, txn_ref: str) -> list[CallEventRow]:
        with self.reading() as tx:
            return tx.call_events(txn_ref)

    def get_flow_source(self, flow: str, version: str) -> str | None:
        with self.reading() as tx:
            return tx.get_flow_source(flow, version)

    def flow_versions(self, flow: str | None = None) -> list[dict[str, Any]]:
        with self.reading() as tx:
            return tx.flow_versions(flow)
