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
    _bulk_transfer(api)
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


def _bulk_transfer(api: Api) -> None:
    with api.runtime.sessions() as session:
        session.add(Transfer(id="bulk", status="OK", received_at=datetime(2015, 1, 1, tzinfo=UTC)))
        session.commit()


def test_the_api_builds_every_list_due_one_per_producer(api: Api, clock: Clock) -> None:
    clock.set(date(2021, 6, 1))
    _bulk_transfer(api)
    _insert_due_units(api, "A", 3, first=0)
    _insert_due_units(api, "B", 2, first=3)
    archivist = api.token("archivist")

    made = api.client.post(
        "/api/v1/disposal-lists/due", headers=api.auth(archivist), json={"final_action": "Keep"}
    )
    assert made.status_code == 201, made.text
    assert made.json() == []  # every unit due is for destruction

    made = api.client.post("/api/v1/disposal-lists/due", headers=api.auth(archivist), json={})
    assert made.status_code == 201, made.text
    lists = made.json()
    assert [(d["producer"], d["final_action"], len(d["lines"])) for d in lists] == [
        ("A", "Destroy", 3),
        ("B", "Destroy", 2),
    ]
    # Units already on an open list are not due again.
    again = api.client.post("/api/v1/disposal-lists/due", headers=api.auth(archivist), json={})
    assert again.json() == []


def test_the_console_builds_one_list_per_producer(api: Api, clock: Clock) -> None:
    from tests.console.helpers import csrf_of, signed_in

    clock.set(date(2021, 6, 1))
    _bulk_transfer(api)
    _insert_due_units(api, "A", 2, first=0)
    _insert_due_units(api, "B", 1, first=2)
    client = signed_in(api, "archivist")
    token = csrf_of(client.get("/console/eliminations").text)
    answer = client.post(
        "/console/eliminations",
        data={"csrf": token, "sort_final": "Destroy", "echeance": "2021-06-01", "par_service": "1"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console/eliminations?etat=draft&preparees=2"
    page = client.get(answer.headers["location"]).text
    assert "2 listes préparées, une par service producteur." in page
    with api.runtime.sessions() as session:
        producers = [d.producer for d in session.scalars(select(DisposalList))]
    assert sorted(producers) == ["A", "B"]
