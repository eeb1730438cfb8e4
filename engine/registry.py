"""The loaded flows: current version of each flow, every version a call may still be running on,
and which Hoiio number leads to which flow.

Flows are checked once when loaded (start-up or reload), never per request. A reload in which a
flow fails its checks keeps the running version of that flow and remembers the errors, so that
readiness and the dashboard can show them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.core.flow import Flow
from engine.flowfile import Finding, load_flows
from engine.flowfile.api import compile_source

StoredVersions = Callable[[str], list[dict]]


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
    def load(cls, folder: Path | str, *, strict: bool = True, stored: StoredVersions | None = None) -> FlowRegistry:
        """Load the folder. A flow with errors is an error at start-up, unless ``stored`` can give
        the last good version of that flow (a restart after a bad edit keeps serving it; the
        errors stay visible on /readyz)."""
        registry = cls(Path(folder))
        registry.reload()
        failing = registry.failing_flows()
        if failing and stored is not None:
            for name in sorted(failing):
                flow = registry.recompile_latest(name, stored)
                if flow is not None:
                    failing.discard(name)
        if strict and failing:
            raise FlowLoadError(registry.findings)
        return registry

    def failing_flows(self) -> set[str]:
        return {Path(f.file).stem for f in self.errors if Path(f.file).stem not in self.current}

    def recompile_latest(self, name: str, stored: StoredVersions) -> Flow | None:
        for entry in stored(name):
            flow = self.compile_stored(name, entry["version"], entry["source"])
            if flow is not None:
                with self._lock:
                    self.current[name] = flow
                    for number in flow.numbers:
                        self.by_number.setdefault(number, name)
                return flow
        return None

    def compile_stored(self, name: str, version: str, source: str) -> Flow | None:
        """Compile a stored version (an in-flight call's, after a restart or a change)."""
        if not source:
            return None
        flow, findings = compile_source(source, str(self.folder / f"{name}.yaml"), name=name)
        if flow is None:
            return None
        flow = replace(flow, version=version)
        self.add(flow)
        return flow

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
