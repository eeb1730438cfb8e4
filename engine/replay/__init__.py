"""Replay testing: recorded or hand-written calls played through the real engine, in process.

A *case* file (YAML, ``engine.replay.case``) lists the notifications Hoiio posts during one call and
the blocks the engine must send back after each. The *harness* (``engine.replay.harness``) plays it
through ``create_app`` with a fresh SQLite database, a recording Hoiio transport under the real
client, signed notifications and a fixed clock, and diffs what was sent against the case.
``engine.replay.export`` turns any stored call back into a case; ``engine.replay.coverage`` says which
nodes and exits of each flow the replayed calls exercised. ``ivr replay`` / ``ivr export`` are the
command-line faces (``engine.cli.replay``, ``engine.cli.export``); ``docs/replay.md`` is the guide.

Sub-modules may import the engine's own packages (web, service, storage, providers, flowfile,
core), PyYAML and requests; nothing here is imported by the engine itself.
"""

from engine.replay.case import Case, CaseError, Step, case_files, load_case, parse_case
from engine.replay.harness import CaseResult, ReplayApp, Replayer, StepResult, write_update

__all__ = [
    "Case",
    "CaseError",
    "CaseResult",
    "ReplayApp",
    "Replayer",
    "Step",
    "StepResult",
    "case_files",
    "load_case",
    "parse_case",
    "write_update",
]
