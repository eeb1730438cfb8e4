"""``ivr serve``: run the webhook server for development (use gunicorn in production)."""

from __future__ import annotations

import os

import click

from engine.config import ConfigError, Settings
from engine.registry import FlowLoadError


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
def command(host: str, port: int) -> None:
    """Run the webhook server (development server; gunicorn for production)."""
    from engine.web import create_app

    overrides = {}
    if not os.environ.get("IVR_PUBLIC_URL"):
        overrides["public_url"] = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        settings = Settings.from_env(**overrides)
        app = create_app(settings)
    except (ConfigError, FlowLoadError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Serving {len(app.extensions['ivr'].flows.current)} flows from {settings.flows_dir} "
               f"on http://{host}:{port} (Hoiio numbers -> {settings.public_url}/hoiio/answer)")
    app.run(host=host, port=port, threaded=True, use_reloader=False)
