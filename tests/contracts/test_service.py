"""The file clauses read the identification result: PRONOM ids when the ingest has them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from sae.contracts import service
from sae.contracts.service import ChecksRun, ContractSpec, ObjectFacts


def test_the_format_clause_matches_puids_and_mime_types(db_session: Session) -> None:
    service.save_contract(
        db_session,
        ContractSpec(id="C-PUID", name="PUID", producers=["P"], formats=["fmt/18", "image/png"]),
    )
    objects = [
        ObjectFacts("PDF-A", 10, mime_type="application/pdf", puid="fmt/18"),
        ObjectFacts("PNG", 10, mime_type="image/png", puid="fmt/11"),
        ObjectFacts("PDF-17", 10, mime_type="application/pdf", puid="fmt/276"),
        ObjectFacts("UNIDENTIFIED", 10, mime_type="application/pdf"),
    ]
    faults = service.object_faults(db_session, "C-PUID", objects)
    assert [(f.code, f.where) for f in faults] == [
        ("contract.format", "PDF-17"),
        ("contract.format", "UNIDENTIFIED"),
    ]
    assert "format PRONOM fmt/276, application/pdf non accepté" in faults[0].message
    assert "(acceptés : fmt/18, image/png)" in faults[0].message
    assert service.object_faults(db_session, None, objects) == []


def test_ocr_is_satisfied_by_a_text_version_or_the_servers_ocr(db_session: Session) -> None:
    service.save_contract(
        db_session, ContractSpec(id="C-OCR", name="OCR", producers=["P"], ocr_required=True)
    )
    scan = ObjectFacts("SCAN", 10, mime_type="image/tiff", version="BinaryMaster_1", group_id="G")
    text = ObjectFacts(
        "TXT", 10, mime_type="application/pdf", version="TextContent_1", group_id="G"
    )
    assert service.object_faults(db_session, "C-OCR", [scan, text]) == []
    faults = service.object_faults(db_session, "C-OCR", [scan])
    assert [f.code for f in faults] == ["contract.ocr_required"]
    assert "(étape absente de cette version)" in faults[0].message
    off = service.object_faults(db_session, "C-OCR", [scan], ChecksRun(ocr=False))
    assert "(OCR du serveur désactivé)" in off[0].message
    assert service.object_faults(db_session, "C-OCR", [scan], ChecksRun(ocr=True)) == []
