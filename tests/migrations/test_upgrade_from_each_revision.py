"""An upgrade from each earlier revision, with data in it, on SQLite and PostgreSQL.

For each revision r of the history: a database is built at r, the rows of a real deposit
history (:mod:`tests.migrations.conftest`) are written into it with plain SQL, restricted to
the tables and columns that exist at r, and it is upgraded to the code's revision by
``sae.migrate.upgrade``. Then every table must hold exactly the history's rows (the columns
added after r as the revision that added them fills them: the data-migrating revisions 0002
journal digests and nodes, 0006 quarantine ends, 0007 search texts are compared with what the
ingest itself wrote), ``sae journal verify``'s check passes, and the app serves the archive:
the unit, the object's bytes, the journal's head.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Connection, inspect, text
from sqlalchemy.orm import Session

from sae.catalog.text import search_text
from sae.journal.verification import verify_journal
from sae.migrate import head_revisions, revisions, schema_state, upgrade
from sae.models import Base
from tests.conftest import upgrade_to
from tests.migrations.conftest import History, database_at, read_rows

#: Every revision but the latest, oldest first: the states an installation may be upgraded from.
EARLIER = [r for r in revisions() if r not in head_revisions()]

#: Columns a revision after r adds and fills otherwise than the ingest does: the value expected
#: after the upgrade, from the row as the history wrote it. Any other column added after r must
#: come out equal to what the history wrote (its revision backfills it as the code would).
BACKFILLED: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
    # 0006: copies written before it are due at once (the sealer asks their offer).
    ("object_copies", "quarantine_ends_at"): lambda row: row["stored_at"],
    # 0010: no description copy is recorded for transfers accepted before it.
    ("metadata_copies", "transfer_id"): lambda row: None,
    # 0011: heads sealed before it have no checkpoint note.
    ("tree_heads", "note"): lambda row: None,
    # 0007: units catalogued before it are found by title, description and SIP id only (the
    # ingest now adds identifiers, keywords and producer).
    ("archive_units", "search_text"): lambda row: search_text(
        row["title"], row["description"], row["sip_id"]
    ),
    # 0016: no use of a token is recorded before it.
    ("api_tokens", "last_used_at"): lambda row: None,
}


def plain(value: Any, column: Any, dialect: str) -> Any:
    """A value as plain SQL takes it: timestamps and dates as text, JSON as its text."""
    if value is None:
        return None
    if isinstance(column.type, JSON):
        return json.dumps(value)
    if isinstance(value, datetime):
        if dialect == "sqlite":  # how SQLAlchemy stores them in SQLite: naive UTC text
            return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def write_history(connection: Connection, history: History) -> dict[str, set[str]]:
    """The history's rows, with plain SQL, in the tables and columns this revision has; the
    columns it has, by table."""
    inspector = inspect(connection)
    present = {
        name: {c["name"] for c in inspector.get_columns(name)}
        for name in inspector.get_table_names()
    }
    dialect = connection.dialect.name
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            continue
        # What the migrations themselves wrote (journal counters) makes way for the history's.
        connection.execute(text(f'DELETE FROM "{table.name}"'))  # noqa: S608 - known names
        columns = [c for c in table.columns if c.name in present[table.name]]
        names = ", ".join(f'"{c.name}"' for c in columns)
        marks = ", ".join(f":{c.name}" for c in columns)
        insert = text(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})')  # noqa: S608
        rows = [
            {c.name: plain(row[c.name], c, dialect) for c in columns}
            for row in history.rows[table.name]
        ]
        if rows:
            connection.execute(insert, rows)
        serial = table.autoincrement_column
        if dialect == "postgresql" and serial is not None and rows:
            # Ids were given: the sequence follows them, as after any import.
            connection.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence(:t, :c), "
                    f'(SELECT MAX("{serial.name}") FROM "{table.name}"))'  # noqa: S608
                ),
                {"t": table.name, "c": serial.name},
            )
    return present


def expected_rows(history: History, present: dict[str, set[str]]) -> dict[str, Any]:
    """What each table must hold after the upgrade from a revision with ``present``."""
    expected: dict[str, Any] = {}
    for table in Base.metadata.sorted_tables:
        name = table.name
        if name in ("journal_nodes", "journal_state") and name not in present:
            # 0002 computes the stored subtree hashes and the counters from the events.
            expected[name] = history.rows[name]
            continue
        if name == "users" and name not in present:
            # 0016 gives every token a service account (the first-start tokens share "admin"),
            # made as the code makes one for a token created without an account: same id as
            # the token, so the history's accounts, created when their tokens were.
            tokens = {t["id"]: t for t in history.rows["api_tokens"]}
            expected[name] = [
                {**user, "created_at": tokens[user["id"]]["created_at"], "last_login_at": None}
                for user in history.rows["users"]
            ]
            continue
        if name not in present:
            expected[name] = []
            continue
        rows = []
        for row in history.rows[name]:
            row = dict(row)
            for column in row:
                fill = BACKFILLED.get((name, column))
                if column not in present[name] and fill is not None:
                    row[column] = fill(row)
            rows.append(row)
        expected[name] = rows
    return expected


def app_reads_it(history: History, url: str, tmp_path: Path) -> None:
    """A copy of the installation on the upgraded catalogue: the unit, the bytes, the head."""
    from fastapi.testclient import TestClient

    from sae.app import create_app
    from sae.config import load_settings

    copied = history.copy(tmp_path)
    settings = load_settings(
        data_dir=copied.data_dir,
        database_url=url,
        seda_xsd_dir=copied.seda_xsd_dir,
        auto_migrate=False,  # the upgrade is done: the start must find the schema current
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        token = (copied.data_dir / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        unit = client.get(f"/api/v1/units/{history.unit_id}", headers=auth)
        assert unit.status_code == 200, unit.text
        content = client.get(f"/api/v1/objects/{history.object_id}/content", headers=auth)
        assert content.status_code == 200, content.text
        assert content.content == history.payload
        found = client.get("/api/v1/units", params={"q": "deliberation"}, headers=auth)
        assert found.status_code == 200, found.text
        head = client.get("/api/v1/journal/head", headers=auth)
        assert head.status_code == 200, head.text
        assert head.json()["tree_size"] > len(history.rows["events"])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("revision", EARLIER)
def test_upgrade_from_an_earlier_revision_keeps_the_archive(
    revision: str, kind: str, history: History, tmp_path: Path
) -> None:
    with database_at(kind, tmp_path) as (engine, url):
        upgrade_to(engine, revision)
        with engine.begin() as connection:
            present = write_history(connection, history)
        change = upgrade(engine)
        assert change.before == [revision]
        assert change.after == head_revisions()
        assert schema_state(engine).up_to_date
        with engine.connect() as connection:
            upgraded = read_rows(connection)
        expected = expected_rows(history, present)
        for table, rows in expected.items():
            assert upgraded[table] == rows, f"{table} after an upgrade from {revision}"
        with Session(engine) as session:
            report = verify_journal(session)
        assert report.ok, report.problems
        assert report.tree_size == len(history.rows["events"])
        assert report.heads_checked == len(expected["tree_heads"])
        assert report.objects_checked == len(history.rows["data_objects"])
        app_reads_it(history, url, tmp_path)
