"""``ivr replay``: play replay cases through the real engine and compare what it sends.

    ivr replay CASE_OR_FOLDER... [--flow FILE] [--flows DIR] [--update] [--coverage] [--format text|json]

Each case prints PASS, FAIL (with a unified diff per step that sent something else), UPDATED
(``--update`` rewrote its expectations) or ERROR (unreadable case, unknown flow). ``--flow FILE``
plays the cases against a changed copy of their flow, to see what those calls would do now.
``--coverage`` adds, per flow, which nodes and exits the cases exercised.

Exit status: 0 when every case passed (or was updated) and, with ``--coverage``, every node and exit
of every flow in the flows folder (``--flows``, else ``IVR_FLOWS``, else ``flows/``) was exercised;
1 otherwise; 2 for a usage error.

May import click and ``engine.replay`` (with ``engine.registry`` for its load error).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import click

from engine.registry import FlowLoadError
from engine.replay import coverage as coverage_report
from engine.replay.case import Case, CaseError, case_files, load_case
from engine.replay.harness import CaseResult, Replayer, write_update

DEFAULT_FOLDER = "flows"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _flow_name(flow_file: Path, cases: list[Case], known: set[str]) -> str:
    """Which flow ``--flow FILE`` stands in for: the one named like the file, else the only flow the
    cases use."""
    used = {case.flow for case in cases}
    if flow_file.stem in known or flow_file.stem in used:
        return flow_file.stem
    if len(used) == 1:
        return next(iter(used))
    raise click.UsageError(
        f"--flow {flow_file}: the file name does not name a flow and the cases use several flows "
        f"({', '.join(sorted(used))}); name the file after the flow it replaces or replay one flow's cases"
    )


@click.command("replay")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--flow", "flow_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Replay against this (changed) flow file instead of the flow in the flows folder.")
@click.option("--flows", "flows_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of flows (default: $IVR_FLOWS, else flows/).")
@click.option("--update", is_flag=True, help="Rewrite each case's expectations with what the engine sends now.")
@click.option("--coverage", "with_coverage", is_flag=True,
              help="Report which nodes and exits of each flow the cases exercised; fail on gaps.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(paths: tuple[str, ...], flow_file: Path | None, flows_dir: Path | None, update: bool,
            with_coverage: bool, output_format: str) -> None:
    """Replay recorded or hand-written calls (case files, or folders of them) through the engine."""
    folder = flows_dir or Path(os.environ.get("IVR_FLOWS") or DEFAULT_FOLDER)
    if not folder.is_dir():
        raise click.UsageError(f"the flows folder {str(folder)!r} does not exist (use --flows or IVR_FLOWS)")
    files = case_files(paths)
    if not files:
        raise click.UsageError(f"no case files (*.yaml) in {', '.join(paths)}")
    if flow_file is not None and not flow_file.is_file():
        raise click.UsageError(f"--flow {flow_file}: no such file")

    entries: list[Case | CaseResult] = []  # in the order given; a CaseResult for an unreadable file
    for file in files:
        try:
            entries.append(load_case(file))
        except CaseError as exc:
            entries.append(CaseResult(case=Case(flow="?", now=_EPOCH, steps=[], path=file), error=str(exc)))
    loaded = [entry for entry in entries if isinstance(entry, Case)]
    results: list[CaseResult] = []
    try:
        replayer = Replayer(folder)
    except FlowLoadError as exc:
        raise click.ClickException(f"the flows in {folder} do not load: {exc}") from None
    text = output_format == "text"
    with replayer:
        if flow_file is not None:
            name = _flow_name(flow_file, loaded, set(replayer.registry.current))
            try:
                replayer.replace_flow(name, flow_file)
            except FlowLoadError as exc:
                raise click.ClickException(f"--flow {flow_file}: {exc}") from None
            if text:
                click.echo(f"replaying against {flow_file} in place of flow {name!r}")
        for entry in entries:
            result = entry if isinstance(entry, CaseResult) else replayer.run(entry)
            if update and result.error is None:
                write_update(result)
            results.append(result)
            if text:
                click.echo(result.report())
        gated = {name: replayer.registry.current[name] for name in replayer.registry.current}
        calls = [(r.flow, r.call["path"], r.nodes_sent) for r in results if r.flow is not None and r.call]
        report = coverage_report.compute(calls, gated) if with_coverage else {}

    counts = {status: sum(1 for r in results if r.status == status) for status in ("PASS", "FAIL", "UPDATED", "ERROR")}
    incomplete = sorted(name for name in gated if with_coverage and not report[name].complete)
    failed = counts["FAIL"] + counts["ERROR"] > 0 or bool(incomplete)
    if text:
        if with_coverage:
            click.echo("")
            click.echo(coverage_report.render_text(report, gated=gated), nl=False)
            if incomplete:
                click.echo(f"coverage: not every node and exit exercised in {', '.join(incomplete)} "
                           f"(flows in {folder})")
        summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
        click.echo(f"{len(results)} case{'s' if len(results) != 1 else ''}: {summary}")
    else:
        payload = {
            "cases": [r.to_dict() for r in results],
            "summary": {k.lower(): v for k, v in counts.items()},
            "ok": not failed,
        }
        if with_coverage:
            payload["coverage"] = coverage_report.to_json(report)
            payload["coverage_complete"] = not incomplete
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    click.get_current_context().exit(1 if failed else 0)

