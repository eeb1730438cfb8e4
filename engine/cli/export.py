"""``ivr export``: print a stored call as a replay case.

    ivr export SESSION [--database-url URL] [--flows DIR] [--output FILE]

The case holds every notification of the call as Hoiio posted it and, as expectations, the blocks
the engine sent after each; ``ivr replay`` plays it back. The URL defaults to ``DATABASE_URL``, else
``sqlite:///ivr.sqlite3``. The database is only read. Exit status 1 (one line on stderr) when the
call or the database cannot be found.

May import click, ``engine.replay.export`` and ``engine.storage``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from engine.replay.export import ExportError, export_text
from engine.storage.errors import StorageError


def _open(database_url: str | None):
    from engine.storage.db import Database, default_database_url, display_url, normalize_url

    url = normalize_url(database_url or default_database_url())
    in_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if in_file and not Path(url.database).is_file():
        raise click.ClickException(f"there is no database at {display_url(url)}")
    return Database.open(url, auto_migrate_sqlite=False)


@click.command("export")
@click.argument("session")
@click.option("--database-url", metavar="URL", default=None,
              help="Database URL (default: $DATABASE_URL, else sqlite:///ivr.sqlite3).")
@click.option("--flows", "flows_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of flows, used when the database has no copy of the call's flow version "
                   "(default: $IVR_FLOWS, else flows/).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the case to this file instead of printing it.")
def command(session: str, database_url: str | None, flows_dir: Path | None, output: Path | None) -> None:
    """Print the stored call SESSION as a replay case (YAML)."""
    folder = flows_dir or Path(os.environ.get("IVR_FLOWS") or "flows")
    try:
        db = _open(database_url)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        text = export_text(db, session, flows_dir=folder)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.close()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
