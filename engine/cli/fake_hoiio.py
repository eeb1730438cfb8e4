"""``ivr fake-hoiio``: run the strict fake Hoiio API in the foreground.

Prints the environment to point an engine at it (``HOIIO_API_URL``, ``HOIIO_APP_ID``,
``HOIIO_ACCESS_TOKEN``) and the control API, then serves until interrupted.

May import ``engine.fakes`` and click.
"""

from __future__ import annotations

import click

from engine.fakes import FakeHoiio
from engine.fakes.serving import serve_until_stopped


@click.command("fake-hoiio")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 = any free port.")
@click.option("--app-id", default="fake-app", show_default=True, help="The account's app_id.")
@click.option("--access-token", default="fake-token", show_default=True, help="Its access_token (signing key).")
@click.option("--notify-delay", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Seconds each block takes before its notification is posted.")  # fmt: skip
@click.option("--call-limit", default=8, show_default=True, type=click.IntRange(1), help="Concurrent calls allowed.")
@click.option("--verbose", is_flag=True, help="Log every request.")
def command(
    host: str, port: int, app_id: str, access_token: str, notify_delay: float, call_limit: int, verbose: bool
) -> None:
    """Run a strict fake of the Hoiio API (IVR, voice, conference) for demos and manual tests."""
    fake = FakeHoiio(app_id, access_token, notify_delay=notify_delay, call_limit=call_limit, quiet=not verbose)
    try:
        base_url = fake.start(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    click.echo(f"HOIIO_API_URL={base_url}")
    click.echo(f"HOIIO_APP_ID={app_id}")
    click.echo(f"HOIIO_ACCESS_TOKEN={access_token}")
    click.echo(
        f"# control API: POST {fake.root_url}/_fake/calls "
        '\'{"answer_url": "http://127.0.0.1:8000/hoiio/answer", "keys": ["1"]}\'; '
        f"GET {fake.root_url}/_fake/log. Ctrl-C stops.",
        err=True,
    )
    serve_until_stopped(fake)
