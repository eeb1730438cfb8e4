"""``ivr reload``: ask every running server to reload the flows folder.

Touches the reload stamp (``<IVR_FLOWS>/.reload``, or ``IVR_RELOAD_STAMP``); each worker notices
within a second, re-checks every flow and swaps in the ones that pass. A flow that fails keeps its
running version. Checks the folder first and prints what the servers will report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click


@click.command("reload")
@click.option("--flows", "flows_dir", envvar="IVR_FLOWS", default="flows", show_default=True,
              help="The flows folder the servers run (IVR_FLOWS).")
def command(flows_dir: str) -> None:
    """Reload the flows of running servers without a restart."""
    from engine.flowfile import check_paths

    folder = Path(flows_dir)
    if not folder.is_dir():
        raise click.ClickException(f"the flows folder {flows_dir!r} does not exist")
    findings = check_paths([folder])
    errors = [f for f in findings if f.severity == "error"]
    for finding in errors:
        click.echo(str(finding), err=True)
    stamp = Path(os.environ.get("IVR_RELOAD_STAMP") or folder / ".reload")
    stamp.write_text(f"{time.time()}\n")
    if errors:
        click.echo(f"Reload requested; {len(errors)} error(s): flows with errors keep their running version.")
        raise SystemExit(1)
    click.echo("Reload requested: every server picks up the new flows within a second.")
