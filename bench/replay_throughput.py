"""Benchmark: notifications per second through the real engine, in process.

Replays the cases under ``tests/replays/`` round-robin (each time as a new call with a session of
its own) on one app and one SQLite database until 10,000 notifications have been handled, and prints
notifications per second. Each notification goes the whole way: Flask route, signature check, strict
parsing, one write transaction with the call's lock, the interpreter, the outbox, and the block(s)
sent through the real Hoiio client to a recording transport. Every replayed call is also checked
against its case, so a fast but wrong engine does not pass unnoticed.

A benchmark, not a test: ``python bench/replay_throughput.py [--notifications N] [--cases DIR]``.

May import ``engine.replay``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from engine.replay import Replayer, case_files, load_case  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=10_000, help="how many to replay (default 10000)")
    parser.add_argument("--cases", type=Path, default=ROOT / "tests" / "replays", help="folder of replay cases")
    parser.add_argument("--flows", type=Path, default=ROOT / "flows", help="folder of flows")
    args = parser.parse_args(argv)

    cases = [load_case(path) for path in case_files([args.cases])]
    if not cases:
        print(f"no cases in {args.cases}", file=sys.stderr)
        return 2
    with Replayer(args.flows) as replayer:
        app = replayer.open_app()
        try:
            app.play(cases[0], session="warm-up")  # first-request costs (imports, caches) left out
            notifications = calls = blocks = wrong = 0
            started = time.perf_counter()
            cpu_started = time.process_time()
            while notifications < args.notifications:
                case = cases[calls % len(cases)]
                result = app.play(case, session=f"B{calls:07d}")
                calls += 1
                notifications += sum(1 for step in result.steps if step.kind != "start")
                blocks += sum(len(step.actual) for step in result.steps)
                wrong += 0 if result.passed else 1
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        finally:
            app.close()
    print(f"replayed {notifications} notifications in {calls} calls ({len(cases)} different cases), "
          f"{blocks} blocks sent, in {elapsed:.2f} s")
    print(f"{notifications / elapsed:,.0f} notifications per second "
          f"({1000 * elapsed / notifications:.2f} ms each, SQLite on disk, one thread)")
    print(f"{notifications / cpu:,.0f} notifications per CPU second (the figure to compare on a busy machine)")
    if wrong:
        print(f"{wrong} replayed calls did not match their case", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
