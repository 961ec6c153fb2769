"""PDFs for the tests, written with fpdf2: text on several pages, encrypted, broken."""

from __future__ import annotations

from fpdf import FPDF


def text_pdf(title: str, pages: list[str]) -> bytes:
    """A PDF whose text layer holds ``pages`` (one string a page)."""
    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for body in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, body)
    return bytes(pdf.output())


def encrypted_pdf(body: str) -> bytes:
    """A PDF that opens only with a user password."""
    pdf = FPDF()
    pdf.set_encryption(owner_password="proprietaire", user_password="secret")
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 6, body)
    return bytes(pdf.output())
