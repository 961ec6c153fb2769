"""``sae deposit --ocr``: the scans of a deposit OCRed before their SIPs are built.

Each image (TIFF, JPEG, PNG) and each PDF without a text layer of the plan becomes a searchable
PDF/A-2b (:func:`sae.extraction.ocrmypdf.to_pdfa`, French by default) written to a private
working folder; it joins its row's object group as ``Dissemination_1`` beside the scan, which
stays the master (``BinaryMaster_1``) and is sent unchanged. Files are OCRed a few at a time
(``workers``, each ocrmypdf on one core). A file whose OCR fails is deposited alone, with a
warning naming its row: the clerk's deposit never depends on the OCR.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sae.deposit.build import CHUNK, DerivedFile, PlannedFile
from sae.extraction.ocrmypdf import IMAGE_TYPES, OcrFailed, to_pdfa
from sae.extraction.pdftext import pdf_text

#: The DataObjectVersion of the OCRed PDF/A: a copy for consultation (and search) of the
#: master scan — what SEDA calls a dissemination version; TextContent is meant for raw text.
VERSION = "Dissemination_1"
#: The suffix of the PDF/A's name in the SIP, after the scan's own (``plan.tif.ocr.pdf``).
SUFFIX = ".ocr.pdf"


def needs_ocr(item: PlannedFile) -> bool:
    """An image, or a PDF that opens and has pages but no text (a scan saved as PDF)."""
    if item.mime_type in IMAGE_TYPES:
        return True
    if item.mime_type != "application/pdf":
        return False
    extracted = pdf_text(item.path)
    return extracted.state == "empty" and extracted.pages > 0


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha512()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def add_ocr(
    items: Sequence[PlannedFile],
    workdir: Path,
    *,
    languages: str = "fra",
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """OCR the scans of ``items`` into ``workdir`` and add each PDF/A to its item's
    ``derived``; the warnings (in French, one per file whose OCR failed)."""
    todo = [(n, item) for n, item in enumerate(items) if needs_ocr(item)]
    taken = {item.uri for item in items}
    warnings: list[str] = []

    def one(job: tuple[int, PlannedFile]) -> tuple[PlannedFile, DerivedFile | str]:
        n, item = job
        uri = item.uri + SUFFIX
        if uri in taken:
            return item, f"« {uri} » est déjà un fichier du dépôt : OCR non ajouté"
        out = workdir / f"{n:06d}.pdf"
        try:
            to_pdfa(item.path, out, mime_type=item.mime_type, languages=languages)
        except OcrFailed as exc:
            return item, exc.detail
        sha512, size = _digest(out)
        return item, DerivedFile(out, uri, size, sha512, "application/pdf", VERSION)

    count = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="sae-ocr") as pool:
        for item, result in pool.map(one, todo):
            if isinstance(result, DerivedFile):
                item.derived.append(result)
            else:
                warnings.append(
                    f"ligne {item.row.line} : OCR impossible ({result}), le fichier est déposé"
                    " sans sa version texte"
                )
            if progress is not None:
                progress(1)
    return warnings
