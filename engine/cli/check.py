"""``ivr check``: check flow files and report every problem as ``file:line:col: severity: message``.

Exit status 0 when there are no errors (warnings allowed), 1 when there is at least one. Never a
traceback for a bad flow or a missing file: those are findings like any other.

May import click and ``engine.flowfile``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from engine.flowfile import check_paths
from engine.flowfile.api import flow_files

DEFAULT_FOLDER = "flows"


def _count(paths: tuple[str, ...]) -> int:
    total = 0
    for path in paths:
        if Path(path).is_dir():
            total += len(flow_files(path))
        elif Path(path).is_file():
            total += 1
    return total


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one line per problem and a summary; json: a list of finding objects.")
def command(paths: tuple[str, ...], output_format: str) -> None:
    """Check flow files (or folders of them) for mistakes.

    Without PATH, checks the folder named by IVR_FLOWS (default: flows/).
    """
    if not paths:
        paths = (os.environ.get("IVR_FLOWS") or DEFAULT_FOLDER,)
    findings = check_paths(paths)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    if output_format == "json":
        click.echo(json.dumps([f.to_dict() for f in findings], indent=2, ensure_ascii=False))
    else:
        for finding in findings:
            click.echo(str(finding))
        click.echo(f"{_plural(_count(paths), 'flow')} checked: {_plural(errors, 'error')}, "
                   f"{_plural(warnings, 'warning')}")
    click.get_current_context().exit(1 if errors else 0)
