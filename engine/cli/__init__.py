"""The ``ivr`` command. Each sub-command lives in its own module exposing ``command``."""

from __future__ import annotations

import importlib

import click

from engine import __version__

# module name under engine.cli -> registered as its click command's name
_COMMAND_MODULES = (
    "check",
    "serve",
    "db",
    "fake_hoiio",
    "demo",
    "replay",
    "export",
    "sessions",
    "try_cmd",
    "graph",
    "versions",
    "reload",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ivr")
def main() -> None:
    """IVR flow engine for Hoiio: check flows, serve webhooks, replay calls."""


def _register() -> None:
    for name in _COMMAND_MODULES:
        qualified = f"{__name__}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name == qualified:  # not written yet
                continue
            raise
        main.add_command(module.command)


_register()
