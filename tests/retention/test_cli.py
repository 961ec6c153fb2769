"""``sae retention``: the whole circuit from the shell."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sae.catalog.models import ArchiveUnit
from sae.cli import app
from sae.retention.models import DisposalList
from tests.conftest import Api
from tests.retention.helpers import Clock, dossier_sip, events


def test_run_approve_visa_execute(api: Api, clock: Clock, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    clock.set(date(2015, 1, 1))
    assert api.deposit(dossier_sip("MSG-CLI", producer="FINANCES")).status_code == 201
    assert api.deposit(dossier_sip("MSG-CLI2", producer="CCAS")).status_code == 201
    clock.set(date(2021, 6, 1))
    runner = CliRunner()
    # The shell user names the CLI archivist: Marie builds the lists, Paul approves (four eyes).
    monkeypatch.setenv("LOGNAME", "marie")
    result = runner.invoke(app, ["retention", "run", "--final-action", "Destroy"])
    assert result.exit_code == 0, result.output
    with api.runtime.sessions() as session:
        made = list(session.scalars(select(DisposalList).order_by(DisposalList.reference)))
    assert [d.producer for d in made] == ["CCAS", "FINANCES"]  # one list per producer
    list_id = made[1].id
    bordereau = tmp_path / "b.pdf"
    result = runner.invoke(app, ["retention", "bordereau", list_id, "--output", str(bordereau)])
    assert result.exit_code == 0, result.output
    assert bordereau.read_bytes().startswith(b"%PDF")
    result = runner.invoke(app, ["retention", "execute", list_id])
    assert result.exit_code == 1
    assert "disposal.execution_refused" in result.output
    result = runner.invoke(app, ["retention", "approve", list_id, "--comment", "ok"])
    assert result.exit_code == 1
    assert "disposal.four_eyes" in result.output
    monkeypatch.setenv("LOGNAME", "paul")
    result = runner.invoke(app, ["retention", "approve", list_id, "--comment", "ok"])
    assert result.exit_code == 0, result.output
    visa = tmp_path / "visa.pdf"
    visa.write_bytes(b"%PDF-1.4\n% visa\n%%EOF\n")
    result = runner.invoke(app, ["retention", "visa", list_id, "--document", str(visa),
                                 "--reference", "AD93-7", "--decision-date", "2021-05-30"])
    assert result.exit_code == 0, result.output
    with api.runtime.sessions() as session:
        visa_unit = session.get(ArchiveUnit, session.get(DisposalList, list_id).visa_unit_id)
        assert visa_unit is not None
        # Recorded as the API and the console record it (one domain function).
        assert "décision AD93-7 du 2021-05-30" in (visa_unit.description or "")
    result = runner.invoke(app, ["retention", "execute", list_id])
    assert result.exit_code == 0, result.output
    assert "executed" in result.output
    assert len(events(api, "disposal.object_destroyed")) == 2
    result = runner.invoke(app, ["retention", "lists"])
    assert result.exit_code == 0, result.output


def test_import_shipped_hold_and_unhold(api: Api, clock: Clock,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    runner = CliRunner()
    result = runner.invoke(app, ["retention", "import-shipped"])
    assert result.exit_code == 0, result.output
    assert "referential imported" in result.output
    spec = dossier_sip("MSG-CLI-HOLD", rule="APP-120-01", start=date(2010, 1, 1))
    units = api.deposit(spec).json()["units"]
    result = runner.invoke(app, ["retention", "hold", units[0]["id"], "--reason", "Contentieux"])
    assert result.exit_code == 0, result.output
    hold_id = result.stdout.strip().splitlines()[-1]
    assert events(api, "hold.placed")
    result = runner.invoke(app, ["retention", "unhold", hold_id])
    assert result.exit_code == 0, result.output
    assert events(api, "hold.lifted")
    result = runner.invoke(app, ["retention", "recompute"])
    assert result.exit_code == 0, result.output
