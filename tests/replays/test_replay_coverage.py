"""Every node and every exit of every example flow is exercised by some case in tests/replays/.

When a flow gains a node, a menu key or a failure exit, this test fails until a case takes it.
"""

from __future__ import annotations

from pathlib import Path

from engine.replay import case_files, load_case
from engine.replay import coverage as coverage_report

HERE = Path(__file__).resolve().parent


def test_every_example_flow_is_fully_exercised(replayer):
    calls = []
    for path in case_files([HERE]):
        result = replayer.run(load_case(path))
        assert result.error is None, result.report()
        assert result.call is not None, f"{path}: no call was stored"
        calls.append((result.flow, result.call["path"], result.nodes_sent))
    report = coverage_report.compute(calls, replayer.registry.current)
    assert set(report) == set(replayer.registry.current)
    gaps = {
        name: {"nodes": entry.missing_nodes, "exits": entry.missing_exits}
        for name, entry in report.items()
        if not entry.complete
    }
    assert not gaps, "unexercised in the example flows (add a case under tests/replays/):\n" + \
        coverage_report.render_text({name: report[name] for name in gaps}, gated=gaps)
