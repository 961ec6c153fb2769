"""DIP export: manifest valid against the official XSD, objects intact, proofs that verify."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

import seda
from sae.journal.bundle import verify_bundle
from sae.journal.models import Event
from tests.conftest import Api
from tests.sipfactory import FileSpec, RuleSpec, UnitSpec, build_zip, simple_sip


def _deposit_dossier(api: Api) -> dict[str, str]:
    spec = simple_sip("MSG-DIP")
    spec.files.append(FileSpec(uri="Content/plan cadastral.tif", data=b"II*\x00 plan", mime=None))
    spec.units[0].children.append(
        UnitSpec(
            id="AU-2",
            title="Plan annexé",
            files=[1],
            rules=[RuleSpec("AccessRule", "ACC-50Y", date(2020, 1, 1))],
        )
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    return {u["sip_id"]: u["id"] for u in response.json()["units"]}


def test_dip_of_a_dossier(api: Api, xsd_dir: Path) -> None:
    units = _deposit_dossier(api)
    response = api.client.get(f"/api/v1/units/{units['AU-root']}/dip", headers=api.auth())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = zf.namelist()
        manifest = zf.read("manifest.xml")
        root = seda.safe_parse(manifest)
        assert root.tag.endswith("ArchiveDeliveryRequestReply")
        assert seda.XsdValidator(xsd_dir).validate(root, "2.2") == []
        contents = [n for n in names if n.startswith("Content/")]
        proofs = [n for n in names if n.startswith("proofs/")]
        assert len(contents) == 2
        assert len(proofs) == 2
        for proof in proofs:
            object_id = proof.removeprefix("proofs/").removesuffix(".zip")
            content_name = next(n for n in contents if object_id in n)
            report = verify_bundle(zf.read(proof), content=zf.read(content_name))
            assert report.failure is None, report.failure
        assert "Arrêté n°1 — rue de la Paix".encode() in manifest
    with api.runtime.sessions() as session:
        exported = session.scalars(select(Event).where(Event.type == "access.dip_exported")).all()
    assert len(exported) == 1
    assert exported[0].unit_id == units["AU-root"]


def test_reader_gets_only_what_is_communicable(api: Api) -> None:
    units = _deposit_dossier(api)
    reader = api.token("reader")
    response = api.client.get(f"/api/v1/units/{units['AU-root']}/dip", headers=api.auth(reader))
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        contents = [n for n in zf.namelist() if n.startswith("Content/")]
        assert len(contents) == 1  # the plan is under a 50-year delay
        manifest = zf.read("manifest.xml").decode()
        # Not even named: a unit not yet communicable is invisible to a reader (issue 19).
        assert units["AU-2"] not in manifest
        assert "Plan annexé" not in manifest
        data = zf.read(contents[0])
    assert hashlib.sha512(data).hexdigest()


def test_dip_of_an_unknown_or_foreign_unit(api: Api) -> None:
    units = _deposit_dossier(api)
    other = api.token("depositor", ["FINANCES"])
    assert (
        api.client.get(f"/api/v1/units/{units['AU-root']}/dip", headers=api.auth(other)).status_code
        == 404
    )
    assert api.client.get("/api/v1/units/nope/dip", headers=api.auth()).status_code == 404


def test_a_dip_whose_export_cannot_be_journaled_is_not_kept(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of an archive is journaled: when the journal cannot take the export (the
    database down), the DIP is neither handed out nor left in the spool; the answer is a 503."""
    from sqlalchemy.exc import OperationalError

    from sae.access import dip

    units = _deposit_dossier(api)

    def database_down(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT INTO events", {}, Exception("server closed the connection"))

    monkeypatch.setattr(dip, "append_event", database_down)
    response = api.client.get(f"/api/v1/units/{units['AU-root']}/dip", headers=api.auth())
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "service.database_unavailable"
    assert response.headers["retry-after"] == "30"
    assert list((api.settings.data_dir / "tmp").glob("dip-*")) == []
    monkeypatch.undo()
    again = api.client.get(f"/api/v1/units/{units['AU-root']}/dip", headers=api.auth())
    assert again.status_code == 200
