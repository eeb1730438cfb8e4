"""``ivr versions``: the stored versions of a flow, and what changed between two of them.

    ivr versions FLOW [--database-url URL]
    ivr versions FLOW --diff OLD NEW [--database-url URL]

Every version a server has loaded is kept in the database (content hash, first load time, source).
``OLD``/``NEW`` are version hashes or unique prefixes of them, or ``latest`` / ``previous``. The
diff is semantic (``engine.authoring.versions``): "main_menu: key 3 now goes to billing (was sales)",
"the welcome prompt changed from ... to ...". The database is only read. Exit status 1 (one line
on stderr) when the flow, a version or the database cannot be found.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from engine.authoring.versions import VersionError, diff_sources, find_version
from engine.storage.errors import StorageError


def _open(database_url: str | None):
    from engine.storage.db import Database, default_database_url, display_url, normalize_url

    url = normalize_url(database_url or default_database_url())
    in_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if in_file and not Path(url.database).is_file():
        raise click.ClickException(f"there is no database at {display_url(url)}")
    return Database.open(url, auto_migrate_sqlite=False)


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command("versions")
@click.argument("flow")
@click.option("--diff", "diff", nargs=2, metavar="OLD NEW", default=None,
              help="Show what changed from version OLD to version NEW (hashes, prefixes, latest, previous).")
@click.option("--database-url", metavar="URL", envvar="DATABASE_URL", default=None,
              help="Database URL (default: $DATABASE_URL, else sqlite:///ivr.sqlite3).")
def command(flow: str, diff: tuple[str, str] | None, database_url: str | None) -> None:
    """List the stored versions of FLOW, or compare two of them."""
    name = Path(flow).stem if flow.endswith((".yaml", ".yml")) else flow
    try:
        db = _open(database_url)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        entries = db.flow_versions(name)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.close()
    if not entries:
        raise click.ClickException(f"no stored versions of flow {name!r} (a server stores each version it loads)")
    try:
        if diff:
            _print_diff(name, entries, *diff)
        else:
            _print_list(name, entries)
    except VersionError as exc:
        raise click.ClickException(str(exc)) from None


def _print_list(name: str, entries: list[dict]) -> None:
    click.echo(f"Versions of flow {name}, newest first:")
    for index, entry in enumerate(entries):
        note = "latest" if index == 0 else ""
        if index + 1 < len(entries):
            older = entries[index + 1]
            try:
                count = len(diff_sources(older["source"], entry["source"], name,
                                         old_version=older["version"], new_version=entry["version"]))
                note = (note + ", " if note else "") + (
                    f"{count} change(s) since {older['version']}" if count else f"same behaviour as {older['version']}")
            except VersionError:
                note = (note + ", " if note else "") + "cannot compare with the one before"
        click.echo(f"  {entry['version']}  {_when(entry['loaded_at'])}  {note}".rstrip())
    if len(entries) > 1:
        click.echo(f"Compare two: ivr versions {name} --diff {entries[1]['version']} {entries[0]['version']}")


def _print_diff(name: str, entries: list[dict], old_ref: str, new_ref: str) -> None:
    old, new = find_version(entries, old_ref), find_version(entries, new_ref)
    changes = diff_sources(old["source"], new["source"], name, old_version=old["version"],
                           new_version=new["version"])
    click.echo(f"Flow {name}: {old['version']} ({_when(old['loaded_at'])}) -> "
               f"{new['version']} ({_when(new['loaded_at'])})")
    if not changes:
        click.echo("  no change in behaviour (only layout or comments differ)"
                   if old["version"] != new["version"] else "  the same version")
        return
    for change in changes:
        click.echo(f"  - {change.text}")
