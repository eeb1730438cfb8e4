"""``ivr sessions``: look at and look after stored calls.

``ivr sessions list`` (recent calls), ``ivr sessions show SESSION`` (a readable timeline in the
terminal: each notification and each block with timing and Hoiio's answer, billing at the end) and
``ivr sessions prune --older-than 30d`` (retention).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from urllib.parse import parse_qsl

import click

from engine.observability import mask_number

_DURATION = re.compile(r"^(\d+)([dhm])$")


def _database(url: str | None):
    from engine.storage import Database

    return Database.open(url or os.environ.get("DATABASE_URL") or "sqlite:///ivr.sqlite3")


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise click.BadParameter("use a number followed by d (days), h (hours) or m (minutes), e.g. 30d")
    amount, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]


@click.group("sessions")
def command() -> None:
    """List, show and prune stored calls."""


_db_option = click.option("--database-url", envvar="DATABASE_URL", help="Defaults to DATABASE_URL or ivr.sqlite3.")


@command.command("list")
@_db_option
@click.option("--limit", default=20, show_default=True)
@click.option("--status", type=click.Choice(["active", "ended"]), default=None)
def list_calls(database_url: str | None, limit: int, status: str | None) -> None:
    """Most recently started calls first; with --status ended, most recently ended first."""
    db = _database(database_url)
    try:
        for call in db.list_calls(limit=limit, status=status):
            who = mask_number(call.caller or call.dest) or "-"
            click.echo(f"{call.session:<24} {call.flow:<22} {call.status:<7} {call.node or '-':<16} "
                       f"{who:<14} {call.outcome or ''}")
    finally:
        db.close()


def _fields(body: bytes | str | None) -> dict[str, str]:
    if not body:
        return {}
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return dict(parse_qsl(text, keep_blank_values=True))


def render_timeline(call, entries) -> list[str]:
    sensitive = set(call.state.get("sensitive", [])) if call else set()
    lines = []
    if call:
        lines.append(f"Call {call.session}  flow {call.flow} (version {call.flow_version})  {call.direction}")
        lines.append(f"  from {mask_number(call.caller) or '-'} to {mask_number(call.called or call.dest) or '-'}"
                     f"  status {call.status}  outcome {call.outcome or '-'}")
    start = entries[0].at if entries else None
    for entry in entries:
        offset = f"+{(entry.at - start).total_seconds():6.2f}s" if start else ""
        row = entry.row
        if entry.kind == "notification":
            fields = _fields(row.body)
            what = fields.get("ivr_block") or "?"
            extra = []
            if "digits" in fields:
                digits = fields["digits"]
                extra.append("digits " + ("***" if sensitive and digits else repr(digits)))
            for name in ("call_state", "transfer_status", "dial_status", "record_url"):
                if fields.get(name):
                    extra.append(f"{name} {fields[name]}")
            lines.append(f"{offset}  ← {what:<9} {', '.join(extra)}   [{row.outcome or 'unfinished'}]"
                         + (f" {row.reason}" if row.reason else ""))
        elif entry.kind == "block":
            params = dict(row.params or {})
            msg = params.get("msg")
            detail = f' "{msg[:70]}"' if msg else ""
            if params.get("dest"):
                detail += f" to {params['dest']}"
            timing = f" {row.duration_ms} ms" if row.duration_ms is not None else ""
            lines.append(f"{offset}  → {row.endpoint:<20}{detail}   [{row.status}: {row.provider_status or '-'}"
                         f"{timing}]")
        else:
            lines.append(f"{offset}  ⇄ {row.kind} {row.status}")
    if call and call.billing:
        b = call.billing
        lines.append(f"Billing: {b.get('duration', '?')} min at {b.get('rate', '?')} {b.get('currency', '')}/min, "
                     f"debit {b.get('debit', '?')} {b.get('currency', '')}")
    return lines


@command.command("show")
@click.argument("session")
@_db_option
def show(session: str, database_url: str | None) -> None:
    """A readable timeline of one call."""
    db = _database(database_url)
    try:
        call = db.get_call(session)
        entries = db.timeline(session)
        if call is None and not entries:
            raise click.ClickException(f"no call with session {session!r} is stored")
        for line in render_timeline(call, entries):
            click.echo(line)
    finally:
        db.close()


@command.command("prune")
@click.option("--older-than", "older_than", required=True, help="e.g. 30d, 12h")
@_db_option
def prune(older_than: str, database_url: str | None) -> None:
    """Delete calls, notifications and blocks older than the retention period."""
    period = parse_duration(older_than)
    db = _database(database_url)
    try:
        counts = db.prune(period)
    finally:
        db.close()
    click.echo("Deleted " + ", ".join(f"{n} {table}" for table, n in counts.items()))
