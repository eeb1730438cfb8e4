"""``ivr sessions show`` and ``ivr sessions prune`` on a stored call."""

from __future__ import annotations

from datetime import UTC, datetime

from click.testing import CliRunner

from engine.cli import main
from engine.storage import Database
from tests.integration.conftest import make_app


def test_show_prints_a_readable_timeline_with_billing_and_masked_pin(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    h = make_app(url)
    h.answer("C1")
    h.reply("C1", "play")
    h.reply("C1", "gather", digits="1")
    h.reply("C1", "gather", digits="4321")  # wrong PIN: goodbye
    h.reply("C1", "hangup", call_state="ended", duration="2", currency="SGD", rate="0.020", debit="0.040",
            date="2026-11-23 10:02:00")
    h.db.dispose()
    result = CliRunner().invoke(main, ["sessions", "show", "C1", "--database-url", url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "flow everything" in out and "status ended" in out
    assert "ivr/middle/gather" in out and '"Enter your four digit PIN."' in out
    assert "4321" not in out and "digits ***" in out
    assert "Billing: 2 min at 0.020 SGD/min, debit 0.040 SGD" in out
    assert "+6591234567" not in out


def test_show_unknown_session(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    Database.open(url).close()
    result = CliRunner().invoke(main, ["sessions", "show", "NOPE", "--database-url", url])
    assert result.exit_code == 1 and "no call with session 'NOPE'" in result.output


def test_prune_deletes_only_old_calls(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    clock = {"now": datetime(2026, 1, 1, tzinfo=UTC)}
    db = Database.open(url, clock=lambda: clock["now"])
    with db.transaction() as tx:
        tx.insert_call(session="OLD", flow="f", flow_version="v", state={})
    clock["now"] = datetime.now(UTC)
    with db.transaction() as tx:
        tx.insert_call(session="NEW", flow="f", flow_version="v", state={})
    db.close()
    result = CliRunner().invoke(main, ["sessions", "prune", "--older-than", "30d", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "1 calls" in result.output
    db = Database.open(url)
    assert db.get_call("OLD") is None and db.get_call("NEW") is not None
    db.close()
    bad = CliRunner().invoke(main, ["sessions", "prune", "--older-than", "a month", "--database-url", url])
    assert bad.exit_code == 2 and "30d" in bad.output
