"""``ivr graph FLOW``: draw a flow (Mermaid, Graphviz dot source, SVG or PNG).

SVG and PNG need Graphviz's ``dot`` program (the ``graphviz`` system package); Mermaid and dot
source do not. See ``engine.authoring.graph``.
"""

from __future__ import annotations

from pathlib import Path

import click

from engine.authoring.flows import FlowProblem, load_checked, resolve_flow
from engine.authoring.graph import FORMATS, SUFFIXES, TEXT_FORMATS, GraphvizFailed, GraphvizMissing, draw


@click.command("graph")
@click.argument("flow_spec", metavar="FLOW")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="mermaid (text for Markdown), dot (Graphviz source), svg or png (need Graphviz). "
              "Default: from the -o file's extension, else mermaid.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write to this file (required for png). Default: standard output.")
@click.option("--direction", type=click.Choice(["TB", "LR"]), default="TB", show_default=True,
              help="Top to bottom, or left to right.")
def command(flow_spec: str, fmt: str | None, output: Path | None, direction: str) -> None:
    """Draw FLOW: every node (shape and colour by kind) and every way out of it.

    FLOW is a flow file, or the name of a flow in the flows folder (IVR_FLOWS, default flows/).
    The error handler is marked, and nodes nothing leads to are grey and marked "unreachable".

    \b
    Examples:
      ivr graph auto_attendant                      # Mermaid, to paste into Markdown
      ivr graph auto_attendant -o auto_attendant.svg
      ivr graph flows/small_business.yaml --format png -o small_business.png
    """
    if fmt is None:
        fmt = SUFFIXES.get(output.suffix.lower(), "mermaid") if output is not None else "mermaid"
    if fmt not in TEXT_FORMATS and output is None:
        raise click.UsageError(f"{fmt} is a picture, not text: give a file with -o, e.g. -o flow.{fmt}")
    try:
        path = resolve_flow(flow_spec)
        flow, _warnings = load_checked(path)
    except FlowProblem as problem:
        for finding in problem.findings:
            click.echo(str(finding), err=True)
        raise click.ClickException(str(problem)) from None
    try:
        data = draw(flow, fmt, direction)
    except (GraphvizMissing, GraphvizFailed) as exc:
        raise click.ClickException(str(exc)) from None
    if output is None:
        click.echo(data.decode("utf-8"), nl=False)
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"{output}: {fmt} diagram of {flow.name} ({len(flow.nodes)} nodes)", err=True)
