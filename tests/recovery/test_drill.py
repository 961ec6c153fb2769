"""The restore drill (issue 17, item 4): rebuild from each offer into a scratch catalogue,
compare with the live one, archive the report, journal the outcome, show it on the dashboard."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from sae import db
from sae.catalog.models import ArchiveUnit
from sae.journal.models import Event
from sae.journal.sealing import seal_now
from sae.models import Base
from sae.recovery import drill
from sae.recovery.compare import compare_catalogues
from tests.conftest import Api
from tests.console.helpers import signed_in
from tests.sipfactory import build_zip, simple_sip


def _deposit(api: Api, count: int) -> list[str]:
    ids = []
    for i in range(count):
        response = api.deposit(
            build_zip(simple_sip(f"DRILL-{i}", payload=b"%PDF-1.4\n" + bytes([i]) * 50))
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["transfer_id"])
    return ids


def _copy_catalogue(api: Api, target: Path) -> str:
    """A plain copy of every table of the live catalogue into a new SQLite file."""
    from sae.migrate import upgrade

    url = f"sqlite:///{target}"
    engine = db.make_engine(url)
    upgrade(engine)
    live_engine = api.runtime.sessions.kw["bind"]
    with live_engine.connect() as source, engine.begin() as dest:
        for table in Base.metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = [dict(r._mapping) for r in source.execute(table.select())]
            dest.execute(table.delete())
            if rows:
                dest.execute(table.insert(), rows)
    engine.dispose()
    return url


def test_compare_says_identical_then_names_what_differs(api: Api, tmp_path: Path) -> None:
    _deposit(api, 3)
    # The background sealer would otherwise add a head to the live side after the copy.
    seal_now(api.runtime.sessions, api.runtime.settings, wait=True)
    url = _copy_catalogue(api, tmp_path / "copy.db")
    engine = db.make_engine(url)
    try:
        with api.runtime.sessions() as live, Session(engine) as copy:
            result = compare_catalogues(live, copy)
            assert result.identical, result.differences
            assert result.counts_live["archive_units"] == 6  # two units a SIP
            assert result.counts_live == result.counts_rebuilt
            unit = copy.scalars(select(ArchiveUnit)).first()
            assert unit is not None
            copy.execute(update(ArchiveUnit).where(ArchiveUnit.id == unit.id).values(title="Autre"))
            copy.commit()
            result = compare_catalogues(live, copy)
        assert not result.identical
        kinds = {(d.kind, d.subject) for d in result.differences}
        assert ("row", "archive_units") in kinds
        (row,) = [d for d in result.differences if d.kind == "row"]
        assert row.columns == ("title",)
        assert ("unit", "units") in kinds
        named = [d for d in result.differences if d.kind == "unit"]
        assert [d.key for d in named] == [unit.id]
    finally:
        engine.dispose()


def test_drill_due_follows_the_interval(api: Api) -> None:
    sessions = api.runtime.sessions
    with sessions() as session:
        assert not drill.drill_due(session, 30)  # the first event is fresh
        assert not drill.drill_due(session, 0)  # 0: never
    with db.transaction(sessions) as session:
        session.execute(update(Event).values(occurred_at=db.utcnow() - timedelta(days=31)))
    with sessions() as session:
        assert drill.drill_due(session, 30)
        assert not drill.drill_due(session, 0)


def test_drill_on_a_healthy_archive_is_identical_then_names_an_altered_unit(api: Api) -> None:
    _deposit(api, 3)
    runtime = api.runtime
    report = drill.run_drill(
        runtime.sessions, runtime.settings, runtime.offer_set, drill.rebuild_into
    )
    assert report.outcome == drill.IDENTICAL, report.to_json().decode()
    assert [o.offer for o in report.offers] == runtime.offer_set.strategy
    drill.record_drill(runtime.sessions, runtime.settings, runtime.offer_set, report, actor="test")
    assert len(report.record_units) == 2
    # The report is a record of the archives service: JSON and PDF readable through the API.
    for unit_id, magic in zip(report.record_units, (b"{", b"%PDF"), strict=True):
        unit = api.client.get(f"/api/v1/units/{unit_id}", headers=api.auth()).json()
        content = api.client.get(unit["objects"][0]["url"] + "/content", headers=api.auth())
        assert content.status_code == 200
        assert content.content.startswith(magic)
    data = json.loads(
        api.client.get(
            api.client.get(f"/api/v1/units/{report.record_units[0]}", headers=api.auth()).json()[
                "objects"
            ][0]["url"]
            + "/content",
            headers=api.auth(),
        ).content
    )
    assert data["format"] == drill.FORMAT
    assert data["outcome"] == "identical"
    with runtime.sessions() as session:
        last = drill.last_drill(session)
    assert last is not None
    assert last.outcome == "identical"
    page = signed_in(api).get("/console/")
    assert page.status_code == 200
    assert "Exercice de restauration" in page.text
    assert "Identique" in page.text
    api.client.cookies.clear()

    # One unit altered in the live catalogue: the drill says which.
    with db.transaction(runtime.sessions) as session:
        victim = session.scalars(
            select(ArchiveUnit.id).where(ArchiveUnit.title != "").limit(1)
        ).one()
        session.execute(
            text("UPDATE archive_units SET title = 'Altéré' WHERE id = :id"), {"id": victim}
        )
    report = drill.run_drill(
        runtime.sessions, runtime.settings, runtime.offer_set, drill.rebuild_into
    )
    assert report.outcome == drill.DIFFERENT
    for offer in report.offers:
        assert offer.comparison is not None
        keys = {(d.kind, d.key) for d in offer.comparison.differences}
        assert ("unit", victim) in keys, offer.comparison.differences
        # The row is named with the column that differs, in the JSON and the French PDF.
        rows = [d for d in offer.comparison.differences if d.kind == "row"]
        assert [(d.subject, d.columns) for d in rows] == [("archive_units", ("title",))], rows
        assert rows[0].as_dict()["columns"] == ["title"]


def test_the_command_exits_0_only_when_identical(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sae.cli import app as cli

    _deposit(api, 2)
    runner = CliRunner()
    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    done = runner.invoke(cli, ["drill", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["outcome"] == "identical"
    assert [o["offer"] for o in report["offers"]] == api.runtime.offer_set.strategy

    with db.transaction(api.runtime.sessions) as session:
        session.execute(text("UPDATE archive_units SET title = 'Altéré'"))
    done = runner.invoke(cli, ["drill"])
    assert done.exit_code == 1, done.output
    said = " ".join(done.output.split())
    assert "drill different" in said
    assert "archive_units" in said


def test_the_api_answers_are_sampled_only_when_every_row_is_the_same() -> None:
    """A sample chosen by hash: the same keys on both sides, about one in ``stride``."""
    import uuid

    from sae.recovery.compare import _in_sample

    keys = [str(uuid.uuid4()) for _ in range(3000)]
    chosen = [k for k in keys if _in_sample(k, 3)]
    assert 800 < len(chosen) < 1200
    assert chosen == [k for k in keys if _in_sample(k, 3)]
    assert all(_in_sample(k, 1) for k in keys)
