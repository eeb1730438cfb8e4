"""The benchmark times a fixed Python loop before each scenario and reports, per row, how fast the
machine ran against its fastest in the run: a row measured on a machine running at half speed says so."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))

import run  # noqa: E402  (bench/run.py, a script folder)


def _run(label: str, server: str, mode: str, loop: float, samples: list[float]) -> run.Run:
    summary = {"p50": None, "p99": None, "max": None, "mean": None, "n": 0}
    result = {"throughput": 200.0, "samples_ms": samples, "final_ms": summary, "lateness_ms": summary,
              "errors": {}, "stub_cpu_pct": 10.0}
    return run.Run("main", label, server, "sqlite", mode, 100, 200.0, result, loop_ms=loop)


def test_the_loop_is_timed_in_milliseconds():
    fast = run.loop_ms(loops=10_000, tries=1)
    slow = run.loop_ms(loops=1_000_000, tries=1)
    assert 0 < fast < slow


def test_each_row_says_how_fast_the_machine_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(run.tempfile, "mkdtemp", lambda **_: str(tmp_path))
    bench = run.Bench(run.parse(["--quick", "--backends", "sqlite", "--no-results"]))
    bench.initial_load, bench.initial_busy = 0.5, 1.0
    bench.keep("bare Flask - closed", _run("bare Flask: closed loop", "bare", "closed", 20.0, [1.0] * 50))
    # the engine at the fixed rate, twice: 40 and 60 ms, a machine at 0.50 and 0.33 of its fastest
    bench.keep("engine sqlite target", _run("engine sqlite: 200/s", "engine", "paced", 40.0, [5.0] * 50))
    bench.keep("engine sqlite target", _run("engine sqlite: 200/s", "engine", "paced", 60.0, [30.0] * 50))
    text = run.report(bench, 60.0)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["bare Flask: closed loop"].endswith("| 1.00 |")
    assert rows["engine sqlite: 200/s"].endswith("| 0.40 |")  # 20 / mean(40, 60)
    assert "took 20 to 60 ms" in text
    target = next(line for line in text.splitlines() if line.startswith("| turnaround p99 < 25 ms"))
    assert "speed 0.40" in target and "NOT met" in target
    assert "closed-loop" not in target  # no closed loop of the engine in this run: no load share


def test_the_fixed_rate_target_says_how_near_the_engine_ran_to_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(run.tempfile, "mkdtemp", lambda **_: str(tmp_path))
    bench = run.Bench(run.parse(["--quick", "--backends", "sqlite", "--no-results"]))
    bench.initial_load, bench.initial_busy = 0.5, 1.0
    closed = _run("engine sqlite: closed loop", "engine", "closed", 20.0, [90.0] * 50)
    closed.result["throughput"] = 250.0
    bench.keep("engine sqlite closed", closed)
    bench.keep("engine sqlite target", _run("engine sqlite: 200/s", "engine", "paced", 20.0, [30.0] * 50))
    target = next(line for line in run.report(bench, 60.0).splitlines()
                  if line.startswith("| turnaround p99 < 25 ms"))
    assert "at 200 notif/s achieved, 80% of its closed-loop throughput (250), speed 1.00" in target


def test_the_throughput_target_gives_the_spread_of_the_alternating_pairs(tmp_path, monkeypatch):
    monkeypatch.setattr(run.tempfile, "mkdtemp", lambda **_: str(tmp_path))
    bench = run.Bench(run.parse(["--quick", "--backends", "sqlite", "--no-results"]))
    bench.initial_load, bench.initial_busy = 0.5, 1.0
    for hand, engine in ((300.0, 270.0), (250.0, 275.0)):  # measured one after the other, in pairs
        for key, server, value in (("hand-written sqlite closed", "handwritten", hand),
                                   ("engine sqlite closed", "engine", engine)):
            measured = _run(key, server, "closed", 20.0, [50.0] * 10)
            measured.result["throughput"] = value
            bench.keep(key, measured)
    target = next(line for line in run.report(bench, 60.0).splitlines()
                  if line.startswith("| engine throughput >= hand-written, sqlite"))
    # means 272.5 vs 275: x0.99, not met; the pairs: 270/300 = x0.90 and 275/250 = x1.10
    assert "272 vs 275 notif/s (x0.99; pair by pair x0.90 to x1.10)" in target and "NOT met" in target
