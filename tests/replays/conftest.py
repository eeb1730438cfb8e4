"""Every ``*.yaml`` file under ``tests/replays/`` is a test: the case is played through the real
engine (``engine.replay``) against the example flows in ``flows/`` and fails with a unified diff of
the blocks when the engine sends something else. Adding a regression test is adding a file (write
the notifications, then ``ivr replay FILE --update`` and read what it recorded).

One ``Replayer`` (flows loaded once, one migrated template database) serves the whole session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.replay import CaseError, Replayer, load_case

HERE = Path(__file__).resolve().parent
FLOWS = HERE.parent.parent / "flows"
_REPLAYER = pytest.StashKey[Replayer]()


class ReplayMismatch(Exception):
    """The engine sent something other than the case expects; the message is the report."""


def shared_replayer(config: pytest.Config) -> Replayer:
    if _REPLAYER not in config.stash:
        config.stash[_REPLAYER] = Replayer(FLOWS)
    return config.stash[_REPLAYER]


@pytest.fixture(scope="session")
def replayer(pytestconfig: pytest.Config) -> Replayer:
    """The session's shared ``Replayer`` on the example flows."""
    return shared_replayer(pytestconfig)


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.suffix in (".yaml", ".yml") and HERE in file_path.resolve().parents:
        return ReplayFile.from_parent(parent, path=file_path)
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    replayer = config.stash.get(_REPLAYER, None)
    if replayer is not None:
        replayer.close()


class ReplayFile(pytest.File):
    def collect(self):
        yield ReplayItem.from_parent(self, name=self.path.stem)


class ReplayItem(pytest.Item):
    def runtest(self) -> None:
        case = load_case(self.path)
        result = shared_replayer(self.config).run(case)
        if not result.passed:
            raise ReplayMismatch(result.report() + "\n(if the change is intended: ivr replay "
                                 f"{self.path.relative_to(HERE.parent.parent)} --update, then read the diff)")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ReplayMismatch | CaseError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"replay {self.path.relative_to(HERE)}"
