"""Flow coverage of replayed calls: which nodes were reached and which exits were taken.

The exits of a flow are what ``Node.exits()`` names for each node (``key 1``, ``no input``,
``invalid``, ``next``, ``failed``, ``answered``, ``case 1``, ``otherwise``, ...), plus ``hang-up`` for
the block nodes at which the caller can hang up while the engine waits for Hoiio (play, menu,
collect, record, monitor, unhold, and a dial answered and then dropped). A ``hangup`` node has none
(the call ends there by design), nor has ``hold`` (Hoiio posts no notification for it); a call that
ends during a ``transfer`` is the transfer's own result (transferred or failed), not a hang-up.

What was taken comes from each call's ``CallState.path`` (the ``(node, exit)`` pairs in order); a node
was reached when it is in the path, is the target of an exit taken, or sent a block.

May import ``engine.core`` and the standard library only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.core.flow import Flow, Node

__all__ = ["HANG_UP_KINDS", "FlowCoverage", "compute", "exits_of", "render_text", "to_json"]

#: Block kinds at which a caller hanging up is an exit of its own (``(node, "hang-up")`` in the path).
HANG_UP_KINDS = frozenset({"play", "menu", "collect", "record", "monitor", "unhold", "dial"})
HANG_UP = "hang-up"


def exits_of(node: Node) -> dict[str, str | None]:
    """Exit name -> target (None for hang-up) for the coverage report."""
    out: dict[str, str | None] = dict(node.exits())
    if node.is_block and node.kind in HANG_UP_KINDS:
        out[HANG_UP] = None
    return out


@dataclass
class FlowCoverage:
    flow: Flow
    cases: int = 0
    reached: Counter[str] = field(default_factory=Counter)
    taken: Counter[tuple[str, str]] = field(default_factory=Counter)
    other: Counter[tuple[str, str]] = field(default_factory=Counter)  # retries, errors: not exits

    def add(self, path: Iterable[Iterable[str]], nodes_sent: Iterable[str]) -> None:
        self.cases += 1
        self.reached[self.flow.start] += 1
        reached: set[str] = {self.flow.start}
        for pair in path:
            node_id, exit_name = tuple(pair)
            node = self.flow.nodes.get(node_id)
            reached.add(node_id)
            if node is None:
                continue
            exits = exits_of(node)
            if exit_name in exits:
                self.taken[(node_id, exit_name)] += 1
                target = exits[exit_name]
                if target is not None:
                    reached.add(target)
            else:
                self.other[(node_id, exit_name)] += 1
        reached.update(nodes_sent)
        reached.discard(self.flow.start)
        for node_id in reached:
            if node_id in self.flow.nodes:
                self.reached[node_id] += 1

    # -- figures -----------------------------------------------------------------------------------
    def all_exits(self) -> list[tuple[str, str]]:
        return [(node_id, name) for node_id, node in self.flow.nodes.items() for name in exits_of(node)]

    @property
    def missing_nodes(self) -> list[str]:
        return [node_id for node_id in self.flow.nodes if not self.reached[node_id]]

    @property
    def missing_exits(self) -> list[tuple[str, str]]:
        return [pair for pair in self.all_exits() if not self.taken[pair]]

    @property
    def complete(self) -> bool:
        return not self.missing_nodes and not self.missing_exits

    def rows(self) -> list[dict[str, Any]]:
        """One row per exit (one per node without exits), in the flow's order."""
        rows = []
        for node_id, node in self.flow.nodes.items():
            exits = exits_of(node)
            if not exits:
                rows.append({"node": node_id, "type": node.kind, "exit": None, "target": None,
                             "times": self.reached[node_id]})
            for name, target in exits.items():
                rows.append({"node": node_id, "type": node.kind, "exit": name, "target": target,
                             "times": self.taken[(node_id, name)]})
        return rows

    def summary(self) -> dict[str, Any]:
        nodes = len(self.flow.nodes)
        exits = len(self.all_exits())
        return {
            "flow": self.flow.name,
            "file": self.flow.source,
            "cases": self.cases,
            "nodes": {"total": nodes, "exercised": nodes - len(self.missing_nodes), "missing": self.missing_nodes},
            "exits": {"total": exits, "exercised": exits - len(self.missing_exits),
                      "missing": [list(pair) for pair in self.missing_exits]},
            "complete": self.complete,
        }


def compute(calls: Iterable[tuple[Flow, Iterable[Iterable[str]], Iterable[str]]],
            flows: Mapping[str, Flow] = ()) -> dict[str, FlowCoverage]:
    """Coverage per flow name from ``(flow, path, nodes_sent)`` of each replayed call. Every flow in
    ``flows`` is reported even when no call ran on it."""
    report: dict[str, FlowCoverage] = {name: FlowCoverage(flow) for name, flow in dict(flows).items()}
    for flow, path, nodes_sent in calls:
        entry = report.get(flow.name)
        if entry is None or (entry.flow.version != flow.version and not entry.cases):
            entry = report[flow.name] = FlowCoverage(flow)
        entry.add(path, nodes_sent)
    return dict(sorted(report.items()))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part // whole}%" if whole else "-"


def render_text(report: Mapping[str, FlowCoverage], *, gated: Iterable[str] = ()) -> str:
    gated = set(gated)
    lines: list[str] = []
    for name, entry in report.items():
        s = entry.summary()
        mark = "" if entry.complete else ("   << INCOMPLETE" if name in gated else "   (incomplete)")
        nodes, exits = s["nodes"], s["exits"]
        lines.append(
            f"{name} ({entry.flow.source or 'no file'}): {s['cases']} case{'s' if s['cases'] != 1 else ''}, "
            f"nodes {nodes['exercised']}/{nodes['total']} ({_percent(nodes['exercised'], nodes['total'])}), "
            f"exits {exits['exercised']}/{exits['total']} ({_percent(exits['exercised'], exits['total'])}){mark}"
        )
        rows = entry.rows()
        width_node = max([len("node"), *(len(r["node"]) for r in rows)])
        width_type = max([len("type"), *(len(r["type"]) for r in rows)])
        width_exit = max([len("exit"), *(len(r["exit"] or "(reached)") for r in rows)])
        lines.append(f"  {'node':<{width_node}}  {'type':<{width_type}}  {'exit':<{width_exit}}  {'times':>7}  to")
        for r in rows:
            times = str(r["times"]) if r["times"] else "MISSING"
            lines.append(f"  {r['node']:<{width_node}}  {r['type']:<{width_type}}  "
                         f"{(r['exit'] or '(reached)'):<{width_exit}}  {times:>7}  {r['target'] or ''}".rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def to_json(report: Mapping[str, FlowCoverage]) -> dict[str, Any]:
    return {name: {**entry.summary(), "table": entry.rows()} for name, entry in report.items()}
