"""Finding and loading the flow an authoring command was given.

``FLOW`` on the command line is a file path, or the name of a flow in the flows folder (``IVR_FLOWS``,
default ``flows/``): ``auto_attendant``, ``auto_attendant.yaml`` and ``flows/auto_attendant.yaml``
all name the same file. A flow with errors is never returned: ``FlowProblem`` carries the checker's
findings, which the commands print (no traceback) before exiting with status 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from engine.core.flow import Flow
from engine.flowfile import Finding, load_flow
from engine.flowfile.api import FLOW_SUFFIXES

DEFAULT_FOLDER = "flows"


class FlowProblem(Exception):
    """The flow cannot be used: it was not found, or the checker found errors (``findings``)."""

    def __init__(self, message: str, findings: list[Finding] | None = None) -> None:
        super().__init__(message)
        self.findings = list(findings or [])


def flows_folder(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path((env.get("IVR_FLOWS") or "").strip() or DEFAULT_FOLDER)


def resolve_flow(spec: str, env: Mapping[str, str] | None = None) -> Path:
    """The file a ``FLOW`` argument names: an existing path, else ``<flows folder>/<name>.yaml``."""
    given = Path(spec)
    if given.is_file():
        return given
    for suffix in FLOW_SUFFIXES:
        if given.suffix != suffix and given.with_name(given.name + suffix).is_file():
            return given.with_name(given.name + suffix)
    folder = flows_folder(env)
    name = given.name
    for suffix in FLOW_SUFFIXES:
        name = name.removesuffix(suffix)
    if given.parent == Path(".") and name:
        for suffix in FLOW_SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    if given.is_dir():
        raise FlowProblem(f"{spec} is a folder: name one flow file in it")
    raise FlowProblem(f"no flow {spec!r}: there is no such file, and no {name or spec}.yaml in {folder}/")


def load_checked(path: Path) -> tuple[Flow, list[Finding]]:
    """The compiled flow and its warnings; ``FlowProblem`` with every finding when it has errors."""
    flow, findings = load_flow(path)
    if flow is None:
        errors = sum(1 for f in findings if f.is_error)
        raise FlowProblem(f"{path}: {errors} error{'' if errors == 1 else 's'}; fix {'it' if errors == 1 else 'them'} "
                          f"and try again (`ivr check {path}` shows the same list)", findings)
    return flow, findings


def declared_inputs(path: Path) -> list[str]:
    """The ``inputs:`` list of a flow file (variables supplied when an outbound call is placed).
    The compiled model does not keep it; the file has already passed the checker here."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []
    inputs = data.get("inputs") if isinstance(data, dict) else None
    return [str(name) for name in inputs] if isinstance(inputs, list) else []
