"""The French texts of the alerts: a subject line and a body an archivist understands.

Each says what happened, about which record, offer or witness, and what to do — without
supposing the reader knows SAE's code. Identifiers are given as the console shows them, so
that the archivist can look the record up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sae.alerts.models import Alert

KIND_FR = {"corrupt": "contenu altéré", "missing": "copie absente"}
DRILL_FR = {
    "different": "le catalogue reconstruit depuis une offre diffère du catalogue en service",
    "inconclusive": "le journal a changé pendant l'exercice, la comparaison n'a pas pu conclure",
}


def _copy_damaged(d: dict[str, Any]) -> tuple[str, list[str]]:
    offer = d.get("offer") or "?"
    found = (
        "Un audit d'intégrité a trouvé"
        if d.get("found_by") == "audit"
        else "La lecture d'un document a révélé"
    )
    kind = KIND_FR.get(str(d.get("kind")), str(d.get("kind")))
    lines = [
        f"{found} une copie endommagée ({kind}) sur l'offre de stockage « {offer} ».",
        "",
        "Document concerné :",
    ]
    if d.get("title"):
        lines.append(f"  intitulé : {d['title']}")
    if d.get("unit_id"):
        lines.append(f"  unité d'archives : {d['unit_id']}")
    if d.get("filename"):
        lines.append(f"  fichier : {d['filename']}")
    lines.append(f"  objet : {d.get('object_id') or '?'}")
    if d.get("transfer_id"):
        lines.append(f"  versement : {d['transfer_id']}")
    if d.get("detail"):
        lines.append(f"  constat : {d['detail']}")
    lines.append("")
    if d.get("repaired"):
        lines += [
            "La copie a été réparée automatiquement à partir d'une copie saine d'une autre "
            "offre : le document est de nouveau conservé en plusieurs exemplaires intacts.",
            "",
            "Que faire : aucune action immédiate sur le document. Signalez toutefois "
            f"l'incident au service informatique : une altération sur l'offre « {offer} » "
            "peut en annoncer d'autres (disque, baie, fournisseur).",
        ]
    else:
        lines += [
            "La copie n'a pas été réparée : le document ne dispose plus de toutes ses copies "
            "intactes.",
            "",
            "Que faire : prévenez le service informatique pour qu'il vérifie l'offre "
            f"« {offer} », puis relancez un audit avec réparation (« sae audit ») ; tant que "
            "la réparation n'est pas faite, ne supprimez aucune autre copie.",
        ]
    return f"Copie endommagée sur l'offre « {offer} » (objet {d.get('object_id')})", lines


def _offer_down(d: dict[str, Any]) -> tuple[str, list[str]]:
    offer = d.get("offer") or "?"
    return f"Offre de stockage « {offer} » injoignable", [
        f"L'offre de stockage « {offer} » ne répond pas.",
        f"Raison donnée : {d.get('detail') or 'inconnue'}",
        "",
        "Conséquences : tant qu'elle ne répond pas, les nouveaux versements sont refusés "
        "(chaque document doit être écrit sur toutes les offres) ; la consultation continue "
        "à partir des autres copies.",
        "",
        "Que faire : prévenez le service informatique (réseau, serveur de stockage, "
        "identifiants, fournisseur). Un message « rétabli » n'est pas envoyé : l'état courant "
        "se lit sur la page /health et dans le tableau de bord.",
    ]


def _tsa_down(d: dict[str, Any]) -> tuple[str, list[str]]:
    return "Horodatage indisponible", [
        f"L'autorité d'horodatage ({d.get('tsa')}) ne délivre plus de jetons.",
        f"Raison donnée : {d.get('detail') or 'inconnue'}",
        "",
        "Conséquences : les versements sont acceptés et journalisés, mais le journal ne peut "
        "plus être scellé et horodaté : la preuve de date des nouveaux documents attend le "
        "retour de l'horodatage.",
        "",
        "Que faire : prévenez le service informatique (accès réseau, abonnement ou certificat "
        "auprès du prestataire d'horodatage). Le scellement reprend seul dès son retour.",
    ]


def _audit_failed(d: dict[str, Any]) -> tuple[str, list[str]]:
    return "Audit d'intégrité interrompu", [
        f"L'audit d'intégrité {d.get('audit_id') or ''} s'est arrêté avant la fin, après "
        f"{d.get('checked') or 0} copies vérifiées.",
        f"Erreur : {d.get('error') or 'inconnue'}",
        "",
        "Que faire : les documents non vérifiés le seront au prochain audit. Si l'erreur "
        "se répète, transmettez ce message au service informatique ; un audit peut être "
        "relancé à la main (« sae audit »).",
    ]


def _drill_failed(d: dict[str, Any]) -> tuple[str, list[str]]:
    outcome = str(d.get("outcome"))
    lines = [
        "L'exercice de restauration (reconstruction du catalogue à partir des offres de "
        "stockage, comparée au catalogue en service) n'a pas donné un résultat identique : "
        f"{DRILL_FR.get(outcome, outcome)}.",
        "",
    ]
    for offer, result in sorted((d.get("offers") or {}).items()):
        said = "identique" if isinstance(result, dict) and result.get("identical") else "écart"
        lines.append(f"  offre « {offer} » : {said}")
    if d.get("report_units"):
        lines += ["", f"Rapport archivé (unités) : {', '.join(map(str, d['report_units']))}"]
    lines += [
        "",
        "Que faire : lisez le rapport de l'exercice dans le tableau de bord et transmettez-le "
        "au service informatique : un écart signifie qu'une restauration après sinistre ne "
        "rendrait pas exactement le fonds actuel. Relancez l'exercice (« sae drill ») une fois "
        "la cause corrigée.",
    ]
    return "Exercice de restauration en échec", lines


def _witness_refused(d: dict[str, Any]) -> tuple[str, list[str]]:
    witness = d.get("witness") or "?"
    return f"Le témoin « {witness} » refuse de contresigner le journal", [
        f"Le témoin « {witness} » ({d.get('url')}) a refusé de contresigner l'état du journal "
        f"à {d.get('tree_size')} événements (réponse HTTP {d.get('status')}).",
        f"Réponse : {d.get('body') or ''}",
        "",
        "Un témoin refuse quand l'historique qu'on lui présente ne prolonge pas celui qu'il a "
        "déjà contresigné : c'est l'indice d'une réécriture ou d'une divergence du journal, "
        "ou d'une restauration mal faite.",
        "",
        "Que faire : ne modifiez rien. Lancez « sae journal verify », prévenez le service "
        "informatique et le responsable de la sécurité, et contactez l'opérateur du témoin "
        "(les archives départementales) avant toute autre opération.",
    ]


def _quarantine_overdue(d: dict[str, Any]) -> tuple[str, list[str]]:
    offer = d.get("offer") or "?"
    return f"Quarantaine non levée sur l'offre « {offer} »", [
        f"{d.get('copies')} copie(s) de l'offre « {offer} » sont encore en quarantaine "
        f"(verrou GOVERNANCE) plus de {d.get('overdue_hours')} h après la fin de leur délai "
        f"de {d.get('quarantine_days')} jour(s).",
        "",
        "Conséquences : ces copies peuvent encore être supprimées par un compte autorisé à "
        "contourner la gouvernance, alors qu'elles devraient être définitivement protégées "
        "(verrou COMPLIANCE).",
        "",
        "Que faire : prévenez le service informatique : l'offre ne répond pas ou le compte de "
        "SAE n'a pas le droit de modifier la rétention (PutObjectRetention). Le scellement "
        "reprend seul quand la cause est corrigée.",
    ]


_TEXTS: dict[str, Callable[[dict[str, Any]], tuple[str, list[str]]]] = {
    "copy_damaged": _copy_damaged,
    "offer_down": _offer_down,
    "tsa_down": _tsa_down,
    "audit_failed": _audit_failed,
    "drill_failed": _drill_failed,
    "witness_refused": _witness_refused,
    "quarantine_overdue": _quarantine_overdue,
}


def compose(alert: Alert) -> tuple[str, str]:
    """The subject line and the body of ``alert``'s notification."""
    details = dict(alert.details or {})
    text = _TEXTS.get(alert.condition)
    if text is None:  # a condition of a later version, read by this one: said plainly
        title, lines = (
            f"Alerte {alert.condition}",
            [
                f"Condition : {alert.condition} ({alert.subject})",
                *(f"  {k} : {v}" for k, v in sorted(details.items())),
                "",
                "Que faire : transmettez ce message au service informatique.",
            ],
        )
    else:
        title, lines = text(details)
    if alert.notifications > 0:
        title = f"Rappel : {title}"
        first = alert.first_seen_at.strftime("%d/%m/%Y à %H:%M UTC")
        lines = [f"Rappel : cette alerte est toujours active depuis le {first}.", "", *lines]
    lines += [
        "",
        "—",
        "Message envoyé par SAE, le système d'archivage électronique. Une même alerte n'est "
        "renvoyée qu'après son délai de rappel tant qu'elle dure.",
    ]
    return f"[SAE] {title}", "\n".join(lines) + "\n"


def test_text() -> tuple[str, str]:
    """The subject and body of ``sae alerts test``'s message."""
    return "[SAE] Message d'essai des alertes", (
        "Ceci est un message d'essai envoyé par « sae alerts test ».\n\n"
        "S'il vous parvient, SAE saura vous prévenir quand une copie est endommagée, qu'une "
        "offre de stockage ou l'horodatage ne répond plus, qu'un audit ou un exercice de "
        "restauration échoue, qu'un témoin refuse de contresigner le journal ou qu'une "
        "quarantaine n'est pas levée.\n\nQue faire : rien, ce message ne signale aucun "
        "problème.\n"
    )
