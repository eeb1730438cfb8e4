"""The benchmark's description of the machine says when the kernel pages out cold memory (DAMON),
which sends a large database's unused pages back to disk between requests."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))

import run  # noqa: E402  (bench/run.py, a script folder)


def _kdamond(root: Path, name: str, state: str, actions: list[str]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "state").write_text(state + "\n")
    for i, action in enumerate(actions):
        scheme = folder / "contexts" / "0" / "schemes" / str(i)
        scheme.mkdir(parents=True)
        (scheme / "action").write_text(action + "\n")


def test_a_running_pageout_scheme_is_reported(tmp_path):
    _kdamond(tmp_path, "0", "on", ["stat", "pageout"])
    assert run.damon_pageout(tmp_path) is True


def test_no_pageout_when_stopped_or_another_action_or_no_damon(tmp_path):
    _kdamond(tmp_path / "a", "0", "off", ["pageout"])
    _kdamond(tmp_path / "b", "0", "on", ["stat", "lru_prio"])
    assert run.damon_pageout(tmp_path / "a") is False
    assert run.damon_pageout(tmp_path / "b") is False
    assert run.damon_pageout(tmp_path / "missing") is False
