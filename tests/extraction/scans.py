"""Images of printed French text for the OCR tests, drawn with Pillow (one page, large type)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

#: What the scan says. Pillow's own font has no accented letters: the words the tests look for
#: are plain ones.
LINES = [
    "Deliberation du conseil",
    "municipal sur le remplacement",
    "des lampadaires de la rue",
    "des Tilleuls",
]


def scan(path: Path, *, dpi: int | None = 300, lines: list[str] = LINES) -> bytes:
    """An A-format page scanned at ``dpi`` (None: the file declares no resolution), saved in
    the format of ``path``'s suffix; its bytes."""
    font = ImageFont.load_default(size=56)
    image = Image.new("L", (1700, 140 + 120 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((60, 60 + n * 120), line, fill=0, font=font)
    options = {"dpi": (dpi, dpi)} if dpi else {}
    if path.suffix in (".jpg", ".jpeg"):
        image.convert("RGB").save(path, quality=90, **options)
    else:
        image.save(path, **options)
    return path.read_bytes()
