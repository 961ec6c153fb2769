"""The restore drill's report as a PDF, in French, for the archivist and the auditor."""

from __future__ import annotations

from sae.recovery.drill import IDENTICAL, INCONCLUSIVE, DrillReport
from sae.retention.documents import DocumentPdf

_OUTCOMES = {
    IDENTICAL: "IDENTIQUE - le catalogue reconstruit depuis chaque offre est identique au "
    "catalogue en service.",
    INCONCLUSIVE: "NON CONCLUANT - des différences ont été relevées alors que le catalogue "
    "changeait pendant l'exercice ; le relancer à une heure creuse.",
}
_DIFFERENT = (
    "DIFFÉRENT - la reconstruction depuis au moins une offre ne redonne pas le "
    "catalogue en service : voir le détail ci-dessous."
)
_KINDS = {
    "count": "nombre de lignes",
    "row": "ligne",
    "unit": "unité d'archives (représentation API)",
    "object": "objet (représentation API)",
    "journal_root": "racine du journal",
}


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


def drill_pdf(report: DrillReport, *, archives_service_name: str) -> bytes:
    """The report (A4, portrait)."""
    pdf = DocumentPdf(
        "Exercice de restauration du catalogue", orientation="P", created=report.started_at
    )
    pdf.add_page()
    pdf.line_text("Exercice de restauration du catalogue", size=16, bold=True, h=8)
    pdf.line_text(archives_service_name, size=11)
    pdf.ln(2)
    started = report.started_at.strftime("%d/%m/%Y %H:%M:%S")
    finished = report.finished_at.strftime("%d/%m/%Y %H:%M:%S") if report.finished_at else "-"
    pdf.line_text(f"Début : {started} UTC - fin : {finished} UTC")
    pdf.line_text(
        f"Journal couvert : {report.tree_size} événements (taille du journal en service à la "
        f"fin de l'exercice : {report.live_tree_size_after})"
    )
    pdf.ln(2)
    pdf.line_text("Résultat", size=12, bold=True, h=7)
    pdf.line_text(_OUTCOMES.get(report.outcome, _DIFFERENT), bold=True)
    pdf.ln(2)
    pdf.line_text(
        "Méthode : pour chaque offre de stockage, le catalogue est reconstruit dans une base "
        "temporaire à partir de cette seule offre (descriptions des versements et journal "
        "scellé, dont chaque segment est vérifié : racine de Merkle, signature de SAE, "
        "jeton d'horodatage RFC 3161), puis comparé au catalogue en service : nombre et "
        "contenu des lignes de chaque table, représentation de chaque unité d'archives et "
        "de chaque objet telle que l'API la donne, racine du journal.",
        size=9,
    )
    for offer in report.offers:
        pdf.ln(3)
        verdict = "identique" if offer.identical else "DIFFÉRENT"
        pdf.line_text(
            f"Offre {offer.offer} : {verdict} ({offer.seconds:.1f} s)", size=12, bold=True, h=7
        )
        if offer.error:
            pdf.line_text(f"La reconstruction a échoué : {offer.error}")
            continue
        comparison = offer.comparison
        if comparison is None:
            continue
        pdf.set_font("Helvetica", "B", 9)
        for text, width in (("Table", 70), ("En service", 40), ("Reconstruit", 40)):
            pdf.cell(width, 6, text, border=1)
        pdf.ln()
        pdf.set_font("Helvetica", "", 9)
        for table, count in comparison.counts_live.items():
            rebuilt = comparison.counts_rebuilt.get(table)
            for text, width in ((table, 70), (str(count), 40), (_fmt(rebuilt), 40)):
                pdf.cell(width, 5, text, border=1)
            pdf.ln()
        answers = comparison.views_compared
        if answers:
            pdf.ln(1)
            pdf.line_text(
                f"Réponses de l'API comparées : {answers.get('units', 0)} unités d'archives, "
                f"{answers.get('objects', 0)} objets (toutes dès qu'une ligne diffère, sinon un "
                "échantillon).",
                size=9,
            )
        if comparison.differences:
            pdf.ln(2)
            pdf.line_text(
                f"Différences ({len(comparison.differences) + comparison.unnamed}) :", bold=True
            )
            for d in comparison.differences:
                pdf.line_text(
                    f"- {_KINDS.get(d.kind, d.kind)} {d.subject} {d.key} : en service "
                    f"{_fmt(d.live)}, reconstruit {_fmt(d.rebuilt)}"
                    + (f" (colonnes : {', '.join(d.columns)})" if d.columns else ""),
                    size=8,
                    h=4,
                )
            if comparison.unnamed:
                pdf.line_text(f"... et {comparison.unnamed} autres.", size=8, h=4)
    return bytes(pdf.output())
