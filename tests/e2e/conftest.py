"""Fixtures of the end-to-end tests: real server processes, the fake Hoiio, flow folders, databases.

Process fixtures always stop what they started, also when a test fails (the teardown of a yield
fixture runs whatever happened), and every child dies with the test process (see e2e_support).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from e2e_support import APP_ID, FLOWS, SINGAPORE, TOKEN, WEEKDAYS, Server, start_gunicorn

from engine.fakes import FakeHoiio
from engine.storage import Database

#: Copies of flows/small_business.yaml whose hours do not depend on the clock, on their own numbers.
SMALL_BUSINESS_VARIANTS = {
    "small_business_open": "+6531580021",
    "small_business_closed": "+6531580022",
    "small_business_holiday": "+6531580023",
}


class _QuotingDumper(yaml.SafeDumper):
    """Every string double-quoted: the flow loader refuses plain scalars such as +6531580021."""


_QuotingDumper.add_representer(
    str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
)


def singapore_today() -> datetime:
    return datetime.now(SINGAPORE)


def _small_business_variant(source: dict, name: str, number: str) -> dict:
    flow = yaml.safe_load(yaml.safe_dump(source))  # deep copy
    flow["numbers"] = [number]
    flow["description"] = f"{flow.get('description', '')} ({name}, for the end-to-end tests)"
    hours = flow["nodes"]["check_hours"]
    today = singapore_today()
    if name.endswith("_open"):
        hours["weekly"] = {"mon-sun": "00:00-24:00"}
        hours.pop("holidays", None)
    elif name.endswith("_closed"):
        far_day = WEEKDAYS[(today.weekday() + 3) % 7]  # never today, whatever the time zone drift
        hours["weekly"] = {far_day: "00:00-24:00"}
        hours.pop("holidays", None)
    else:  # holiday: yesterday, today and tomorrow, so a test run across midnight still agrees
        hours["holidays"] = [(today + timedelta(days=d)).date().isoformat() for d in (-1, 0, 1)]
    return flow


@pytest.fixture(scope="session")
def e2e_flows(tmp_path_factory) -> Path:
    """The example flows of flows/ unchanged, plus clock-independent variants of small_business."""
    folder = tmp_path_factory.mktemp("flows")
    for path in sorted(FLOWS.glob("*.yaml")):
        shutil.copy(path, folder / path.name)
    source = yaml.safe_load((FLOWS / "small_business.yaml").read_text())
    for name, number in SMALL_BUSINESS_VARIANTS.items():
        flow = _small_business_variant(source, name, number)
        text = yaml.dump(flow, Dumper=_QuotingDumper, sort_keys=False, allow_unicode=True, width=200)
        (folder / f"{name}.yaml").write_text(text)
    return folder


@pytest.fixture(scope="module")
def fake_hoiio() -> Iterator[FakeHoiio]:
    """The strict fake Hoiio in this process (its Python API: scripted callers, faults, waits)."""
    fake = FakeHoiio(APP_ID, TOKEN, call_limit=10_000)
    fake.start("127.0.0.1", 0)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'ivr.sqlite3'}"


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory, fake_hoiio: FakeHoiio, sqlite_url: str, e2e_flows: Path) -> Iterator[Server]:
    """The real server under gunicorn (2 gthread workers) on SQLite, sending blocks to ``fake_hoiio``."""
    assert fake_hoiio.base_url is not None
    server = start_gunicorn(
        tmp_path_factory.mktemp("logs"), api_url=fake_hoiio.base_url, database_url=sqlite_url, flows=e2e_flows,
        name="gunicorn-sqlite",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sqlite_db(sqlite_server: Server, sqlite_url: str) -> Iterator[Database]:
    """The server's database, opened from the test process for assertions."""
    db = Database.open(sqlite_url)
    try:
        yield db
    finally:
        db.close()
