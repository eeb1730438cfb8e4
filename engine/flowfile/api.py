"""Reading flows: the stages in order, for one file, a folder, or what ``ivr check`` is given.

    bytes --loader--> Document --schema--> findings --compiler--> Flow + SourceMap --checks--> findings

A flow is returned only when no stage found an error. Later stages run even after earlier errors
(so one run shows as much as possible) but their findings at a place an earlier stage already
reported are dropped: a value that YAML cannot read is reported once, not again as a wrong type.

May import ``engine.core`` and the rest of ``engine.flowfile``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from engine.core.flow import Flow
from engine.flowfile import checks, compiler, schema
from engine.flowfile.findings import Finding, has_errors, sort_findings
from engine.flowfile.limits import FLOW_NAME_RE
from engine.flowfile.loader import load_document

FLOW_SUFFIXES = (".yaml", ".yml")


def flow_version(source: bytes) -> str:
    """The version of a flow: the first 12 hex digits of the SHA-256 of its file."""
    return hashlib.sha256(source).hexdigest()[:12]


def compile_source(source: bytes | str, file: str, *, name: str | None = None) -> tuple[Flow | None, list[Finding]]:
    """Compile flow source (as stored on disk). ``file`` is used in findings and as ``Flow.source``;
    ``name`` defaults to the file name without its extension."""
    raw = source.encode("utf-8") if isinstance(source, str) else source
    flow_name = name if name is not None else Path(file).stem
    findings: list[Finding] = []
    if not FLOW_NAME_RE.fullmatch(flow_name):
        findings.append(Finding(file, 0, 0, "error", f"the flow name '{flow_name}' (from the file name) can be "
                                "used in addresses only if it has letters, digits, - and _ (up to 64); rename "
                                "the file", code="flow-name"))
    doc = load_document(raw, file)
    findings.extend(doc.findings)
    if doc.fatal:
        return None, sort_findings(findings)
    try:
        schema_findings, schema_paths = schema.validate(doc)
        _add_new(findings, schema_findings)
        if not isinstance(doc.data, dict):
            return None, sort_findings(findings)
        flow, source_map, compile_findings = compiler.compile_document(
            doc, schema_paths, name=flow_name, version=flow_version(raw), source=file
        )
        _add_new(findings, compile_findings + checks.check_flow(flow, source_map))
    except Exception as exc:  # a checker bug must still give the author a finding, never a traceback
        findings.append(Finding(file, 1, 1, "error", f"the flow checker failed on this file ({type(exc).__name__}: "
                                f"{exc}); please report it with the file", code="internal"))
        return None, sort_findings(findings)
    findings = sort_findings(findings)
    return (None if has_errors(findings) else flow), findings


def _add_new(findings: list[Finding], later: list[Finding]) -> None:
    """Add a later stage's findings, except at places where an earlier stage found an error."""
    reported = {(f.line, f.col) for f in findings if f.is_error}
    findings.extend(f for f in later if (f.line, f.col) not in reported)


def load_flow(path: str | os.PathLike[str]) -> tuple[Flow | None, list[Finding]]:
    """Read and check one flow file. The flow is None when there is any error."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None, [Finding(file, 0, 0, "error", "no such file", code="file-not-found")]
    except IsADirectoryError:
        return None, [Finding(file, 0, 0, "error", "this is a folder, not a flow file", code="file-not-found")]
    except OSError as exc:
        return None, [Finding(file, 0, 0, "error", f"can't read the file: {exc.strerror or exc}",
                              code="file-unreadable")]
    return compile_source(raw, file)


def flow_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The flow files in a folder (not its sub-folders), in name order."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix in FLOW_SUFFIXES and not p.name.startswith(".") and p.is_file())


def load_flows(folder: str | os.PathLike[str]) -> tuple[dict[str, Flow], list[Finding]]:
    """Read and check every flow in a folder: the flows without errors (by name), and all findings,
    including problems between flows (two flows claiming one Hoiio number, two files with one name)."""
    base = Path(folder)
    if not base.is_dir():
        reason = "no such folder" if not base.exists() else "this is a file, not a folder of flows"
        return {}, [Finding(str(folder), 0, 0, "error", reason, code="folder-not-found")]
    flows: dict[str, Flow] = {}
    findings: list[Finding] = []
    files_by_name: dict[str, str] = {}
    owners: dict[str, tuple[str, str]] = {}  # number -> (flow, file)
    files = flow_files(base)
    if not files:
        findings.append(Finding(str(folder), 0, 0, "warning", "no flow files (*.yaml) in this folder",
                                code="no-flows"))
    for path in files:
        flow, found = load_flow(path)
        findings.extend(found)
        if path.stem in files_by_name:
            findings.append(Finding(str(path), 0, 0, "error", f"another file ({files_by_name[path.stem]}) already "
                                    f"defines the flow '{path.stem}'; keep only one", code="duplicate-flow"))
            continue
        files_by_name[path.stem] = str(path)
        if flow is None:
            continue
        clash = False
        for number in flow.numbers:
            if number in owners:
                other, _ = owners[number]
                findings.append(Finding(str(path), *_number_position(path, number), "error",
                                        f"{number} already runs the flow '{other}'; a Hoiio number can run only "
                                        "one flow", code="duplicate-number"))
                clash = True
        if clash:
            continue
        for number in flow.numbers:
            owners[number] = (flow.name, str(path))
        flows[flow.name] = flow
    return flows, findings


def _number_position(path: Path, number: str) -> tuple[int, int]:
    """Where a number is written (re-read only for this rare error)."""
    doc = load_document(path.read_bytes(), str(path))
    numbers = doc.data.get("numbers") if isinstance(doc.data, dict) else None
    for index, value in enumerate(numbers or []):
        if value == number:
            return doc.pos(("numbers", index))
    return doc.pos(("numbers",))


def check_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Finding]:
    """Findings for files and folders (each folder's flows checked together), in order."""
    findings: list[Finding] = []
    for path in paths:
        if Path(path).is_dir():
            findings.extend(load_flows(path)[1])
        else:
            findings.extend(load_flow(path)[1])
    return findings

