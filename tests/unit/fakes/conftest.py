"""Fixtures for the fake Hoiio tests: the fake itself, a notification receiver, live sessions."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fake_hoiio_support import Receiver, Recorder

from engine.fakes import CallerScript, FakeHoiio


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_fake(recorder: Recorder) -> Iterator[Callable[..., FakeHoiio]]:
    """Fakes posting in-process to ``recorder`` unless another ``transport`` is given."""
    fakes: list[FakeHoiio] = []

    def make(**options) -> FakeHoiio:
        options.setdefault("transport", recorder)
        fake = FakeHoiio(**options)
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        fake.stop()


@pytest.fixture
def fake(make_fake) -> FakeHoiio:
    return make_fake()


@pytest.fixture
def answered(fake: FakeHoiio) -> Callable[..., str]:
    """Start an incoming call and wait until its Answer notification went out: returns the session."""

    def start(script: CallerScript | None = None, *, on: FakeHoiio | None = None) -> str:
        target = on or fake
        sid = target.incoming_call("http://engine.test/hoiio/answer", script=script)
        target.wait_ready(sid)
        return sid

    return start
