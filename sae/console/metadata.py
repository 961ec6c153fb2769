"""A unit's full SEDA description (its ``<Content>`` as received), as label/value lines.

The catalogue keeps the producer's ``<Content>`` element verbatim so that no metadata is lost;
the unit page shows every filled element of it, with French labels for the usual SEDA fields.
Parsing goes through ``seda.safe_parse``, the project's only XML parser.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import seda
from sae.console.format import LEVEL

log = logging.getLogger("sae.console")

MAX_LINES = 500

LABELS = {
    "Title": "Intitulé",
    "Description": "Description",
    "DescriptionLevel": "Niveau de description",
    "StartDate": "Date de début",
    "EndDate": "Date de fin",
    "CreatedDate": "Date de création",
    "TransactedDate": "Date de transaction",
    "AcquiredDate": "Date d'acquisition",
    "SentDate": "Date d'envoi",
    "ReceivedDate": "Date de réception",
    "RegisteredDate": "Date d'enregistrement",
    "Date": "Date",
    "OriginatingAgencyArchiveUnitIdentifier": "Identifiant chez le producteur",
    "ArchivalAgencyArchiveUnitIdentifier": "Cote",
    "TransferringAgencyArchiveUnitIdentifier": "Identifiant chez le service versant",
    "FilePlanPosition": "Position dans le plan de classement",
    "SystemId": "Identifiant système",
    "OriginatingSystemId": "Identifiant dans le système d'origine",
    "DocumentType": "Type de document",
    "Language": "Langue",
    "DescriptionLanguage": "Langue de la description",
    "Status": "Statut",
    "Version": "Version",
    "KeywordContent": "Mot-clé",
    "KeywordReference": "Référence du mot-clé",
    "KeywordType": "Type de mot-clé",
    "CustodialHistoryItem": "Historique de conservation",
    "Source": "Source",
    "Coverage": "Couverture",
    "Spatial": "Couverture géographique",
    "Temporal": "Couverture temporelle",
    "Juridictional": "Juridiction",
    "FirstName": "Prénom",
    "BirthName": "Nom",
    "FullName": "Nom complet",
    "GivenName": "Nom d'usage",
    "Corpname": "Organisation",
    "Identifier": "Identifiant",
    "Function": "Fonction",
    "Activity": "Activité",
    "Position": "Poste",
    "Role": "Rôle",
    "Tag": "Étiquette",
    "Type": "Type",
}
GROUPS = {
    "OriginatingAgency": "Service producteur",
    "SubmissionAgency": "Service versant",
    "Writer": "Rédacteur",
    "Addressee": "Destinataire",
    "Recipient": "Destinataire en copie",
    "Transmitter": "Émetteur",
    "Sender": "Expéditeur",
    "AuthorizedAgent": "Détenteur des droits",
    "Keyword": "Mot-clé",
    "Event": "Événement",
    "Signature": "Signature",
    "Agent": "Personne",
}


@dataclass(frozen=True)
class MetadataLine:
    """One filled element: its French label (with its group), its value, its SEDA path."""

    label: str
    value: str
    path: str


def _local(tag: object) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1]


def content_lines(content_xml: bytes) -> list[MetadataLine]:
    """Every element of ``<Content>`` that carries text, in document order."""
    if not content_xml:
        return []
    try:
        root = seda.safe_parse(content_xml)
    except seda.MalformedXML as exc:
        # Stored by ingest after validation, so this means damage: say so in the log, show none.
        log.error("console: a unit's stored Content does not parse: %s", exc)
        return []
    lines: list[MetadataLine] = []
    for element in root.iter():
        if not isinstance(element.tag, str) or len(element):
            continue
        value = (element.text or "").strip()
        if not value:
            continue
        names = [_local(a.tag) for a in reversed(list(element.iterancestors()))][1:]
        name = _local(element.tag)
        group = next((GROUPS[n] for n in reversed(names) if n in GROUPS), None)
        label = LABELS.get(name, name)
        if group and group != label:
            label = f"{group} — {label}"
        lang = element.get("{http://www.w3.org/XML/1998/namespace}lang")
        if lang:
            label += f" ({lang})"
        if name == "DescriptionLevel":
            value = LEVEL.get(value, value)
        lines.append(MetadataLine(label, value, "/".join([*names, name])))
        if len(lines) >= MAX_LINES:
            break
    return lines
