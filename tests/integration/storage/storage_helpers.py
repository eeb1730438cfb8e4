"""Helpers shared by the storage tests, and the code their child processes run.

Importable by name (also in spawned children) because pytest puts this folder on ``sys.path`` and
multiprocessing's spawn passes the parent's ``sys.path`` on.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from engine.core.state import CallState
from engine.storage import Database

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    """Starts at ``T0`` and moves 1 ms forward at every reading, so rows written one after the other
    have distinct, ordered timestamps."""

    def __init__(self, start: datetime = T0, tick: timedelta = timedelta(milliseconds=1)) -> None:
        self.now = start
        self.tick = tick

    def __call__(self) -> datetime:
        self.now += self.tick
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def sample_state(session: str = "S1", step: int = 1, **changes: object) -> CallState:
    state = CallState(
        flow="support",
        version="v1",
        session=session,
        node="menu",
        step=step,
        waiting="gather",
        vars={"lang": "en"},
        sensitive=frozenset({"pin"}),
        path=(("start", "next"),),
        call={"from": "+6561234567", "to": "+6560000000"},
    )
    return state.evolve(**changes) if changes else state


def insert_call(db: Database, session: str = "S1", *, step: int = 1, status: str = "active") -> None:
    state = sample_state(session, step)
    with db.transaction() as tx:
        tx.insert_call(
            session=session,
            flow="support",
            flow_version="v1",
            direction="inbound",
            state=state.to_dict(),
            node="menu",
            step=step,
            status=status,
            caller="+6561234567",
            called="+6560000000",
            txn_ref="TXN-" + session,
        )


def increment_step(url: str, session: str, times: int, hold_s: float, start, results) -> None:
    """Lock the call, read its step, hold the lock a moment, write step + 1; ``times`` times."""
    db = Database(url)
    done = 0
    try:
        start.wait(timeout=30)
        for _ in range(times):
            with db.transaction() as tx:
                row = tx.lock_call(session)
                step = row.step
                time.sleep(hold_s)
                tx.update_call(
                    session,
                    state=row.state,
                    node=row.node,
                    step=step + 1,
                    status=row.status,
                    expected_row_version=row.row_version,
                )
            done += 1
        results.put(("ok", done))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        db.close()
