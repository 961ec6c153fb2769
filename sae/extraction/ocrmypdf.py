"""OCR of a scan into a searchable PDF/A-2b with ``ocrmypdf`` and Tesseract (Debian packages
``ocrmypdf`` and ``tesseract-ocr-fra``).

One function, :func:`to_pdfa`, for the depositor's side (``sae deposit --ocr``) and the
server's: a TIFF, JPEG or PNG image, or a PDF whose pages are images without text, becomes a
PDF/A-2b whose pages are the same images with Tesseract's text underneath — what a reader
sees is the scan, what search reads is the text. The output is checked before it is used: a
PDF that pypdf opens and whose XMP metadata declares PDF/A-2 (``pdfaid:part="2"``). The
source file is only read.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

#: The image formats that are OCRed (libmagic's MIME types).
IMAGE_TYPES = frozenset({"image/tiff", "image/jpeg", "image/png"})
#: The resolution assumed for an image that declares none (or an incredible one): a scanner's
#: usual setting; Tesseract reads text best at 300 dpi.
DEFAULT_DPI = 300
#: How long one file may take (seconds): a 50-page scan takes about 3 minutes on one core.
TIMEOUT = 1800.0

_PDFA_PART = re.compile(rb"pdfaid:part(?:=\"|>)(\d)")


class OcrFailed(Exception):
    """ocrmypdf failed, or produced no PDF/A: ``detail`` says why (in French, for the clerk
    and the console)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def available() -> bool:
    """Whether ``ocrmypdf`` is installed."""
    return shutil.which("ocrmypdf") is not None


def missing_languages(languages: str) -> str | None:
    """What is missing to OCR in ``languages`` (``fra+eng``): ocrmypdf, or a language's
    Tesseract data (its Debian package named); None when nothing is."""
    if not available():
        return "ocrmypdf (Debian packages ocrmypdf and tesseract-ocr-fra)"
    try:
        listed = subprocess.run(
            ["tesseract", "--list-langs"],  # noqa: S607 - installed with ocrmypdf
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return "tesseract (Debian package tesseract-ocr)"
    absent = [lang for lang in languages.split("+") if lang not in listed]
    if absent:
        return ", ".join(f"tesseract-ocr-{lang}" for lang in absent)
    return None


def _declared_dpi(path: Path) -> float | None:
    """The resolution an image declares, if credible."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            dpi = image.info.get("dpi")
    except OSError:
        return None
    if not dpi:
        return None
    value = float(min(dpi))
    return value if 72 <= value <= 2400 else None


def is_pdfa2(path: Path) -> bool:
    """Whether the PDF at ``path`` opens and declares PDF/A-2 in its XMP metadata."""
    from pypdf import PdfReader

    try:
        metadata = PdfReader(path).xmp_metadata
        if metadata is None:
            return False
        match = _PDFA_PART.search(metadata.stream.get_data())
    except Exception:  # noqa: BLE001 - an unreadable output is no PDF/A
        return False
    return match is not None and match.group(1) == b"2"


def to_pdfa(
    source: Path,
    out: Path,
    *,
    mime_type: str | None,
    languages: str = "fra",
    jobs: int = 1,
    timeout: float = TIMEOUT,
) -> None:
    """OCR ``source`` (an image of :data:`IMAGE_TYPES` or an image-only PDF) into the PDF/A-2b
    ``out``; raises :class:`OcrFailed` (``out`` removed) if it could not be made."""
    if not available():
        raise OcrFailed("ocrmypdf n'est pas installé (paquets ocrmypdf et tesseract-ocr-fra)")
    args = [
        "ocrmypdf",
        "--quiet",
        "--output-type",
        "pdfa-2",
        "--language",
        languages,
        "--jobs",
        str(jobs),
    ]
    if mime_type in IMAGE_TYPES and _declared_dpi(source) is None:
        args += ["--image-dpi", str(DEFAULT_DPI)]
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program, file names after "--"
            [*args, "--", str(source), str(out)],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        out.unlink(missing_ok=True)
        raise OcrFailed(f"OCR abandonné après {timeout:.0f} s") from None
    if done.returncode != 0:
        out.unlink(missing_ok=True)
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else "sans message"
        raise OcrFailed(f"ocrmypdf a échoué (code {done.returncode}) : {why[:300]}")
    if not is_pdfa2(out):
        out.unlink(missing_ok=True)
        raise OcrFailed("ocrmypdf n'a pas produit un PDF/A-2")
