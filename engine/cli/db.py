"""``ivr db``: create or upgrade the database schema, show its revision.

    ivr db upgrade [--database-url URL] [--revision REV]
    ivr db current [--database-url URL] [--check]

The URL defaults to ``DATABASE_URL`` from the environment, else ``sqlite:///ivr.sqlite3`` in the
working directory. Failures (bad URL, unreachable server, unknown revision) are one line on stderr
and exit status 1, never a traceback.

May import click, engine.storage. Never Flask.
"""

from __future__ import annotations

from pathlib import Path

import click

from engine.storage.errors import StorageError

_URL_HELP = "Database URL (default: $DATABASE_URL, else sqlite:///ivr.sqlite3)."


def _open_url(database_url: str | None):
    from engine.storage.db import default_database_url, normalize_url

    try:
        return normalize_url(database_url or default_database_url())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(name="db")
def command() -> None:
    """Database schema: upgrade it to this version of the engine, or show its revision."""


@command.command()
@click.option("--database-url", metavar="URL", default=None, help=_URL_HELP)
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(database_url: str | None, revision: str) -> None:
    """Create the tables or upgrade them (safe to run again; safe while workers run)."""
    from engine.storage import migrate
    from engine.storage.db import display_url

    url = _open_url(database_url)
    try:
        before = migrate.current_revision(url)
        after = migrate.upgrade(url, revision)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    where = display_url(url)
    if before == after:
        click.echo(f"{where}: already at revision {after}")
    else:
        click.echo(f"{where}: upgraded from {before or '(empty)'} to {after}")


@command.command()
@click.option("--database-url", metavar="URL", default=None, help=_URL_HELP)
@click.option("--check", is_flag=True, help="Exit with status 1 unless the schema is at the head revision.")
def current(database_url: str | None, check: bool) -> None:
    """Show the schema revision of the database and whether it is up to date."""
    from engine.storage import migrate
    from engine.storage.db import display_url

    url = _open_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        click.echo(f"{display_url(url)}: no such file (run `ivr db upgrade` to create it)")
        if check:
            raise SystemExit(1)
        return
    try:
        revision = migrate.current_revision(url)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    head = migrate.head_revision()
    if revision == head:
        state = "up to date"
    elif revision is None:
        state = f"empty: run `ivr db upgrade` (head is {head})"
    else:
        state = f"not at head {head}: run `ivr db upgrade`"
    click.echo(f"{display_url(url)}: {revision or '(none)'} ({state})")
    if check and revision != head:
        raise SystemExit(1)
