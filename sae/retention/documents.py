"""The PDFs of the disposal circuit, in French: the bordereau and the destruction certificate.

Built with fpdf2 (pure Python, no system dependency) and its core fonts, which carry Latin-1:
every French letter fits; the few typographic characters that do not (dashes, curly quotes,
the œ ligature) are replaced by plain equivalents rather than dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from sae.retention.models import DisposalLine, DisposalList

_REPLACE = str.maketrans(
    {
        "—": "-",
        "–": "-",
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "…": "...",
        "œ": "oe",
        "Œ": "OE",
        "\u00a0": " ",
        "\u202f": " ",
        "⚠": "(!)",
        "✅": "",
        "◐": "",
    }
)


def latin1(text: str) -> str:
    """``text`` in what the PDF core fonts can draw."""
    return text.translate(_REPLACE).encode("latin-1", "replace").decode("latin-1")


def _fmt_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y %H:%M UTC")
    return value.strftime("%d/%m/%Y")


def _bytes(n: int) -> str:
    return f"{n:,}".replace(",", " ") + " octets"


class DocumentPdf(FPDF):
    """An A4 document of SAE in French (core fonts, Latin-1), dated by what it records."""

    def __init__(self, title: str, orientation: str = "L", *, created: datetime) -> None:
        super().__init__(orientation=orientation, unit="mm", format="A4")
        # Dated by the list, not by the clock: the same list gives the same bytes, at every
        # request and after a rebuild of the catalogue (the file /ID hashes this date too).
        self.creation_date = created
        self._title = latin1(title)
        self.set_auto_page_break(auto=True, margin=15)
        self.set_title(self._title)
        self.set_creator("SAE")
        self.alias_nb_pages()

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=7)
        self.cell(0, 5, f"{self._title} - page {self.page_no()}/{{nb}}", align="C")

    def line_text(self, text: str, size: float = 10, bold: bool = False, h: float = 5) -> None:
        self.set_font("Helvetica", "B" if bold else "", size)
        self.multi_cell(0, h, latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


@dataclass(frozen=True)
class Parties:
    """Who appears on the documents."""

    archives_service: str
    archives_service_name: str
    control_authority: str


def bordereau_pdf(disposal: DisposalList, lines: Sequence[DisposalLine], parties: Parties) -> bytes:
    """The bordereau d'élimination (or of permanent keeping), one section per producer."""
    destroy = disposal.final_action == "Destroy"
    title = (
        f"Bordereau d'élimination {disposal.reference}"
        if destroy
        else f"Bordereau de conservation définitive {disposal.reference}"
    )
    pdf = DocumentPdf(title, created=disposal.created_at)
    producers = sorted({line.producer for line in lines}) or [disposal.producer or "-"]
    for producer in producers:
        mine = [line for line in lines if line.producer == producer]
        pdf.add_page()
        pdf.line_text(title, size=14, bold=True, h=7)
        pdf.line_text(
            "Code du patrimoine, art. L212-2 et R212-14: aucune élimination sans le visa du "
            "directeur des Archives départementales."
            if destroy
            else "Unités dont la durée d'utilité administrative est échue et dont le sort final "
            "est la conservation définitive.",
            size=8,
        )
        pdf.ln(2)
        pdf.line_text(f"Service producteur: {producer}", bold=True)
        pdf.line_text(
            f"Service d'archives: {parties.archives_service_name} ({parties.archives_service})"
        )
        pdf.line_text(f"Autorité de contrôle: {parties.control_authority}")
        pdf.line_text(
            f"Établi le {_fmt_date(disposal.created_at)} - unités échues avant le "
            f"{_fmt_date(disposal.due_before)} - état: {disposal.state}"
        )
        total = sum(line.bytes for line in mine)
        count = sum(line.object_count for line in mine)
        pdf.line_text(
            f"Volume total: {_bytes(total)}, {count} fichier(s), {len(mine)} unité(s) d'archives",
            bold=True,
        )
        pdf.ln(2)
        pdf.set_font("Helvetica", size=7)
        widths = (10, 62, 30, 22, 14, 35, 18, 32, 20, 34)
        with pdf.table(col_widths=widths, text_align="LEFT", line_height=3.5) as table:
            table.row(
                [
                    latin1(h)
                    for h in (
                        "N°",
                        "Description (intitulé, identifiant)",
                        "Dates extrêmes",
                        "Volume",
                        "Fichiers",
                        "DUA (règle)",
                        "Fin de DUA",
                        "Référence réglementaire",
                        "Sort",
                        "Observations / décision AD",
                    )
                ]
            )
            for number, line in enumerate(mine, start=1):
                sort = (
                    "Conservation définitive"
                    if not destroy
                    else "Conservation (échantillon)"
                    if line.state == "sampled"
                    else "Élimination"
                )
                table.row(
                    [
                        latin1(str(c))
                        for c in (
                            number,
                            f"{line.title}\n{line.unit_id}",
                            f"{line.date_start or '?'} - {line.date_end or '?'}",
                            _bytes(line.bytes),
                            line.object_count,
                            line.dua,
                            _fmt_date(line.appraisal_end),
                            line.legal_reference,
                            sort,
                            "; ".join(x for x in (line.sampling_note, line.exclusion_reason) if x),
                        )
                    ]
                )
        pdf.ln(4)
        _signatures(pdf, disposal, destroy, parties)
    return bytes(pdf.output())


def _signatures(pdf: DocumentPdf, disposal: DisposalList, destroy: bool, parties: Parties) -> None:
    pdf.line_text("Signatures", bold=True)
    pdf.set_font("Helvetica", size=8)
    blocks = [
        "Le chef du service producteur\n(nom, date, signature)",
        "Le maire ou son délégué\n(nom, date, signature)",
        "L'archiviste\n"
        + (
            f"approuvé le {_fmt_date(disposal.decided_at)}"
            if disposal.decided_at and disposal.state not in ("draft", "submitted", "rejected")
            else "(date, signature)"
        ),
    ]
    if destroy:
        visa = (
            f"Visa n° {disposal.visa_reference} du {_fmt_date(disposal.visa_decision_date)}"
            if disposal.visa_reference
            else "(date, signature, cachet)"
        )
        blocks.append(
            f"Visa du directeur des Archives départementales ({parties.control_authority})\n{visa}"
        )
    width = (pdf.w - pdf.l_margin - pdf.r_margin) / len(blocks)
    y = pdf.get_y()
    if y > pdf.h - 45:
        pdf.add_page()
        y = pdf.get_y()
    for index, block in enumerate(blocks):
        pdf.set_xy(pdf.l_margin + index * width, y)
        pdf.multi_cell(width - 2, 4, latin1(block), border=1, new_x=XPos.RIGHT, new_y=YPos.TOP)
    pdf.set_xy(pdf.l_margin, y + 30)


@dataclass(frozen=True)
class DestroyedObject:
    """One destroyed object as the certificate lists it."""

    unit_id: str
    unit_title: str
    object_id: str
    size: int | None
    sha512: str | None
    leaf_index: int | None


def certificate_pdf(
    disposal: DisposalList,
    lines: Sequence[DisposalLine],
    objects: Sequence[DestroyedObject],
    parties: Parties,
    *,
    executed_at: datetime,
    executed_by: str,
    executed_leaf: int | None,
    four_eyes: bool = True,
    approved_alone: bool = False,
) -> bytes:
    """The destruction certificate: what, when, by whom, under which visa, with the SHA-512 of
    each destroyed object and the journal leaf that recorded its destruction. Without
    ``four_eyes`` (``SAE_DISPOSAL_FOUR_EYES`` off), or when the list was ``approved_alone`` (by
    the one who built or submitted it), it says so."""
    pdf = DocumentPdf(
        f"Certificat de destruction {disposal.reference}", orientation="P", created=executed_at
    )
    pdf.add_page()
    pdf.line_text(f"Certificat de destruction - bordereau {disposal.reference}", 14, True, 7)
    pdf.ln(2)
    destroyed = [line for line in lines if line.state == "destroyed"]
    pdf.line_text(
        f"Le service d'archives {parties.archives_service_name} ({parties.archives_service}) "
        f"certifie avoir détruit de manière irréversible, sur toutes ses offres de stockage, les "
        f"{len(destroyed)} unité(s) d'archives et {len(objects)} objet(s) numérique(s) "
        "listés ci-dessous."
    )
    pdf.ln(1)
    pdf.line_text(f"Date de la destruction: {_fmt_date(executed_at)}")
    pdf.line_text(f"Exécutée par: {executed_by}")
    pdf.line_text(
        f"Autorisation: visa n° {disposal.visa_reference} du "
        f"{_fmt_date(disposal.visa_decision_date)} ({parties.control_authority}), enregistré le "
        f"{_fmt_date(disposal.visa_recorded_at)} par {disposal.visa_recorded_by}"
    )
    pdf.line_text(
        f"Bordereau approuvé le {_fmt_date(disposal.decided_at)} par {disposal.decided_by}"
    )
    if not four_eyes:
        pdf.line_text(
            "Contrôle à quatre yeux désactivé (SAE_DISPOSAL_FOUR_EYES, commune à archiviste "
            "unique): la liste a pu être établie, approuvée et exécutée par une seule personne.",
            bold=True,
        )
    if approved_alone:
        pdf.line_text(
            "La liste a été approuvée par la personne qui l'avait établie ou transmise.",
            bold=True,
        )
    if executed_leaf is not None:
        pdf.line_text(f"Événement de journal de l'exécution: feuille n° {executed_leaf}")
    excluded = [line for line in lines if line.state in ("excluded", "sampled", "kept")]
    if excluded:
        pdf.line_text(
            f"Unités non détruites (exclues par le visa ou conservées par "
            f"échantillonnage): {len(excluded)}"
        )
    pdf.ln(3)
    pdf.line_text("Objets détruits", bold=True)
    pdf.set_font("Helvetica", size=6.5)
    with pdf.table(col_widths=(48, 16, 100, 14), text_align="LEFT", line_height=3) as table:
        table.row(["Unité (intitulé, identifiant) / objet", "Taille", "SHA-512", "Feuille"])
        for obj in objects:
            table.row(
                [
                    latin1(c)
                    for c in (
                        f"{obj.unit_title}\n{obj.unit_id}\nobjet {obj.object_id}",
                        "" if obj.size is None else str(obj.size),
                        obj.sha512 or "",
                        "" if obj.leaf_index is None else str(obj.leaf_index),
                    )
                ]
            )
    pdf.ln(4)
    pdf.line_text(
        "Chaque destruction est une feuille du journal Merkle de SAE (RFC 9162), scellé et "
        "horodaté: la preuve d'inclusion de chaque feuille peut être vérifiée hors de SAE. "
        "Ce certificat, le bordereau visé et la notification SEDA ArchiveDestructionNotification "
        "sont conservés définitivement.",
        size=8,
    )
    return bytes(pdf.output())
