"""``sae migrate-db --to URL``: an embedded installation's catalogue moved to PostgreSQL, verified.

The source is a copy of a real deposit history (:mod:`tests.migrations.conftest`); the target
a fresh PostgreSQL schema of the test server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import JSON, create_engine, func, select, text
from typer.testing import CliRunner

from sae.cli import app
from sae.config import Settings
from sae.db import make_engine
from sae.journal.models import Event
from sae.migrate_db import EVENT, MoveRefused, MoveUnverified, journal_root, move_catalog
from sae.models import Base
from tests.conftest import PG_URL, postgres_schema
from tests.migrations.conftest import History, read_rows
from tests.sipfactory import build_zip, simple_sip

runner = CliRunner()
#: What the move itself adds to the journal: its leaf, and the stored nodes it completes.
JOURNAL = ("events", "journal_nodes", "journal_state")


def _said(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def installation(history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A copy of the history's installation, as the environment of the commands."""
    settings = history.copy(tmp_path)
    monkeypatch.setenv("SAE_DATA_DIR", str(settings.data_dir))
    for name in ("SAE_DATABASE_URL", "SAE_OFFERS_FILE", "SAE_AUTO_MIGRATE"):
        monkeypatch.delenv(name, raising=False)
    return settings


def _null_counts(url: str) -> dict[str, int]:
    """SQL NULLs in every JSON column (kept apart from JSON ``null`` by the move)."""
    engine = create_engine(url)
    counts = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, JSON):
                    counts[f"{table.name}.{column.name}"] = connection.execute(
                        select(func.count()).select_from(table).where(column.is_(None))
                    ).scalar_one()
    engine.dispose()
    return counts


def test_migrate_db_moves_the_catalogue_and_the_journal_still_verifies(
    installation: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_engine = make_engine(installation.db_url)
    with source_engine.connect() as connection:
        before = read_rows(connection)
        size, root = journal_root(connection)
    source_engine.dispose()
    with postgres_schema("sae_move") as bare:
        # A password in the URL (the test server trusts its clients): never said nor journaled.
        url = bare.replace("://postgres@", "://postgres:s3cret-pw@")
        assert "s3cret-pw" in url
        result = runner.invoke(app, ["migrate-db", "--to", url])
        assert result.exit_code == 0, result.output
        said = _said(result.output)
        assert "s3cret-pw" not in said
        assert f"journal {size} leaves, root {root.hex()} (identical on both)" in said
        assert "SAE_DATABASE_URL=" in said

        target = make_engine(url)
        with target.connect() as connection:
            after = read_rows(connection)
            target_size, _ = journal_root(connection)
        # Every row as it was, ids included; the journal grew by the move's own leaf.
        for table, rows in before.items():
            if table not in JOURNAL:
                assert after[table] == rows, table
        assert after["events"][:size] == before["events"]
        assert target_size == size + 1
        moved = after["events"][size]
        assert moved["type"] == EVENT
        assert moved["payload"]["root_hash"] == root.hex()
        assert moved["payload"]["tree_size"] == size
        assert moved["payload"]["counts"]["archive_units"] == len(before["archive_units"])
        assert moved["payload"]["target"] == bare.replace("://postgres@", "://postgres:***@")
        assert _null_counts(url) == _null_counts(installation.db_url)
        target.dispose()

        # SAE on the target: `sae journal verify` passes, and a new deposit takes new ids
        # (the sequences follow the copied ones).
        monkeypatch.setenv("SAE_DATABASE_URL", url)
        verified = runner.invoke(app, ["journal", "verify"])
        assert verified.exit_code == 0, verified.output
        assert "journal OK" in verified.output
        _deposit_on(installation, url)
        again = runner.invoke(app, ["journal", "verify"])
        assert again.exit_code == 0, again.output

        # The same target again: it is no longer empty.
        monkeypatch.delenv("SAE_DATABASE_URL")
        refused = runner.invoke(app, ["migrate-db", "--to", url])
        assert refused.exit_code == 2
        assert "database.move_refused" in _said(refused.output)
        assert "not empty" in _said(refused.output)


def _deposit_on(installation: Settings, url: str) -> None:
    from fastapi.testclient import TestClient

    from sae.app import create_app
    from sae.config import load_settings

    settings = load_settings(
        data_dir=installation.data_dir,
        database_url=url,
        seda_xsd_dir=installation.seda_xsd_dir,
        auto_migrate=False,
    )
    token = (installation.data_dir / "admin.token").read_text().strip()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post(
            "/api/v1/transfers",
            content=build_zip(simple_sip("MSG-AFTER-MOVE", payload=b"%PDF-1.4\nmoved\n%%EOF\n")),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/zip"},
        )
        assert response.status_code == 201, response.text
        events = client.get(
            "/api/v1/journal/events",
            params={"type": EVENT},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert events.status_code == 200, events.text


def test_a_copy_that_does_not_verify_is_rolled_back(installation: Settings) -> None:
    """A source whose journal does not verify (a row altered) is not moved: nothing is kept."""
    engine = make_engine(installation.db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE events SET actor = 'someone else' WHERE leaf_index = 3"))
    engine.dispose()
    with postgres_schema("sae_move") as url:
        with pytest.raises(MoveUnverified, match="journal verify.*leaf 3"):
            move_catalog(installation, url)
        result = runner.invoke(app, ["migrate-db", "--to", url])
        assert result.exit_code == 1
        assert "database.move_unverified" in _said(result.output)
        target = make_engine(url)
        with target.connect() as connection:
            assert connection.execute(select(func.count()).select_from(Event)).scalar_one() == 0
        target.dispose()


def test_a_target_holding_other_tables_is_refused(installation: Settings) -> None:
    with postgres_schema("sae_move") as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE payroll (id INTEGER)"))
        engine.dispose()
        with pytest.raises(MoveRefused, match="tables SAE does not know.*payroll"):
            move_catalog(installation, url)


def test_only_sqlite_to_postgresql(installation: Settings, tmp_path: Path) -> None:
    with pytest.raises(MoveRefused, match="must be a PostgreSQL URL"):
        move_catalog(installation, f"sqlite:///{tmp_path / 'other.db'}")
    on_postgresql = installation.model_copy(update={"database_url": PG_URL})
    with pytest.raises(MoveRefused, match="not SQLite"):
        move_catalog(on_postgresql, PG_URL)


def test_a_value_postgresql_refuses_stops_the_move_and_names_the_table(
    installation: Settings,
) -> None:
    """SQLite keeps a NUL character in a text; PostgreSQL refuses it: nothing is kept."""
    engine = make_engine(installation.db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE rules SET description = 'a' || char(0) || 'b'"))
    engine.dispose()
    with postgres_schema("sae_move") as url:
        with pytest.raises(MoveUnverified, match="PostgreSQL refused a row of rules"):
            move_catalog(installation, url)
        target = make_engine(url)
        with target.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM rules")).scalar_one() == 0
        target.dispose()


def test_an_unreachable_target_is_said_without_its_password(installation: Settings) -> None:
    result = runner.invoke(
        app, ["migrate-db", "--to", "postgresql+psycopg://sae:s3cret-pw@127.0.0.1:1/sae"]
    )
    assert result.exit_code == 2
    assert "database unreachable" in _said(result.output)
    assert "s3cret-pw" not in result.output
