"""The loaded flows: current version of each flow, every version a call may still be running on,
and which Hoiio number leads to which flow.

Flows are checked once when loaded (start-up or reload), never per request. A reload in which a
flow fails its checks keeps the running version of that flow and remembers the errors, so that
readiness and the dashboard can show them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.flow import Flow
from engine.flowfile import Finding, load_flows


class FlowLoadError(Exception):
    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        errors = [f for f in findings if f.severity == "error"]
        first = str(errors[0]) if errors else "no flows found"
        more = f" (and {len(errors) - 1} more problems; run `ivr check`)" if len(errors) > 1 else ""
        super().__init__(f"invalid flow: {first}{more}")


@dataclass
class FlowRegistry:
    folder: Path
    current: dict[str, Flow] = field(default_factory=dict)
    versions: dict[tuple[str, str], Flow] = field(default_factory=dict)
    by_number: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    reloads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, folder: Path | str, *, strict: bool = True) -> FlowRegistry:
        registry = cls(Path(folder))
        problems = registry.reload()
        if strict and problems:
            raise FlowLoadError(registry.findings)
        return registry

    def reload(self) -> list[Finding]:
        """Load every flow in the folder. Returns the errors; flows with errors keep their old version."""
        flows, findings = load_flows(self.folder)
        errors = [f for f in findings if f.severity == "error"]
        with self._lock:
            current = dict(self.current)
            current.update(flows)
            by_number: dict[str, str] = {}
            for name, flow in sorted(current.items()):
                for number in flow.numbers:
                    by_number.setdefault(number, name)
            for flow in flows.values():
                self.versions[(flow.name, flow.version)] = flow
            self.current = current
            self.by_number = by_number
            self.findings = findings
            self.reloads += 1
        return errors

    def get(self, name: str, version: str | None = None) -> Flow | None:
        if version is not None:
            flow = self.versions.get((name, version))
            if flow is not None:
                return flow
        return self.current.get(name)

    def for_number(self, number: str | None) -> Flow | None:
        if not number:
            return None
        name = self.by_number.get(number)
        return self.current.get(name) if name else None

    def add(self, flow: Flow) -> None:
        """Register a compiled flow (a stored older version re-compiled for an in-flight call)."""
        with self._lock:
            self.versions[(flow.name, flow.version)] = flow

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]
