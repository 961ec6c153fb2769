"""``sae retention run`` makes a list for every producer due, however large the backlog."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import insert, select, text
from typer.testing import CliRunner

from sae.catalog.models import ArchiveUnit
from sae.cli import app
from sae.ingest.models import Transfer
from sae.retention.models import DisposalLine, DisposalList, UnitComputedRule
from tests.conftest import Api
from tests.retention.helpers import Clock

BACKLOG = 10_001  # one more than the first 10,000 due units the run used to look at


def _insert_due_units(api: Api, producer: str, count: int, *, first: int) -> None:
    """``count`` active units of ``producer``, their appraisal ended in 2020 (Destroy), in bulk."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [f"{producer}-{i:08d}" for i in range(first, first + count)]
    with api.runtime.sessions() as session:
        session.execute(
            insert(ArchiveUnit),
            [
                {
                    "id": uid,
                    "transfer_id": "bulk",
                    "sip_id": uid,
                    "title": uid,
                    "producer": producer,
                    "content_xml": b"",
                    "management": {},
                    "status": "active",
                    "created_at": now,
                }
                for uid in ids
            ],
        )
        session.execute(
            insert(UnitComputedRule),
            [
                {
                    "unit_id": uid,
                    "category": "AppraisalRule",
                    "end_date": date(2020, 1, 1),
                    "unbounded": False,
                    "final_action": "Destroy",
                    "rules": [],
                    "computed_at": now,
                }
                for uid in ids
            ],
        )
        if session.get_bind().dialect.name == "postgresql":
            # As autovacuum would after a load: without statistics, PostgreSQL plans the due
            # query for an empty table (a nested loop over 10,000 × 10,000 rows).
            session.execute(text("ANALYZE archive_units"))
            session.execute(text("ANALYZE unit_computed_rules"))
        session.commit()


def test_run_makes_a_list_for_every_producer_due(
    api: Api, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    clock.set(date(2021, 6, 1))
    with api.runtime.sessions() as session:
        session.add(Transfer(id="bulk", status="OK", received_at=datetime(2015, 1, 1, tzinfo=UTC)))
        session.commit()
    # A sorts before B: all of the first 10,000 due units belong to A.
    _insert_due_units(api, "A", BACKLOG, first=0)
    _insert_due_units(api, "B", 1, first=BACKLOG)
    result = CliRunner().invoke(app, ["retention", "run", "--final-action", "Destroy"])
    assert result.exit_code == 0, result.output
    with api.runtime.sessions() as session:
        made = list(session.scalars(select(DisposalList).order_by(DisposalList.reference)))
        counts = [
            len(session.scalars(select(DisposalLine.id).where(DisposalLine.list_id == d.id)).all())
            for d in made
        ]
    assert [d.producer for d in made] == ["A", "B"]
    assert counts == [BACKLOG, 1]
