"""Migrations, URL handling and the ``ivr db`` command on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from engine.storage import Database, InvalidDatabaseURL, SchemaNotReady, migrate, normalize_url
from engine.storage.db import default_database_url
from engine.storage.errors import DatabaseUnavailable
from engine.storage.tables import metadata

TABLES = {"calls", "notifications", "blocks", "side_calls", "call_events", "flow_versions"}
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/test"


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(normalize_url(url))
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_creates_the_schema_and_is_idempotent(database_url):
    assert migrate.current_revision(database_url) is None
    assert migrate.upgrade(database_url) == migrate.head_revision()
    assert _tables(database_url) == TABLES
    assert migrate.upgrade(database_url) == migrate.head_revision()
    assert migrate.is_current(database_url)


def test_migrations_match_the_table_definitions(database_url):
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        db.close()


def test_downgrade_then_upgrade_again(database_url):
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.engine.begin() as conn:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert _tables(database_url) == set()
        assert migrate.upgrade(db) == migrate.head_revision()
        assert _tables(database_url) == TABLES
    finally:
        db.close()


def test_open_migrates_a_new_sqlite_file_but_never_postgres(database_url, caplog):
    db = Database.open(database_url)
    try:
        if db.backend == "sqlite":
            assert migrate.current_revision(db) == migrate.head_revision()
        else:
            assert migrate.current_revision(db) is None
            assert "run `ivr db upgrade`" in caplog.text
    finally:
        db.close()


def test_open_with_auto_migrate_upgrades_any_backend(database_url):
    db = Database.open(database_url, auto_migrate=True)
    try:
        assert migrate.current_revision(db) == migrate.head_revision()
    finally:
        db.close()


def test_open_can_leave_a_sqlite_file_alone(database_url):
    db = Database.open(database_url, auto_migrate_sqlite=False)
    try:
        assert migrate.current_revision(db) is None
    finally:
        db.close()


def test_workers_opening_a_new_sqlite_file_at_once_migrate_it_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_db() -> None:
        try:
            start.wait()
            Database.open(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_db) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert migrate.current_revision(url) == migrate.head_revision()


def test_open_refuses_a_sqlite_file_from_a_newer_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    with pytest.raises(SchemaNotReady, match="f00d"):
        Database.open(url)


def test_queries_on_an_empty_database_say_to_run_the_upgrade(database_url):
    db = Database(database_url)
    try:
        with pytest.raises(SchemaNotReady, match="ivr db upgrade"):
            db.get_call("S1")
    finally:
        db.close()


# ---------------------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///ivr.sqlite3", "sqlite:///ivr.sqlite3"),
    ],
)
def test_normalize_url(given, expected):
    assert normalize_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize("bad", ["", "nonsense", "mysql://u@h/d", "sqlite+foo:///x"])
def test_bad_urls_are_refused_clearly(bad):
    with pytest.raises(InvalidDatabaseURL):
        Database(bad)


def test_default_url():
    assert default_database_url({}) == "sqlite:///ivr.sqlite3"
    assert default_database_url({"DATABASE_URL": "postgres://x/y"}) == "postgres://x/y"


def test_unreachable_postgres_is_database_unavailable():
    db = Database(UNREACHABLE_PG)
    try:
        with pytest.raises(DatabaseUnavailable, match="cannot connect to the database at postgresql"):
            db.ping(timeout_s=1.0)
        with pytest.raises(DatabaseUnavailable), db.transaction():
            pass
    finally:
        db.close()


def test_passwords_are_masked_in_messages():
    db = Database("postgresql://user:hunter2@127.0.0.1:1/test")
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            db.ping()
        assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
        assert "hunter2" not in repr(db)
    finally:
        db.close()
    with pytest.raises(InvalidDatabaseURL) as caught:
        Database("postgresql//user:hunter2@127.0.0.1/test")  # malformed: no "://"
    assert "hunter2" not in str(caught.value)


# ---------------------------------------------------------------------------------------- ivr db


def _db_command():
    # Loaded from its file so this test exercises `ivr db` alone, whatever the state of the other
    # sub-commands registered by engine.cli.
    path = Path(__file__).resolve().parents[3] / "engine" / "cli" / "db.py"
    spec = importlib.util.spec_from_file_location("ivr_cli_db_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.command


def test_ivr_db_upgrade_and_current(database_url):
    cli = _db_command()
    runner = CliRunner()
    result = runner.invoke(cli, ["current", "--database-url", database_url, "--check"])
    assert result.exit_code == 1

    result = runner.invoke(cli, ["upgrade", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert f"to {migrate.head_revision()}" in result.output

    result = runner.invoke(cli, ["upgrade", "--database-url", database_url])
    assert result.exit_code == 0 and "already at revision" in result.output

    result = runner.invoke(cli, ["current", "--database-url", database_url, "--check"])
    assert result.exit_code == 0 and "up to date" in result.output


def test_ivr_db_takes_the_url_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    result = CliRunner().invoke(_db_command(), ["upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.sqlite3").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "invalid database URL"),
        ("mysql://u@h/d", "unsupported database 'mysql'"),
        (UNREACHABLE_PG, "cannot connect to the database at postgresql+psycopg://postgres@127.0.0.1:1/test"),
        ("sqlite:////no/such/directory/ivr.sqlite3", "cannot open the SQLite database"),
    ],
)
def test_ivr_db_errors_are_one_line(url, message):
    result = CliRunner().invoke(_db_command(), ["upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]


def test_the_storage_layer_never_imports_flask():
    import subprocess
    import sys

    code = (
        "import sys, engine.storage, engine.storage.migrate, engine.storage.tables\n"
        "assert 'flask' not in sys.modules, 'engine.storage imported flask'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
