"""Migrations are an act: ``sae migrate``, ``SAE_AUTO_MIGRATE``, the migration lock."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from sae.cli import app
from sae.config import load_settings
from sae.db import make_engine
from sae.migrate import (
    MIGRATION_LOCK,
    SchemaAhead,
    SchemaOutdated,
    alembic_config,
    head_revisions,
    schema_state,
    upgrade,
)
from sae.runtime import Runtime
from tests.conftest import PG_URL, REPO, postgres_schema, upgrade_to
from tests.migrations.conftest import database_at

runner = CliRunner()
#: The revision before the latest: an installation one upgrade behind.
PREVIOUS = (
    ScriptDirectory.from_config(alembic_config()).get_revision(head_revisions()[0]).down_revision
)
assert isinstance(PREVIOUS, str)


def _said(output: str) -> str:
    """The output on one line (Rich wraps at the terminal's width)."""
    return " ".join(output.split())


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded installation's environment (SQLite under ``tmp_path/sae-data``)."""
    monkeypatch.setenv("SAE_DATA_DIR", str(tmp_path / "sae-data"))
    for name in ("SAE_DATABASE_URL", "SAE_OFFERS_FILE", "SAE_AUTO_MIGRATE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "sae-data"


def _behind(data_dir: Path) -> str:
    """An embedded installation's database one revision behind the code: its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{data_dir / 'sae.db'}"
    engine = make_engine(url)
    upgrade_to(engine, PREVIOUS)
    engine.dispose()
    return url


def test_auto_migrate_off_refuses_an_outdated_schema_naming_the_command(
    embedded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _behind(embedded)
    monkeypatch.setenv("SAE_AUTO_MIGRATE", "0")
    with pytest.raises(SchemaOutdated) as refused:
        Runtime.open(load_settings())
    assert refused.value.code == "database.schema_outdated"
    assert "sae migrate" in refused.value.detail
    assert PREVIOUS in refused.value.detail
    # A command that needs the schema refuses the same way, and changes nothing.
    result = runner.invoke(app, ["rules", "export"])
    assert result.exit_code == 2
    said = _said(result.output)
    assert "database.schema_outdated" in said
    assert "run `sae migrate`" in said
    assert schema_state(make_engine(url)).current == [PREVIOUS]
    # `sae migrate` is the act; then the start goes through.
    assert runner.invoke(app, ["migrate", "current", "--check"]).exit_code == 1
    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert f"from {PREVIOUS} to {head_revisions()[0]}" in _said(migrated.output)
    assert runner.invoke(app, ["migrate", "current", "--check"]).exit_code == 0
    assert runner.invoke(app, ["rules", "export"]).exit_code == 0


def test_auto_migrate_off_refuses_an_empty_database(
    embedded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAE_AUTO_MIGRATE", "false")
    with pytest.raises(SchemaOutdated, match=r"revision \(empty\).*run `sae migrate`"):
        Runtime.open(load_settings())
    # `sae init` is the deliberate first start: it migrates whatever the setting says.
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert "database.migrated: schema upgraded from (empty)" in _said(result.output)
    Runtime.open(load_settings()).close()


def test_a_server_on_an_outdated_schema_does_not_start(embedded: Path, tmp_path: Path) -> None:
    """`sae serve` as a process of its own, SAE_AUTO_MIGRATE=0: exit 2, the command named."""
    _behind(embedded)
    env = {**os.environ, "SAE_AUTO_MIGRATE": "0", "PYTHONPATH": str(REPO)}
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "sae", "serve", "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    said = _said(done.stderr.decode())
    assert "database.schema_outdated" in said
    assert "sae migrate" in said
    assert "listening" not in done.stdout.decode() + said


def test_auto_migrate_on_upgrades_at_start_and_logs_it(
    embedded: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _behind(embedded)
    with caplog.at_level(logging.INFO, logger="sae.migrate"):
        runtime = Runtime.open(load_settings())
    runtime.close()
    assert runtime.schema_change is not None
    assert runtime.schema_change.before == [PREVIOUS]
    assert runtime.schema_change.after == head_revisions()
    logged = [r.getMessage() for r in caplog.records if r.name == "sae.migrate"]
    assert logged == [
        f"database.migrated: schema upgraded from {PREVIOUS} to {head_revisions()[0]} "
        f"(1 revision(s): {head_revisions()[0]})"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sae.migrate"):
        again = Runtime.open(load_settings())
    again.close()
    assert again.schema_change is None  # nothing to do: nothing said
    assert not [r for r in caplog.records if r.name == "sae.migrate"]


@pytest.mark.parametrize("auto", ["1", "0"])
def test_a_database_ahead_of_the_code_is_refused(
    embedded: Path, monkeypatch: pytest.MonkeyPatch, auto: str
) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    engine = make_engine(f"sqlite:///{embedded / 'sae.db'}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    monkeypatch.setenv("SAE_AUTO_MIGRATE", auto)
    with pytest.raises(SchemaAhead, match="0099_future.*newer SAE"):
        Runtime.open(load_settings())
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 2
    assert "database.schema_ahead" in _said(result.output)
    assert schema_state(engine).current == ["0099_future"]  # untouched
    engine.dispose()


def test_migrate_current_and_history_say_where_the_schema_stands(embedded: Path) -> None:
    _behind(embedded)
    current = runner.invoke(app, ["migrate", "current"])
    assert current.exit_code == 0
    said = _said(current.output)
    assert f"database: {PREVIOUS}" in said
    assert f"behind: 1 migration(s) pending ({head_revisions()[0]})" in said
    history = runner.invoke(app, ["migrate", "history"]).output.splitlines()
    first = history[0]
    assert first.startswith("0001_initial")
    marked = [line for line in history if "<-" in line]
    assert marked[0].startswith(PREVIOUS)
    assert marked[0].endswith("<- database")
    assert marked[1].startswith(head_revisions()[0])
    assert marked[1].endswith("<- latest")


def _migrate_process(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own command line
        [sys.executable, "-m", "sae", "migrate"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _outcomes(processes: list[subprocess.Popen[str]]) -> list[str]:
    outputs = []
    for process in processes:
        output = process.communicate(timeout=180)[0]
        assert process.returncode == 0, output
        outputs.append(_said(output))
    return outputs


def test_two_hosts_upgrading_postgresql_at_once_both_succeed_and_migrate_once(
    tmp_path: Path,
) -> None:
    """The test holds the migration lock until both processes wait on it, then lets go: they
    race for it, one runs the migrations, the other finds them done."""
    with postgres_schema("sae_lock") as url:
        holder = create_engine(PG_URL)
        connection = holder.connect()
        try:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
            env = {"SAE_DATABASE_URL": url, "SAE_DATA_DIR": str(tmp_path / "sae-data")}
            processes = [_migrate_process(env, tmp_path) for _ in range(2)]
            deadline = time.monotonic() + 120
            while True:
                waiting = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND NOT granted AND objid = :low"
                    ),
                    {"low": MIGRATION_LOCK & 0xFFFFFFFF},
                ).scalar_one()
                connection.commit()
                if waiting >= 2:
                    break
                for process in processes:
                    assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the processes never waited for the lock"
                time.sleep(0.1)
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
            outputs = _outcomes(processes)
        finally:
            connection.close()
            holder.dispose()
        migrated = [o for o in outputs if "database.migrated: schema upgraded from (empty)" in o]
        current = [o for o in outputs if "schema already current" in o]
        assert len(migrated) == 1, outputs
        assert len(current) == 1, outputs
        engine = make_engine(url)
        assert schema_state(engine).up_to_date
        engine.dispose()


def test_two_processes_upgrading_sqlite_at_once_both_succeed_and_migrate_once(
    tmp_path: Path,
) -> None:
    """On SQLite the lock is a file lock beside the database: held by the test while both
    processes start, then released."""
    data = tmp_path / "sae-data"
    data.mkdir()
    lock = os.open(data / "sae.db.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        processes = [_migrate_process({"SAE_DATA_DIR": str(data)}, tmp_path) for _ in range(2)]
        time.sleep(3)  # both have imported SAE and wait for the lock (or are about to)
        for process in processes:
            assert process.poll() is None, process.communicate()[0]
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    outputs = _outcomes(processes)
    assert sum("database.migrated" in o for o in outputs) == 1, outputs
    assert sum("schema already current" in o for o in outputs) == 1, outputs


def test_an_upgrade_that_fails_leaves_the_schema_as_it_was(tmp_path: Path) -> None:
    """All pending revisions run in one transaction, on SQLite as on PostgreSQL: 0011 fails
    (the table it creates is already there) after 0010 ran, and 0009 is what remains."""
    for kind in ("sqlite", "postgresql"):
        with database_at(kind, tmp_path) as (engine, _url):
            upgrade_to(engine, "0009_metadata_copies")
            with engine.begin() as connection:
                connection.execute(text("CREATE TABLE head_cosignatures (id INTEGER)"))
            with pytest.raises(Exception, match="head_cosignatures"):
                upgrade(engine)
            assert schema_state(engine).current == ["0009_metadata_copies"], kind
            with engine.connect() as connection:  # 0010's column was rolled back with it
                columns = connection.execute(text("SELECT * FROM metadata_copies")).keys()
            assert "transfer_id" not in columns, kind
