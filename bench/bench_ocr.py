"""Server-side OCR (issue #20 item 3): pages per minute of SAE's OCR against ``ocrmypdf`` alone
on the same files.

    .venv/bin/python bench/bench_ocr.py [--pages 4] [--workers 1] [--rounds 2]

The scans are generated: A4 pages at 300 dpi (2480 x 3508 PNG, what a municipal scanner
produces) of printed French-looking text, 30 lines each, drawn with Pillow. They are deposited
in one SIP into a fresh embedded SAE (SQLite, one local WORM offer), then:

* **SAE**: ``sae.extraction.ocr.ocr_pending`` with ``--workers`` threads — everything the
  background worker does per scan: a verified copy read from the offer, ocrmypdf, the PDF/A
  checked, hashed, its text read, stored on the offer (read back), catalogued and journaled;
* **baseline**: ``ocrmypdf`` alone with the same options (``--output-type pdfa-2 -l fra
  --jobs 1``) on the same files, ``--workers`` at a time, from a local file to a local file.

Rounds alternate baseline and SAE (the machine is shared); the best round of each is kept.
Target (issue #20): SAE's overhead <= 10 % (ratio SAE / baseline >= 0.9).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import result, workdir, xsd_env  # noqa: E402

WORDS = (
    "le conseil municipal délibère sur la voirie communale les lampadaires de la rue des "
    "tilleuls seront remplacés avant la fin de l'année le budget primitif prévoit les crédits "
    "nécessaires à l'entretien des écoles et du cimetière"
).split()


def page(path: Path, seed: int) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=44)
    image = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(image)
    for line in range(30):
        words = [WORDS[(seed * 7 + line * 5 + n) % len(WORDS)] for n in range(9)]
        draw.text((200, 250 + line * 100), " ".join(words), fill=0, font=font)
    image.save(path, dpi=(300, 300))


def baseline(files: list[Path], out: Path, workers: int) -> float:
    def one(source: Path) -> None:
        subprocess.run(
            [
                "ocrmypdf",
                "--quiet",
                "--output-type",
                "pdfa-2",
                "--language",
                "fra",
                "--jobs",
                "1",
                "--",
                str(source),
                str(out / f"{source.stem}.pdf"),
            ],
            check=True,
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import os

    os.environ.update(xsd_env())
    from fastapi.testclient import TestClient
    from sqlalchemy import delete, select

    from sae.app import create_app
    from sae.catalog.models import DataObject, ObjectText
    from sae.config import load_settings
    from sae.extraction.models import OcrJob
    from sae.extraction.ocr import ocr_pending
    from sae.storage.models import ObjectCopy
    from tests.sipfactory import FileSpec, SipSpec, UnitSpec, build_zip

    root = workdir("ocr")
    scans = root / "scans"
    scans.mkdir()
    files = []
    for n in range(args.pages):
        path = scans / f"page-{n:03d}.png"
        page(path, n)
        files.append(path)
    settings = load_settings(data_dir=root / "sae-data", ocr=False)
    base_times: list[float] = []
    sae_times: list[float] = []
    with TestClient(create_app(settings)) as client:
        token = (settings.data_dir / "admin.token").read_text().strip()
        spec = SipSpec(
            message_id="MSG-BENCH-OCR",
            producer="MAIRIE",
            transferring="MAIRIE",
            files=[
                FileSpec(uri=f"Content/{p.name}", data=p.read_bytes(), mime="image/png")
                for p in files
            ],
            units=[UnitSpec(id=f"AU-{n}", title=f"Page {n}", files=[n]) for n in range(len(files))],
        )
        response = client.post(
            "/api/v1/transfers",
            content=build_zip(spec),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/zip"},
        )
        assert response.status_code == 201, response.text
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        for round_ in range(args.rounds):
            out = root / f"baseline-{round_}"
            out.mkdir()
            base_times.append(baseline(files, out, args.workers))
            with runtime.sessions() as session:  # the previous round's PDF/A rows forgotten
                derived = select(DataObject.id).where(
                    DataObject.data_object_version == "Dissemination_1"
                )
                session.execute(delete(OcrJob))
                session.execute(delete(ObjectText).where(ObjectText.object_id.in_(derived)))
                session.execute(delete(ObjectCopy).where(ObjectCopy.object_id.in_(derived)))
                session.execute(delete(DataObject).where(DataObject.id.in_(derived)))
                session.commit()
            start = time.perf_counter()
            outcomes = ocr_pending(
                runtime.sessions,
                runtime.offer_set.copies(),
                settings.data_dir / "tmp",
                workers=args.workers,
            )
            sae_times.append(time.perf_counter() - start)
            assert [o.state for o in outcomes] == ["done"] * len(files), outcomes
    best_base, best_sae = min(base_times), min(sae_times)
    ppm_base = 60 * len(files) / best_base
    ppm_sae = 60 * len(files) / best_sae
    ratio = ppm_sae / ppm_base
    verdict = "met" if ratio >= 0.9 else "NOT met"
    result(
        f"ocr: {ppm_sae:.1f} pages/min by SAE's OCR ({len(files)} A4 pages at 300 dpi, "
        f"{args.workers} worker(s); read from the offer, ocrmypdf, checked, stored, "
        f"catalogued, journaled; rounds {', '.join(f'{t:.1f}' for t in sae_times)} s); "
        f"baseline ocrmypdf alone {ppm_base:.1f} pages/min (rounds "
        f"{', '.join(f'{t:.1f}' for t in base_times)} s); ratio {ratio:.2f} "
        f"(target >= 0.9, overhead <= 10 %: {verdict})"
    )


if __name__ == "__main__":
    main()
