"""Bulk-insert past sessions (ended calls with their notifications and blocks) into an engine database.

Each past session is what one auto-attendant call leaves behind (copied from a real run of the
engine): one ``calls`` row (ended, transferred, with its state and billing), four ``notifications``
(answer, play, gather, transfer/ended, with body, headers, dedupe key and the JSON answer) and three
``blocks`` (play, gather, transfer, sent). Sessions are spread over the last 30 days.

PostgreSQL: ``COPY ... FROM STDIN`` in one transaction, then ``ANALYZE`` and a ``CHECKPOINT`` (what
autovacuum and the checkpointer would have done by the time a real database holds that many calls).
SQLite: ``executemany`` in one transaction (rollback journal and ``synchronous=OFF`` while loading,
WAL again afterwards). Either way the seeding ends with ``sync``: what the load left in the page cache
goes to disk now, not 30 seconds later in the middle of the measurement (measured: 341 MB still
dirty after SQLite's million sessions, written back 30 s later, when the servers are measured). The
schema must exist (``ivr db upgrade``).

``python bench/seed.py DATABASE_URL COUNT [--flow-version V]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta

FLOW = "auto_attendant"
CALLER, CALLED = "+6591234567", "+6531580000"
SAY = '<speech language="en-US" gender="female">{}</speech>'
PUBLIC = "https://ivr.example.com"
BILLING = {"date": "2026-01-01 09:00:00", "duration": "1", "currency": "SGD", "rate": "0.030", "debit": "0.030"}

CALL_COLUMNS = ("session", "flow", "flow_version", "direction", "status", "node", "step", "state", "caller",
                "called", "dest", "txn_ref", "outcome", "billing", "created_at", "updated_at", "ended_at",
                "row_version")
NOTIFICATION_COLUMNS = ("received_at", "session", "route", "method", "query_string", "headers", "body", "step",
                        "dedupe_key", "outcome", "reason", "response", "duration_ms")
BLOCK_COLUMNS = ("session", "step", "node", "kind", "endpoint", "params", "status", "created_at", "updated_at",
                 "sent_at", "attempts", "http_status", "provider_status", "response", "duration_ms", "error")

_BLOCKS = (  # step, node, kind, endpoint, params
    (1, "welcome", "play", "ivr/middle/play", {"msg": SAY.format("Thank you for calling Acme.")}),
    (2, "main_menu", "gather", "ivr/middle/gather", {
        "msg": SAY.format("For sales, press 1. For support, press 2. For accounts, press 3. To leave a message, "
                          "press 0."), "max_digits": "1", "timeout": "6", "attempts": "1", "tag": "main-menu"}),
    (3, "sales", "transfer", "ivr/end/transfer", {
        "dest": "+6531580001", "msg": SAY.format("Connecting you to sales."), "on_failure": "continue",
        "ring_time": "25", "tag": "sales"}),
)
_NOTIFICATIONS = (  # route, ivr_block, call_state, extra fields, node after, outcome
    ("answer", "answer", "ringing", "", "welcome", "started"),
    ("notify", "play", "ongoing", "&tag=", "main_menu", "advanced"),
    ("notify", "gather", "ongoing", "&tag=main-menu&digits=1", "sales", "advanced"),
    ("notify", "transfer", "ended", "&tag=sales&transfer_status=answered&date=2026-01-01+09%3A00%3A00&duration=1"
     "&currency=SGD&rate=0.030&debit=0.030", "sales", "ended"),
)
SPREAD = timedelta(days=30)


class _Templates:
    """Per-session text with ``{s}`` (session) placeholders, prepared once."""

    def __init__(self, version: str) -> None:
        self.version = version
        state = {
            "flow": FLOW, "version": version, "session": "@S", "node": "sales", "step": 3, "waiting": None,
            "status": "ended", "vars": {"company": "Acme"}, "sensitive": [], "no_input": 0, "invalid": 0,
            "on_hold": False, "errors": 0, "outcome": "transferred",
            "path": [["welcome", "next"], ["main_menu", "key 1"]],
            "call": {"from": CALLER, "to": CALLED, "txn_ref": "AA-@S", "digits": "1", "transfer_status": "answered"},
            "billing": BILLING, "state_version": 1,
        }
        self.state = json.dumps(state)
        self.billing = json.dumps(BILLING)
        self.notifications = []
        for step, (route, block, call_state, extra, node, outcome) in enumerate(_NOTIFICATIONS):
            body = (f"ivr_block={block}&session=@S&txn_ref=AA-@S&from=%2B6591234567&to=%2B6531580000"
                    f"&call_state={call_state}{extra}")
            query = "" if step == 0 else f"step={step}&sig=5aa6b645d7e6a5ff993c02f2e564f62e"
            headers = json.dumps({"User-Agent": "hoiio", "Content-Type": "application/x-www-form-urlencoded",
                                  "X-Hoiio-Signature": "9" * 64, "Content-Length": str(len(body))})
            sent = []
            if step < 3:
                _, _, _, endpoint, params = _BLOCKS[step]
                sent = [{"endpoint": endpoint, "params": {"session": "@S", **params,
                                                          "notify_url": f"{PUBLIC}/hoiio/notify?step={step + 1}"
                                                                        "&sig=5aa6b645d7e6a5ff993c02f2e564f62e",
                                                          "app_id": "app"}, "provider_status": "success_ok"}]
            response = json.dumps({"status": "ok", "session": "@S", "flow": FLOW, "node": node,
                                   "step": min(step + 1, 3), "call_status": "ended" if step == 3 else "active",
                                   "outcome": outcome, "blocks": sent})
            self.notifications.append((f"POST /hoiio/{route}", query, headers, body, max(step, 1), response))
        self.blocks = [(step, node, kind, endpoint, json.dumps(params))
                       for step, node, kind, endpoint, params in _BLOCKS]


def _sessions(count: int, prefix: str) -> Iterator[tuple[str, str]]:
    """Session ids and their start times (whole seconds, UTC, ``YYYY-MM-DD HH:MM:SS``), oldest first."""
    now = int(time.time())
    start = now - int(SPREAD.total_seconds()) - 3600
    step = SPREAD.total_seconds() / max(count, 1)
    for i in range(count):
        yield f"{prefix}{i:09d}", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + int(step * i)))


def _dedupe(session: str, step: int) -> str:
    return hashlib.sha256(f"{session}|{step}".encode()).hexdigest()


# Rows of one session happen within the same second: offsets as microsecond suffixes.
_N_AT = tuple(f".{40000 * k:06d}" for k in range(4))  # notification k received
_B_MADE = tuple(f".{40000 * k + 10000:06d}" for k in range(3))  # block of step k+1 queued
_B_SENT = tuple(f".{40000 * k + 20000:06d}" for k in range(3))  # ... and sent
_END = ".160000"


# ---------------------------------------------------------------------------------------------- SQLite
def seed_sqlite(path: str, count: int, version: str, prefix: str = "P") -> None:
    t = _Templates(version)

    def calls():
        for s, at in _sessions(count, prefix):
            end = at + _END
            yield (s, FLOW, version, "inbound", "ended", "sales", 3, t.state.replace("@S", s), CALLER, CALLED, None,
                   f"AA-{s}", "transferred", t.billing, at + ".000000", end, end, 4)

    def notifications():
        for s, at in _sessions(count, prefix):
            for k, (route, query, headers, body, step, response) in enumerate(t.notifications):
                yield (at + _N_AT[k], s, route, "POST", query, headers, body.replace("@S", s).encode(),
                       step, _dedupe(s, k), "accepted", None, response.replace("@S", s), 12)

    def blocks():
        for s, at in _sessions(count, prefix):
            for k, (step, node, kind, endpoint, params) in enumerate(t.blocks):
                sent = at + _B_SENT[k]
                yield (s, step, node, kind, endpoint, params, "sent", at + _B_MADE[k], sent, sent, 1, 200,
                       "success_ok", '{"status": "success_ok"}', 9, None)

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("BEGIN")
        # Secondary indexes are built once after the load (sorting), not row by row.
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('calls', 'notifications', 'blocks')").fetchall()
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for table, columns, rows in (("calls", CALL_COLUMNS, calls()),
                                     ("notifications", NOTIFICATION_COLUMNS, notifications()),
                                     ("blocks", BLOCK_COLUMNS, blocks())):
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        for _name, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- PostgreSQL
def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def seed_postgres(url: str, count: int, version: str, prefix: str = "P", chunk: int = 2000) -> None:
    import psycopg

    t = _Templates(version)
    state = _copy_text(t.state)
    billing = _copy_text(t.billing)
    notes = [(route, query, _copy_text(headers), body, step, _copy_text(response))
             for route, query, headers, body, step, response in t.notifications]
    blocks = [(step, node, kind, endpoint, _copy_text(params)) for step, node, kind, endpoint, params in t.blocks]

    def call_lines(s: str, at: str) -> str:
        end = at + _END + "+00"
        return (f"{s}\t{FLOW}\t{version}\tinbound\tended\tsales\t3\t{state.replace('@S', s)}\t{CALLER}\t{CALLED}"
                f"\t\\N\tAA-{s}\ttransferred\t{billing}\t{at}+00\t{end}\t{end}\t4\n")

    def notification_lines(s: str, at: str) -> str:
        out = []
        for k, (route, query, headers, body, step, response) in enumerate(notes):
            raw = body.replace("@S", s).encode().hex()
            out.append(f"{at}{_N_AT[k]}+00\t{s}\t{route}\tPOST\t{query}\t{headers}\t\\\\x{raw}\t{step}"
                       f"\t{_dedupe(s, k)}\taccepted\t\\N\t{response.replace('@S', s)}\t12\n")
        return "".join(out)

    def block_lines(s: str, at: str) -> str:
        out = []
        for k, (step, node, kind, endpoint, params) in enumerate(blocks):
            made = f"{at}{_B_MADE[k]}+00"
            sent = f"{at}{_B_SENT[k]}+00"
            out.append(f"{s}\t{step}\t{node}\t{kind}\t{endpoint}\t{params}\tsent\t{made}\t{sent}\t{sent}\t1\t200"
                       f"\tsuccess_ok\t{{\"status\": \"success_ok\"}}\t9\t\\N\n")
        return "".join(out)

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    tables = ("calls", "notifications", "blocks")
    with psycopg.connect(plain) as conn:
        with conn.cursor() as cur:
            # Secondary indexes, unique constraints and the foreign key are dropped for the load and
            # rebuilt after it (one sort each instead of one random insertion per row); the schema
            # ends up exactly as it was.
            cur.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype "
                        "FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) AND contype IN ('u', 'f') "
                        "ORDER BY contype = 'u'", (list(tables),))
            constraints = cur.fetchall()  # foreign keys first
            cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) AND indexname NOT IN "
                        "(SELECT conname FROM pg_constraint)", (list(tables),))
            indexes = cur.fetchall()
            for table, name, _definition, _kind in constraints:
                cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, _definition in indexes:
                cur.execute(f'DROP INDEX "{name}"')
            for table, columns, make in (("calls", CALL_COLUMNS, call_lines),
                                         ("notifications", NOTIFICATION_COLUMNS, notification_lines),
                                         ("blocks", BLOCK_COLUMNS, block_lines)):
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    buffer: list[str] = []
                    for s, at in _sessions(count, prefix):
                        buffer.append(make(s, at))
                        if len(buffer) >= chunk:
                            copy.write("".join(buffer).encode())
                            buffer.clear()
                    if buffer:
                        copy.write("".join(buffer).encode())
            cur.execute("SET maintenance_work_mem = '256MB'")
            for _name, definition in indexes:
                cur.execute(definition)
            for table, name, definition, _kind in reversed(constraints):  # unique constraints first
                cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        conn.commit()
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("ANALYZE")
        conn.execute("CHECKPOINT")


def seed(url: str, count: int, version: str, prefix: str = "P") -> float:
    """Insert ``count`` past sessions; returns the seconds it took."""
    started = time.monotonic()
    if url.startswith("sqlite:///"):
        seed_sqlite(url[len("sqlite:///"):], count, version, prefix)
    else:
        seed_postgres(url, count, version, prefix)
    os.sync()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="sqlite:///path or postgresql://user@host/db (schema already created)")
    parser.add_argument("count", type=int)
    parser.add_argument("--flow-version", default="0" * 12)
    parser.add_argument("--prefix", default="P", help="session prefix (sessions must be new)")
    args = parser.parse_args(argv)
    seconds = seed(args.url, args.count, args.flow_version, args.prefix)
    print(f"{args.count} sessions in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
