"""The text layer of archived PDFs feeds search (issue #19 item 3): found by a word of its
body, not its title; gone when the object or the unit is destroyed; back after a rebuild."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from sae import leases
from sae.catalog.models import ArchiveUnit, DataObject, ObjectText
from sae.catalog.objecttext import SEPARATOR, refresh_groups
from sae.db import transaction
from sae.extraction.pdftext import pdf_text
from sae.extraction.service import extract_pending, read_text, record_texts
from sae.extraction.worker import LEASE, TextWorker
from sae.ingest.models import Transfer
from sae.recovery.rebuild import rebuild
from tests.conftest import Api
from tests.extraction.pdfs import encrypted_pdf, text_pdf
from tests.extraction.scans import scan
from tests.recovery.test_rebuild import (  # noqa: F401 - the fixture applies here too
    _other_owners_pending,
    publish,
    running,
    sqlite_target,
)
from tests.sipfactory import FileSpec, SipSpec, UnitSpec, build_zip

BODY = [
    "Rapport annuel sur la voirie communale.",
    "Le remplacement des lampadaires de la rue des Tilleuls est prévu en 2025.",
]


def test_the_text_layer_is_read_folded_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(text_pdf("Rapport", BODY))
    extracted = pdf_text(path)
    assert extracted.state == "text"
    assert extracted.pages == 2
    assert "lampadaires de la rue des tilleuls est prevu" in extracted.text
    # Neither broken nor encrypted is a failure: no text, and a note for the archivist.
    path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage")
    broken = pdf_text(path)
    assert (broken.state, broken.text) == ("empty", "")
    assert broken.note
    path.write_bytes(encrypted_pdf("Texte confidentiel"))
    locked = pdf_text(path)
    assert (locked.state, locked.text) == ("empty", "")
    assert locked.note == "PDF chiffré : texte non lisible"
    path.write_bytes(text_pdf("Vide", [""]))
    assert pdf_text(path).state == "empty"
    # A scan saved as PDF (pages that are images): no text, the note the OCR looks for.
    scan(tmp_path / "scan.png")
    Image.open(tmp_path / "scan.png").save(path, resolution=300)
    image_only = pdf_text(path)
    assert (image_only.state, image_only.pages) == ("empty", 1)
    assert (image_only.note or "").startswith("aucun texte")


def _deposit(api: Api, message_id: str = "MSG-TEXT") -> dict[str, str]:
    spec = SipSpec(
        message_id=message_id,
        producer="MAIRIE",
        transferring="MAIRIE",
        files=[
            FileSpec(uri="Content/rapport.pdf", data=text_pdf("Rapport", BODY)),
            FileSpec(uri="Content/autre.pdf", data=text_pdf("Autre", ["Budget primitif."])),
        ],
        units=[
            UnitSpec(
                id="AU-root",
                title="Dossier voirie",
                level="RecordGrp",
                children=[
                    UnitSpec(id="AU-rapport", title="Rapport annuel", files=[0]),
                    UnitSpec(id="AU-budget", title="Budget", files=[1]),
                ],
            )
        ],
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    return {u["sip_id"]: u["id"] for u in response.json()["units"]}


def _found(api: Api, q: str) -> list[str]:
    response = api.client.get("/api/v1/units", params={"q": q}, headers=api.auth())
    assert response.status_code == 200, response.text
    return [u["sip_id"] for u in response.json()["items"]]


def _extract(api: Api) -> None:
    extract_pending(
        api.runtime.sessions, api.runtime.offer_set.copies(), api.settings.data_dir / "tmp"
    )


def test_a_word_of_a_pdf_body_finds_its_unit_until_destroyed(api: Api) -> None:
    ids = _deposit(api)
    assert _found(api, "tilleuls") == []  # not in any description
    _extract(api)
    assert _found(api, "Tilleuls lampadaires") == ["AU-rapport"]
    assert _found(api, '"rue des tilleuls"') == ["AU-rapport"]
    assert _found(api, "primitif") == ["AU-budget"]
    with api.runtime.sessions() as session:
        rows = session.scalars(select(ObjectText).order_by(ObjectText.pages)).all()
        assert [(r.state, r.source, r.pages) for r in rows] == [("text", "pdf", 1)] + [
            ("text", "pdf", 2)
        ]
        unit = session.get(ArchiveUnit, ids["AU-rapport"])
        assert unit is not None
        assert unit.search_text.split(SEPARATOR)[0] == "rapport annuel\nau-rapport\nmairie"
    # A second round reads nothing again.
    done = extract_pending(
        api.runtime.sessions, api.runtime.offer_set.copies(), api.settings.data_dir / "tmp"
    )
    assert (done.read, done.skipped) == (0, [])

    # The object destroyed (the unit kept): its text leaves the row table and the index.
    with transaction(api.runtime.sessions) as session:
        unit = session.get(ArchiveUnit, ids["AU-rapport"])
        assert unit is not None
        obj = session.scalars(
            select(DataObject).where(DataObject.group_id == unit.data_object_group_id)
        ).one()
        obj.status = "destroyed"
        session.flush()
        refresh_groups(session, [obj.group_id])
    assert _found(api, "tilleuls") == []
    assert _found(api, "rapport annuel") == ["AU-rapport"]  # its own description stays
    with api.runtime.sessions() as session:
        assert session.get(ObjectText, obj.id) is None  # the trigger of 0021

    # The unit destroyed: its objects' text goes with its description.
    with transaction(api.runtime.sessions) as session:
        unit = session.get(ArchiveUnit, ids["AU-budget"])
        assert unit is not None
        unit.status = "destroyed"
        unit.forget_description()
    assert _found(api, "primitif") == []


def test_a_rebuild_reads_the_text_again(settings: Any, tmp_path: Path) -> None:
    with running(settings) as api:
        _deposit(api, "MSG-TEXT-REB")
        _extract(api)
        assert _found(api, "tilleuls") == ["AU-rapport"]
        publish(api)
    target = sqlite_target(tmp_path)
    report = rebuild(settings, "local", target)
    assert report.admin_token_path is not None
    with running(settings.model_copy(update={"database_url": target})) as api:
        api.token_value = report.admin_token_path.read_text().strip()
        response = api.client.get(
            "/api/v1/units",
            params={"q": "tilleuls"},
            headers={"Authorization": f"Bearer {api.token_value}"},
        )
        assert response.status_code == 200, response.text
        assert [u["sip_id"] for u in response.json()["items"]] == ["AU-rapport"]


@pytest.mark.parametrize("broken", [b"%PDF-1.7\nnot really", encrypted_pdf("Secret")])
def test_a_pdf_without_readable_text_is_no_ingest_failure(api: Api, broken: bytes) -> None:
    spec = SipSpec(
        message_id="MSG-BROKEN",
        producer="MAIRIE",
        transferring="MAIRIE",
        files=[FileSpec(uri="Content/x.pdf", data=broken)],
        units=[UnitSpec(id="AU-x", title="Pièce", files=[0])],
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    _extract(api)
    with api.runtime.sessions() as session:
        row = session.scalars(select(ObjectText)).one()
    assert (row.state, row.text) == ("empty", "")
    assert _found(api, "piece") == ["AU-x"]


def test_a_batch_is_recorded_whole_even_when_another_process_read_one_first(api: Api) -> None:
    """The PDFs of a batch are recorded in one transaction; a row another process wrote first
    (a lease overlapping its expiry) does not cost the batch the others."""
    _deposit(api, "MSG-TEXT-BATCH")
    with api.runtime.sessions() as session:
        objects = session.scalars(select(DataObject).where(DataObject.kind == "binary")).all()
        session.expunge_all()
    assert len(objects) == 2
    offers = api.runtime.offer_set.copies()
    directory = api.settings.data_dir / "tmp"
    read = [read_text(offers, obj, directory) for obj in objects]
    assert all(r is not None and r.state == "text" for r in read)
    record_texts(api.runtime.sessions, [(objects[0], read[0])])  # the other process
    record_texts(api.runtime.sessions, [(o, r) for o, r in zip(objects, read, strict=True) if r])
    with api.runtime.sessions() as session:
        rows = session.scalars(select(ObjectText)).all()
        assert sorted(r.object_id for r in rows) == sorted(o.id for o in objects)
    assert _found(api, "tilleuls") == ["AU-rapport"]
    assert _found(api, "primitif") == ["AU-budget"]


def test_the_reader_renews_its_lease_once_a_minute_not_after_each_pdf(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without waiting for a pause in the deposits (tested below): read at once.
    settings = api.settings.model_copy(update={"text_wait_minutes": 0})
    worker = TextWorker(api.runtime.sessions, settings, api.runtime.offer_set)
    _deposit(api, "MSG-TEXT-LEASE")
    writes: list[str] = []
    real = leases.take

    def counted(*args: Any, **kwargs: Any) -> bool:
        writes.append(args[1])
        return real(*args, **kwargs)

    # The test server's own reader may hold the lease: let it go, as at that reader's stop.
    held = leases.holder(api.runtime.sessions, LEASE)
    if held is not None:
        leases.release(api.runtime.sessions, LEASE, held[0])
    monkeypatch.setattr(leases, "take", counted)
    assert worker.run_once() is not None  # two PDFs, the lease taken once
    assert worker.run_once() is not None  # a round soon after: not written again
    assert [name for name in writes if name == LEASE] == [LEASE]  # the sealer's are its own
    held = leases.holder(api.runtime.sessions, LEASE)
    assert held is not None
    assert held[0] == worker.owner
    with api.runtime.sessions() as session:
        assert len(session.scalars(select(ObjectText)).all()) == 2


def _texts(api: Api) -> int:
    with api.runtime.sessions() as session:
        return len(session.scalars(select(ObjectText)).all())


def _age(api: Api, table: Any, column: str, by: timedelta) -> None:
    """Every row's ``column`` made ``by`` older (in Python: date arithmetic in SQL is each
    database's own)."""
    with transaction(api.runtime.sessions) as session:
        for row in session.scalars(select(table)):
            setattr(row, column, getattr(row, column) - by)


def test_the_reader_leaves_the_processors_to_deposits(api: Api) -> None:
    """While deposits arrive (one received in the last ten seconds) the reader reads only the
    PDFs that have waited SAE_TEXT_WAIT_MINUTES; the others once deposits pause."""
    assert api.settings.text_wait_minutes == 10  # the default
    worker = TextWorker(api.runtime.sessions, api.settings, api.runtime.offer_set)
    held = leases.holder(api.runtime.sessions, LEASE)  # the test server's own reader
    if held is not None:
        leases.release(api.runtime.sessions, LEASE, held[0])
    _deposit(api, "MSG-TEXT-BUSY")
    done = worker.run_once()
    assert done is not None  # this worker holds the lease: the round ran, and read nothing
    assert (done.read, _texts(api)) == (0, 0)
    # PDFs archived eleven minutes ago, deposits still arriving: they have waited enough.
    _age(api, DataObject, "created_at", timedelta(minutes=11))
    _deposit(api, "MSG-TEXT-BUSY-2")
    done = worker.run_once()
    assert done is not None
    assert (done.read, _texts(api)) == (2, 2)  # the old ones, not the new deposit's
    # A pause: the last deposit was received ten seconds ago.
    _age(api, Transfer, "received_at", timedelta(seconds=10))
    done = worker.run_once()
    assert done is not None
    assert (done.read, _texts(api)) == (2, 4)
