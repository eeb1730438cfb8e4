"""``ivr try FLOW``: place a pretend call on a flow in the terminal, through the real engine.

The engine runs as it does in production (webhooks, signatures, database, Hoiio client) against the
built-in fake Hoiio, all on 127.0.0.1 and a temporary SQLite file; nothing reaches the real Hoiio,
and a flow's ``http`` steps are answered here unless ``--real-http`` is given. See
``engine.authoring.simulator`` for how, ``engine.authoring.console`` for what is shown.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from engine.authoring.console import TRANSFER_ANSWERS, Console
from engine.authoring.flows import FlowProblem, declared_inputs, load_checked, resolve_flow
from engine.authoring.simulator import (
    DEFAULT_CALLER,
    DIAL_OUTCOMES,
    Clock,
    HttpStub,
    Simulation,
)
from engine.core.flow import Flow, Hours
from engine.flowfile.limits import PHONE_RE

_KEYS = set("0123456789*#")


def _parse_keys(value: str | None) -> list[str | None] | None:
    if value is None:
        return None
    keys: list[str | None] = []
    for item in value.split(","):
        item = item.strip()
        if any(c not in _KEYS for c in item):
            raise click.BadParameter(f"{item!r}: keys are 0-9, * and #; separate the answers with commas "
                                     "(an empty answer is silence), e.g. --keys 1,,2#", param_hint="--keys")
        keys.append(item or None)
    return keys


def _parse_transfers(value: str | None) -> list[str]:
    out: list[str] = []
    for item in (value or "").split(","):
        item = item.strip().lower().replace("-", " ").replace("_", " ")
        if not item:
            continue
        outcome = TRANSFER_ANSWERS.get(item)
        if outcome is None:
            raise click.BadParameter(f"{item!r}: use answered, busy, no-answer or failed (commas between "
                                     "several transfers)", param_hint="--transfer")
        out.append(outcome)
    return out


def _parse_vars(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not name=value", param_hint="--var")
        out[name.strip()] = value
    return out


def _phone(value: str, option: str, *, private_ok: bool = False) -> str:
    value = value.strip()
    if (private_ok and value == "private") or PHONE_RE.fullmatch(value):
        return value
    raise click.BadParameter(f"{value!r} is not a phone number: + and 8 to 15 digits, e.g. +6591234567",
                             param_hint=option)


def _flow_zone(flow: Flow) -> str | None:
    return next((n.timezone for n in flow.nodes.values() if isinstance(n, Hours)), None)


def _clock(flow: Flow, at: str | None, tz: str | None) -> tuple[Clock, str | None]:
    if at is None:
        if tz is not None:
            raise click.BadParameter("--tz goes with --at (the date and time to pretend it is)", param_hint="--tz")
        return Clock(), None
    try:
        when = datetime.fromisoformat(at.strip())
    except ValueError:
        raise click.BadParameter(f"{at!r}: write the date and time as \"2026-12-25 09:00\"",
                                 param_hint="--at") from None
    zone_name = tz or _flow_zone(flow)
    zone: tzinfo | None
    if when.tzinfo is not None:
        zone, zone_name = when.tzinfo, str(when.tzinfo)
    elif zone_name:
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise click.BadParameter(f"{zone_name!r} is not a time zone; use a name such as Asia/Singapore",
                                     param_hint="--tz") from None
        when = when.replace(tzinfo=zone)
    else:
        when = when.astimezone()  # this computer's time zone
        zone_name = when.tzname()
    return Clock(when), f"{when:%a %d %b %Y %H:%M} {zone_name}"


@click.command("try")
@click.argument("flow_spec", metavar="FLOW")
@click.option("--caller", default=DEFAULT_CALLER, show_default=True, help="The number the pretend caller calls from.")
@click.option("--to", "to", help="Outbound flows: the number the engine calls. Inbound flows: the Hoiio number "
              "called (default: the flow's first number).")
@click.option("--at", "at", metavar="'YYYY-MM-DD HH:MM'", help="Pretend it is this date and time (business hours, "
              "holidays).")
@click.option("--tz", help="Time zone of --at (default: the flow's hours time zone, else this computer's).")
@click.option("--keys", help="Answers for the menus and digit prompts, in order, separated by commas; an empty "
              "answer is silence. No questions are asked; when the answers run out the caller hangs up.")
@click.option("--transfer", "transfer", help="How transfers end, in order: answered, busy, no-answer or failed "
              "(commas between several).")
@click.option("--dial", type=click.Choice(DIAL_OUTCOMES), default="answered", show_default=True,
              help="Outbound flows: what the person called does.")
@click.option("--var", "var", multiple=True, metavar="NAME=VALUE", help="Outbound flows: an input (repeatable).")
@click.option("--http", "http", multiple=True, metavar="URL=STATUS[:JSON]", help="The answer to the flow's http "
              "steps to URL (* matches anything), e.g. 'https://api.example.com/*=500'. Default: 200 {}.")
@click.option("--real-http", is_flag=True, help="Send http steps without a --http answer for real.")
@click.option("--color/--no-color", default=None, help="Colours (default: when the output is a terminal).")
def command(flow_spec: str, caller: str, to: str | None, at: str | None, tz: str | None, keys: str | None,
            transfer: str | None, dial: str, var: tuple[str, ...], http: tuple[str, ...], real_http: bool,
            color: bool | None) -> None:
    """Try FLOW: a pretend call in the terminal, through the real engine.

    FLOW is a flow file, or the name of a flow in the flows folder (IVR_FLOWS, default flows/).
    You hear what the caller hears, type the keys they press (Enter alone: they press nothing), say
    how each transfer ends, and hang up at any time with Ctrl-C or h. A summary ends the call.

    \b
    Examples:
      ivr try auto_attendant
      ivr try flows/small_business.yaml --at "2026-12-25 10:00"
      ivr try auto_attendant --keys 9,1 --transfer busy
      ivr try two_factor_voice --to +6591234567 --var code=482913 --keys 1,
    """
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        path = resolve_flow(flow_spec)
        flow, warnings = load_checked(path)
    except FlowProblem as problem:
        for finding in problem.findings:
            click.echo(str(finding), err=True)
        raise click.ClickException(str(problem)) from None
    scripted = _parse_keys(keys)
    transfers = _parse_transfers(transfer)
    inputs = _parse_vars(var)
    stubs: list[HttpStub] = []
    for spec in http:
        try:
            stubs.append(HttpStub.parse(spec))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--http") from None
    caller = _phone(caller, "--caller", private_ok=True)
    clock, clock_text = _clock(flow, at, tz)
    console = Console(color=color, keys=scripted, transfers=transfers, echo_input=not sys.stdin.isatty())

    title = f"Trying {flow.name}" + (f": {flow.description}" if flow.description else "")
    hang = "" if scripted is not None else " (Ctrl-C or h hangs up)"
    missing: list[str] = []
    if flow.outbound:
        dest = _phone(to or DEFAULT_CALLER, "--to")
        detail = f"The engine calls {dest}{hang}"
        needed = list(getattr(flow, "inputs", None) or declared_inputs(path))
        missing = [name for name in needed if name not in inputs]
        if missing and (scripted is not None or not sys.stdin.isatty()):
            raise click.UsageError(f"{flow.name} needs its inputs: {', '.join(missing)}; give each with "
                                   "--var NAME=VALUE")
    else:
        number = _phone(to, "--to") if to else None
        detail = f"Call from {caller} to {number or (flow.numbers[0] if flow.numbers else '+6531580000')}{hang}"
        dest = ""
    if clock_text:
        detail += f"\nEngine clock: {clock_text}"
    console.banner(title, detail)
    for finding in warnings:
        console.note(str(finding), warning=True)
    if var and not flow.outbound:
        console.note("--var is for outbound flows; an incoming call starts with the flow's own vars", warning=True)
    if missing:
        console.line("The flow's inputs (next time: --var NAME=VALUE):")
        for name in missing:
            inputs[name] = click.prompt(f"  {name}", default="", show_default=False)
    console.line("")

    with Simulation(flow, console, caller=caller, number=None if flow.outbound else (to or None), clock=clock,
                    http_stubs=stubs, real_http=real_http, dial=dial) as sim:
        result = sim.run_outbound(dest, inputs) if flow.outbound else sim.run_inbound()
    if result.status == "refused":
        raise click.ClickException("; ".join(result.notes) or "the engine refused the call")
    console.summary(result)
