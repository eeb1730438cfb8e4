"""Findings: what ``ivr check`` reports about a flow file.

A finding is one problem at one place (``file:line:col``), an error (the flow cannot be used) or a
warning (it can, but something looks wrong). Every stage of flow reading (YAML, schema, compiler,
semantic checks) reports through this one type. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based; 0 when the problem is about the file as a whole (e.g. it does not exist)
    col: int  # 1-based; 0 as for ``line``
    severity: Severity
    message: str
    node: str | None = None  # the flow node concerned, when there is one
    code: str = ""  # short stable identifier such as "missing-target", for tools and tests

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """File order, then position; errors before warnings at the same place."""
    return sorted(findings, key=lambda f: (f.file, f.line, f.col, f.severity != "error", f.message))
