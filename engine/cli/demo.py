"""``ivr demo`` (what ``make run`` starts): the server on the example flows with SQLite, beside the
built-in fake Hoiio, so a simulated call can be placed at once without a Hoiio account.

With HOIIO_APP_ID and HOIIO_ACCESS_TOKEN set, use ``ivr serve`` instead: this command never talks to
the real Hoiio.
"""

from __future__ import annotations

import json
import os
import shlex

import click

from engine.config import ConfigError, Settings
from engine.registry import FlowLoadError


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, help="Port of the IVR server.")
@click.option("--fake-port", default=8001, show_default=True, type=int, help="Port of the fake Hoiio.")
def command(host: str, port: int, fake_port: int) -> None:
    """Run the server beside a fake Hoiio and print how to place a simulated call."""
    from engine.fakes.hoiio import FakeHoiio
    from engine.web import create_app

    fake = FakeHoiio(app_id="demo-app", access_token="demo-token", notify_delay=0.3)  # noqa: S106
    api_url = fake.start(host, fake_port)
    public = f"http://{host}:{port}"
    env = dict(os.environ)
    env.update({"HOIIO_APP_ID": "demo-app", "HOIIO_ACCESS_TOKEN": "demo-token", "HOIIO_API_URL": api_url,
                "IVR_PUBLIC_URL": public})
    try:
        settings = Settings.from_env(env)
        app = create_app(settings)
    except (ConfigError, FlowLoadError) as exc:
        fake.stop()
        raise click.ClickException(str(exc)) from None
    flows = app.extensions["ivr"].flows.current
    fake_base = api_url.rsplit("/open", 1)[0]
    click.echo(f"Fake Hoiio:  {api_url}   (log: {fake_base}/_fake/log)")
    click.echo(f"IVR server:  {public}   flows: {', '.join(sorted(flows))}   database: {settings.database_url}")
    number = next((n for f in flows.values() for n in f.numbers), "+6531580000")
    payload = json.dumps({"answer_url": f"{public}/hoiio/answer", "to": number, "keys": ["1"],
                          "transfers": ["busy"]})
    click.echo("\nPlace a simulated call (the caller presses 1; the transfer is busy):")
    click.echo(f"  curl -s -X POST {fake_base}/_fake/calls -H 'Content-Type: application/json' "
               f"-d {shlex.quote(payload)}")
    click.echo(f"Then follow it:  curl -s {fake_base}/_fake/sessions/<session>\n")
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
    finally:
        fake.stop()
