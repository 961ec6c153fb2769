"""A real deposit history on an embedded (SQLite) SAE, made once per run, and its rows.

The upgrade tests replay these rows into a database at each earlier revision; ``sae migrate-db``
moves a copy of the installation to PostgreSQL.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from sae.config import Settings, load_settings
from sae.db import make_engine
from sae.models import Base
from tests.conftest import TEST_RULES_CSV, XSD_DIR, Api, postgres_schema
from tests.retention.helpers import dossier_sip
from tests.sipfactory import build_zip, simple_sip

Rows = dict[str, list[dict[str, Any]]]


@contextmanager
def database_at(kind: str, tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    """An empty database of ``kind`` for the block: its engine and URL."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / f'sae-{uuid.uuid4().hex[:6]}.db'}"
        engine = make_engine(url)
        try:
            yield engine, url
        finally:
            engine.dispose()
        return
    with postgres_schema("sae_upgrade") as url:
        engine = make_engine(url)
        try:
            yield engine, url
        finally:
            engine.dispose()


def read_rows(connection: Connection) -> Rows:
    """Every table's rows, as the code reads them (typed), in primary-key order."""
    rows: Rows = {}
    for table in Base.metadata.sorted_tables:
        query = select(table).order_by(*table.primary_key.columns)
        rows[table.name] = [dict(r._mapping) for r in connection.execute(query)]
    return rows


@dataclass
class History:
    """The installation the history was made on, stopped, and what its catalogue holds."""

    data_dir: Path
    database: Path
    rows: Rows
    unit_id: str
    object_id: str
    payload: bytes

    def copy(self, where: Path) -> Settings:
        """A copy of the whole installation (keys, offers, catalogue) at ``where``: settings."""
        shutil.copytree(self.data_dir, where / "sae-data")
        return settings_for(where / "sae-data")


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    xsd = XSD_DIR if (XSD_DIR / "2.2" / "seda-2.2-main.xsd").is_file() else None
    return load_settings(data_dir=data_dir, seda_xsd_dir=xsd, **overrides)


PAYLOAD = b"%PDF-1.4\n% d\xc3\xa9lib\xc3\xa9ration du conseil\n%%EOF\n"


def _make_history(root: Path) -> History:
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine

    from sae.app import create_app
    from sae.journal.sealing import seal_now

    settings = settings_for(root / "sae-data")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        api = Api(client, settings)
        api.load_rules(TEST_RULES_CSV)
        accepted = api.deposit(build_zip(simple_sip("MSG-HIST-1", payload=PAYLOAD)))
        assert accepted.status_code == 201, accepted.text
        body = accepted.json()
        dossier = api.deposit(dossier_sip("MSG-HIST-2", pieces=3))
        assert dossier.status_code == 201, dossier.text
        refused = api.deposit(b"not a zip")
        assert refused.status_code in (400, 422), refused.text
        hold = client.post(
            "/api/v1/holds",
            json={"unit_ids": [body["units"][0]["id"]], "reason": "Contentieux en cours"},
            headers=api.auth(),
        )
        assert hold.status_code == 201, hold.text
        listed = client.post(
            "/api/v1/disposal-lists", json={"final_action": "Destroy"}, headers=api.auth()
        )
        assert listed.status_code == 201, listed.text
        audit = client.post("/api/v1/audits", json={}, headers=api.auth())
        assert audit.status_code == 202, audit.text
        deadline = time.monotonic() + 60
        while True:
            status = client.get(f"/api/v1/audits/{audit.json()['id']}", headers=api.auth())
            if status.json()["status"] in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status.json()["status"] == "done", status.text
        seal_now(api.runtime.sessions, api.runtime.settings, wait=True)
        unit_id = next(u["id"] for u in body["units"] if u.get("sip_id", "") != "AU-root")
        object_id = body["objects"][0]["id"]
    engine = create_engine(settings.db_url)
    with engine.connect() as connection:
        rows = read_rows(connection)
    engine.dispose()
    database = Path(settings.db_url.removeprefix("sqlite:///"))
    return History(settings.data_dir, database, rows, unit_id, object_id, PAYLOAD)


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """The deposit history, made once per run (do not write into it: :meth:`History.copy`)."""
    return _make_history(tmp_path_factory.mktemp("history"))
