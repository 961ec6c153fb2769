"""The server's OCR (``SAE_OCR=1``, issue #20 item 3) with the real ocrmypdf and Tesseract: an
archived scan gets a searchable PDF/A-2b in its object group, stored on every offer and
journaled; the scan stays the master, unchanged; a failure is recorded and never touches the
scan; ``sae rebuild`` restores the PDF/A from the journal."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import select

from sae.catalog.models import DataObject
from sae.config import Settings
from sae.extraction.models import OcrJob
from sae.extraction.ocr import MAX_ATTEMPTS, VERSION
from sae.extraction.ocrmypdf import available, is_pdfa2
from sae.extraction.worker import TextWorker
from sae.journal.models import Event
from sae.recovery.rebuild import rebuild
from sae.storage.models import ObjectCopy
from tests.conftest import Api, require
from tests.console.helpers import signed_in
from tests.extraction.scans import scan
from tests.recovery.test_rebuild import (  # noqa: F401 - the fixture applies here too
    _other_owners_pending,
    publish,
    running,
    sqlite_target,
)
from tests.sipfactory import FileSpec, SipSpec, UnitSpec, build_zip


@pytest.fixture(autouse=True)
def _ocrmypdf() -> None:
    require(available(), "ocrmypdf (Debian packages ocrmypdf and tesseract-ocr-fra)")


@pytest.fixture
def ocr_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ocr": True, "ocr_workers": 2})


def _deposit(api: Api, image: bytes, broken: bytes, pdf: bytes) -> dict[str, str]:
    spec = SipSpec(
        message_id="MSG-OCR",
        producer="MAIRIE",
        transferring="MAIRIE",
        files=[
            FileSpec(uri="Content/scan.png", data=image, mime="image/png"),
            FileSpec(uri="Content/abime.png", data=broken, mime="image/png"),
            FileSpec(uri="Content/scan.pdf", data=pdf),
        ],
        units=[
            UnitSpec(
                id="AU-root",
                title="Registre",
                level="RecordGrp",
                children=[
                    UnitSpec(id="AU-scan", title="Délibération n° 12", files=[0]),
                    UnitSpec(id="AU-abime", title="Pièce abîmée", files=[1]),
                    UnitSpec(id="AU-pdf", title="Plan", files=[2]),
                ],
            )
        ],
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    return {u["sip_id"]: u["id"] for u in response.json()["units"]}


def _settle(api: Api, worker: TextWorker, jobs: int) -> None:
    """Run the worker's rounds until every scan has a job (the app's own worker, which runs
    every 10 s, may hold the lease and do the work: then wait for it)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        worker.run_once()
        with api.runtime.sessions() as session:
            states = session.scalars(select(OcrJob.state)).all()
        if len(states) >= jobs and all(s in ("done", "failed", "skipped") for s in states):
            return
        time.sleep(0.5)
    raise AssertionError(f"the OCR did not settle: {states}")


def _found(api: Api, q: str, token: str | None = None) -> list[str]:
    response = api.client.get("/api/v1/units", params={"q": q}, headers=api.auth(token))
    assert response.status_code == 200, response.text
    return [u["sip_id"] for u in response.json()["items"]]


def _group(api: Api, unit_id: str, token: str | None = None) -> dict[str, Any]:
    """The objects of a unit's group by DataObjectVersion."""
    unit = api.client.get(f"/api/v1/units/{unit_id}", headers=api.auth(token)).json()
    found = {}
    for summary in unit["objects"]:
        obj = api.client.get(f"/api/v1/objects/{summary['id']}", headers=api.auth(token)).json()
        found[obj["data_object_version"]] = obj
    return found


def test_a_scan_gets_its_searchable_pdfa_and_a_rebuild_restores_it(
    ocr_settings: Settings, tmp_path: Path
) -> None:
    image = scan(tmp_path / "scan.png")
    broken = image[:300]  # its header is a PNG's, its pixels are missing
    Image.open(tmp_path / "scan.png").save(tmp_path / "scan.pdf", resolution=300)
    pdf = (tmp_path / "scan.pdf").read_bytes()  # a scan saved as PDF: pages without text
    with running(ocr_settings) as api:
        ids = _deposit(api, image, broken, pdf)
        worker = TextWorker(api.runtime.sessions, ocr_settings, api.runtime.offer_set)
        _settle(api, worker, jobs=3)
        leftovers = [
            p.name
            for p in (ocr_settings.data_dir / "tmp").iterdir()
            if p.name.startswith(("ocr-", "object-"))
        ]
        assert leftovers == []  # the spooled scans and PDF/A are removed
        group = _group(api, ids["AU-scan"])
        assert set(group) == {"BinaryMaster_1", VERSION}
        master, pdfa = group["BinaryMaster_1"], group[VERSION]
        assert master["sha512"] == hashlib.sha512(image).hexdigest()  # untouched
        assert master["status"] == "active"
        assert pdfa["mime_type"] == "application/pdf"
        assert pdfa["group_id"] == master["group_id"]
        offers = set(api.runtime.offer_set.strategy)
        assert {c["offer"] for c in pdfa["copies"]} == offers  # every offer of the strategy
        content = api.client.get(f"/api/v1/objects/{pdfa['id']}/content", headers=api.auth())
        assert hashlib.sha512(content.content).hexdigest() == pdfa["sha512"]
        pdf_path = tmp_path / "pdfa.pdf"
        pdf_path.write_bytes(content.content)
        assert is_pdfa2(pdf_path)
        assert "tilleuls" in PdfReader(io.BytesIO(content.content)).pages[0].extract_text().lower()
        assert sorted(_found(api, "lampadaires tilleuls")) == ["AU-pdf", "AU-scan"]
        with api.runtime.sessions() as session:
            events = session.scalars(select(Event).where(Event.type == "ocr.object_added")).all()
            assert len(events) == 2  # the PNG's and the image-only PDF's
            (event,) = [e for e in events if e.object_id == pdfa["id"]]
            assert event.payload["master_id"] == master["id"]
            jobs = {j.object_id: j for j in session.scalars(select(OcrJob))}
        assert jobs[master["id"]].state == "done"
        assert jobs[master["id"]].derived_id == pdfa["id"]

        # The scan saved as PDF is OCRed too (its text reader found pages, no text).
        assert set(_group(api, ids["AU-pdf"])) == {"BinaryMaster_1", VERSION}

        # The broken scan: recorded as failed, tried again later, never lost.
        failed = _group(api, ids["AU-abime"])
        assert set(failed) == {"BinaryMaster_1"}
        assert failed["BinaryMaster_1"]["sha512"] == hashlib.sha512(broken).hexdigest()
        job = jobs[failed["BinaryMaster_1"]["id"]]
        assert (job.state, job.attempts) == ("failed", 1)
        assert "ocrmypdf a échoué" in (job.error or "")
        assert job.next_try_at is not None
        worker.run_once()  # not due again yet: nothing redone, nothing doubled
        with api.runtime.sessions() as session:
            assert session.get(OcrJob, job.object_id).attempts == 1  # type: ignore[union-attr]
            assert len(session.scalars(select(DataObject)).all()) == 5
        metrics = api.client.get("/metrics", headers=api.auth()).text
        assert "sae_ocr_done 2.0" in metrics
        assert "sae_ocr_failed 1.0" in metrics
        assert MAX_ATTEMPTS > 1
        # The archivist sees the failure on the console's dashboard, with its reason.
        page = signed_in(api).get("/console/")
        assert page.status_code == 200
        assert "Océrisation des numérisations" in page.text
        assert job.object_id in page.text
        assert "ocrmypdf a échoué" in page.text
        api.client.cookies.clear()
        publish(api)

    target = sqlite_target(tmp_path)
    report = rebuild(ocr_settings, "local", target)
    assert report.admin_token_path is not None
    token = report.admin_token_path.read_text().strip()
    with running(ocr_settings.model_copy(update={"database_url": target})) as api:
        rebuilt = _group(api, ids["AU-scan"], token)
        assert rebuilt[VERSION]["sha512"] == pdfa["sha512"]
        assert rebuilt[VERSION]["id"] == pdfa["id"]
        assert {c["offer"] for c in rebuilt[VERSION]["copies"]} == offers
        assert sorted(_found(api, "lampadaires tilleuls", token)) == ["AU-pdf", "AU-scan"]
        with api.runtime.sessions() as session:
            assert session.get(OcrJob, master["id"]).state == "done"  # type: ignore[union-attr]
            assert session.scalars(
                select(ObjectCopy).where(ObjectCopy.object_id == pdfa["id"])
            ).all()
