"""French presentation of SAE values for the console: dates, sizes, statuses, faults.

The archivist reads "29/11/2026", "2,4 Mo" and "Refusé", never ISO strings, byte counts or
status codes. Every function here is pure and total: an unknown code is shown as it is, with a
generic French sentence, rather than raising while a page renders.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

# The commune's clock: timestamps are stored in UTC and shown in the local legal time.
LOCAL_TZ = ZoneInfo("Europe/Paris")

_UNITS = ("o", "Ko", "Mo", "Go", "To", "Po")


def _fr_decimal(value: float, digits: int = 1) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",")


def fr_int(value: int | None) -> str:
    """12345 → "12 345" (narrow no-break space as the French thousands separator)."""
    if value is None:
        return "—"
    return f"{value:,}".replace(",", "\u202f")


def fr_size(value: int | None) -> str:
    """A size in bytes as a French reader expects it: "2,4 Mo", "512 o" (powers of 1000)."""
    if value is None:
        return "—"
    if value < 1000:
        return f"{value} o"
    size = float(value)
    unit = 0
    while size >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{_fr_decimal(size)} {_UNITS[unit]}"


def fr_date(value: date | datetime | str | None) -> str:
    """29/11/2026. Strings (SEDA dates such as "2024" or "2024-03-05") are shown best-effort."""
    if value is None or value == "":
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(LOCAL_TZ).strftime("%d/%m/%Y")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    text = str(value)
    try:
        return datetime.fromisoformat(text[:10]).strftime("%d/%m/%Y")
    except ValueError:
        # A year or year-month alone (SEDA allows them): "2024-03" → "03/2024".
        parts = text.split("-")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return f"{parts[1]}/{parts[0]}"
        return text


def fr_date_range(start: str | None, end: str | None) -> str:
    """Dates extrêmes: "05/03/2024 – 12/06/2024", one date alone, or "—" when neither."""
    if not start and not end:
        return "—"
    if not end or start == end:
        return fr_date(start)
    if not start:
        return f"jusqu'au {fr_date(end)}"
    return f"{fr_date(start)} – {fr_date(end)}"


def fr_datetime(value: datetime | None) -> str:
    """29/11/2026 à 09:44 (heure de Paris)."""
    if value is None:
        return "—"
    local = value.astimezone(LOCAL_TZ)
    return local.strftime("%d/%m/%Y à %H:%M")


TRANSFER_STATUS = {
    "OK": "Accepté",
    "KO": "Refusé",
    "WARNING": "Accepté avec remarques",
    "WITHDRAWING": "Retrait en cours",
    "WITHDRAWN": "Retiré",
}
UNIT_STATUS = {
    "active": "En conservation",
    "permanent": "Conservation définitive",
    "destroyed": "Éliminée",
    "withdrawn": "Retirée (versement retiré)",
}
OBJECT_STATUS = {
    "active": "Intègre",
    "destroyed": "Éliminé",
    "withdrawn": "Retiré (versement retiré)",
    "integrity_failed": "Aucune copie saine",
}
AUDIT_STATUS = {"running": "En cours", "done": "Terminé", "failed": "Échoué"}
PROBLEM_KIND = {"missing": "Copie manquante", "corrupt": "Copie altérée"}
DISPOSAL_STATE = {
    "draft": "Brouillon",
    "submitted": "Soumise à approbation",
    "approved": "Approuvée",
    "rejected": "Rejetée",
    "visa_recorded": "Visa enregistré",
    "executing": "En cours d'exécution",
    "executed": "Exécutée",
}
LINE_STATE = {
    "proposed": "Proposée",
    "excluded": "Exclue",
    "sampled": "Conservée (échantillon)",
    "destroyed": "Éliminée",
    "kept": "Conservée",
}
FINAL_ACTION = {"Keep": "Conservation", "Destroy": "Destruction", "Sample": "Tri"}
RULE_CATEGORY = {
    "AppraisalRule": "Durée d'utilité administrative (DUA)",
    "AccessRule": "Communicabilité",
    "StorageRule": "Durée d'utilité courante",
    "DisseminationRule": "Diffusion",
    "ReuseRule": "Réutilisation",
    "ClassificationRule": "Classification",
    "HoldRule": "Gel",
}
MEASUREMENT = {"YEAR": ("an", "ans"), "MONTH": ("mois", "mois"), "DAY": ("jour", "jours")}
ROLE = {
    "admin": "Administrateur",
    "archivist": "Archiviste",
    "auditor": "Auditeur",
    "depositor": "Service versant",
    "reader": "Lecteur",
}
LEVEL = {
    "Fonds": "Fonds",
    "Subfonds": "Sous-fonds",
    "Class": "Classe",
    "Collection": "Collection",
    "Series": "Série",
    "Subseries": "Sous-série",
    "RecordGrp": "Dossier",
    "SubGrp": "Sous-dossier",
    "File": "Dossier",
    "Item": "Pièce",
    "OtherLevel": "Autre niveau",
}


def label(table: dict[str, str], code: str | None) -> str:
    """The French word for ``code`` in ``table``; the code itself when unknown."""
    if code is None:
        return "—"
    return table.get(code, code)


def fr_duration(duration: int | None, measurement: str | None) -> str:
    """5, YEAR → "5 ans"; no duration → "illimitée"."""
    if duration is None or measurement is None:
        return "illimitée"
    if duration == 0:
        return "aucun délai"
    one, many = MEASUREMENT.get(measurement, (measurement.lower(), measurement.lower()))
    return f"{duration} {one if duration <= 1 else many}"


def fr_wait(seconds: int) -> str:
    """A wait, readably: 45 → "45 secondes", 600 → "10 minutes"."""
    if seconds < 60:
        return f"{seconds} seconde{'s' if seconds > 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes > 1 else ''}"


# Every fault code ingest can report, explained for the service that deposited the SIP. The
# technical message (English, precise) is shown beside it for whoever prepares the package.
FAULTS = {
    "sip.not_a_zip": "Le fichier envoyé n'est pas une archive ZIP lisible.",
    "sip.no_manifest": "Le paquet ne contient pas de bordereau « manifest.xml » à sa racine.",
    "sip.several_manifests": "Le paquet contient plusieurs bordereaux ; un seul est attendu.",
    "sip.manifest_too_large": "Le bordereau est trop volumineux.",
    "sip.too_large": "Le paquet dépasse la taille maximale acceptée.",
    "sip.too_many_entries": "Le paquet contient trop de fichiers.",
    "sip.zip_bomb": "Le paquet est anormalement compressé (risque de « bombe ZIP ») : refusé.",
    "sip.unsafe_path": "Un nom de fichier du paquet est dangereux (chemin absolu ou sortant du "
    "paquet).",
    "sip.unsafe_entry": "Le paquet contient un lien ou un fichier spécial, interdits.",
    "sip.encrypted_entry": "Un fichier du paquet est chiffré ; il ne peut pas être archivé.",
    "sip.duplicate_entry": "Le même fichier figure deux fois dans le paquet.",
    "sip.corrupt_entry": "Un fichier du paquet est endommagé et ne peut pas être lu.",
    "sip.missing_file": "Un fichier décrit dans le bordereau est absent du paquet.",
    "sip.undeclared_file": "Le paquet contient un fichier que le bordereau ne décrit pas.",
    "sip.file_declared_twice": "Le bordereau décrit deux fois le même fichier.",
    "sip.object_without_uri": "Un objet du bordereau n'indique pas le fichier qui le contient.",
    "sip.empty_digest": "L'empreinte d'un fichier est vide dans le bordereau.",
    "sip.unknown_digest_algorithm": "Le bordereau utilise un algorithme d'empreinte inconnu.",
    "sip.digest_mismatch": "L'empreinte d'un fichier ne correspond pas à celle du bordereau : "
    "le fichier a été modifié ou abîmé.",
    "sip.size_mismatch": "La taille d'un fichier ne correspond pas à celle du bordereau.",
    "sip.size_forged": "La taille annoncée d'un fichier est fausse.",
    "xml.malformed": "Le bordereau n'est pas un XML bien formé.",
    "xml.empty": "Le bordereau est vide.",
    "xml.dtd_forbidden": "Le bordereau contient une DTD, interdite pour des raisons de sécurité.",
    "xml.entity_forbidden": "Le bordereau déclare des entités XML, interdites.",
    "xml.too_large": "Le bordereau XML est trop volumineux.",
    "xml.too_deep": "Le bordereau XML est trop profondément imbriqué.",
    "xml.limit_exceeded": "Le bordereau XML dépasse une limite de sécurité.",
    "seda.not_seda": "Le bordereau n'est pas un message SEDA.",
    "seda.unexpected_root": "Le bordereau n'est pas un transfert d'archives (ArchiveTransfer).",
    "seda.unsupported_version": "Cette version du SEDA n'est pas prise en charge (2.1, 2.2 ou "
    "2.3 attendues).",
    "seda.structure_invalid": "Le bordereau n'est pas conforme au schéma SEDA.",
    "seda.no_archive_unit": "Le bordereau ne décrit aucune unité d'archives.",
    "seda.unit_without_content": "Une unité d'archives n'a pas de description (Content).",
    "seda.unit_cycle": "Les unités d'archives se référencent en boucle.",
    "seda.duplicate_id": "Le même identifiant est utilisé deux fois dans le bordereau.",
    "seda.unresolved_unit_reference": "Une référence vers une unité d'archives ne mène nulle part.",
    "seda.unresolved_object_reference": "Une référence vers un objet ne mène nulle part.",
    "seda.unresolved_group_reference": "Une référence vers un groupe d'objets ne mène nulle part.",
    "seda.empty_reference": "Une référence du bordereau est vide.",
    "seda.missing_value": "Une information obligatoire manque dans le bordereau.",
    "seda.bad_value": "Une valeur du bordereau est invalide.",
    "seda.missing_digest": "L'empreinte d'un fichier manque dans le bordereau.",
    "seda.empty_digest": "L'empreinte d'un fichier est vide dans le bordereau.",
    "seda.date_order": "Une date de fin précède la date de début.",
    "seda.rule_not_in_version": "Une règle de gestion n'existe pas dans cette version du SEDA.",
    "seda.tolerated": "Écart toléré par rapport au SEDA.",
    "seda.error": "Le bordereau SEDA contient une erreur.",
    "storage.write_failed": "Un fichier n'a pas pu être écrit sur un espace de stockage ; "
    "réessayez plus tard ou prévenez l'exploitation.",
    "storage.readback_mismatch": "La relecture d'une copie stockée a échoué ; le versement a "
    "été annulé par sécurité.",
    "ingest.duplicate_transfer": "Ce bordereau (même identifiant de message) a déjà été accepté.",
    "ingest.sip_too_large": "Le paquet dépasse la taille maximale acceptée.",
    "ingest.media_type": "Le fichier envoyé n'est pas une archive ZIP.",
}

# Prefix explanations for codes not listed one by one (rules, producers…).
_FAULT_PREFIXES = {
    "rules.": "Une règle de gestion citée n'existe pas dans le référentiel.",
    "auth.": "Ce compte n'est pas autorisé à verser pour ce service producteur.",
    "sip.": "Le paquet ZIP présente un défaut.",
    "xml.": "Le bordereau XML présente un défaut.",
    "seda.": "Le bordereau SEDA présente un défaut.",
    "storage.": "Le stockage a rencontré un problème.",
}


def fault_text(code: str) -> str:
    """The plain-French explanation of an ingest fault code."""
    if code in FAULTS:
        return FAULTS[code]
    for prefix, text in _FAULT_PREFIXES.items():
        if code.startswith(prefix):
            return text
    return "Le paquet présente un défaut."


EVENT_TYPE = {
    "ingest.accepted": "Versement accepté",
    "ingest.rejected": "Versement refusé",
    "ingest.object_stored": "Objet archivé",
    "access.object_read": "Consultation d'un objet",
    "access.unit_read": "Consultation d'une notice",
    "integrity.failed": "Copie altérée détectée",
    "integrity.no_healthy_copy": "Aucune copie saine",
    "auth.token_created": "Jeton d'accès créé",
    "pastell.received": "Transfert reçu de Pastell",
    "pastell.accepted": "Transfert de Pastell accepté (ATR envoyé)",
    "pastell.rejected": "Transfert de Pastell refusé (ATR envoyé)",
    "auth.token_revoked": "Jeton d'accès révoqué",
    "auth.user_created": "Compte créé",
    "auth.user_updated": "Compte modifié",
    "auth.user_disabled": "Compte désactivé",
    "auth.user_enabled": "Compte réactivé",
    "auth.password_set": "Mot de passe défini",
    "auth.signed_in": "Connexion",
    "rules.imported": "Référentiel importé",
    "rules.end_dates_recomputed": "Échéances recalculées",
    "rules.minimum_duration_alert": "Alerte : durée inférieure au minimum légal",
    "contracts.saved": "Contrat de versement enregistré",
    "profiles.saved": "Profil d'archivage enregistré",
    "storage.audit_completed": "Audit terminé",
    "storage.audit_failed": "Audit échoué",
    "storage.copy_damaged": "Copie endommagée",
    "storage.copy_repaired": "Copie réparée",
    "transfer.withdrawal_started": "Retrait d'un versement commencé",
    "transfer.withdrawn": "Versement retiré (quarantaine)",
    "storage.quarantine_ended": "Quarantaine terminée (verrou COMPLIANCE)",
    "storage.orphan_removed": "Copie orpheline supprimée",
    "storage.copy_filled": "Copie ajoutée à une offre qui en manquait",
    "ocr.object_added": "PDF/A océrisé ajouté à côté d'un original numérisé",
    "storage.copies_checked": "Copies vérifiées (audit)",
    "disposal.certificate_archived": "Certificat de destruction archivé",
    "disposal.transfer_purged": "Unités transférées retirées du fonds",
    "rebuild.transfer_recovered": "Versement retrouvé lors d'une reconstruction",
    "catalog.rebuilt": "Catalogue reconstruit depuis une offre",
    "catalog.migrated": "Catalogue déplacé vers PostgreSQL",
    "journal.key_pinned": "Clé de signature du journal épinglée",
    "journal.key_rotated": "Clé de signature du journal remplacée",
    "config.initial": "Configuration initiale enregistrée",
    "config.changed": "Configuration modifiée",
    "catalog.backed_up": "Sauvegarde du catalogue",
    "catalog.restored": "Catalogue restauré depuis une sauvegarde",
    "recovery.drill_completed": "Exercice de restauration",
    "journal.witness_refused": "Alerte : un témoin refuse de contresigner le journal",
    "access.dip_exported": "Paquet de diffusion (DIP) exporté",
    "disposal.line_excluded": "Ligne retirée d'une liste d'élimination",
    "disposal.transfer_sent": "Transfert sortant envoyé au service d'archives",
    "disposal.transfer_acknowledged": "Transfert sortant accepté par le destinataire",
    "disposal.transfer_refused": "Transfert sortant refusé par le destinataire",
    "disposal.object_transferred": "Objet transféré puis détruit",
    "hold.placed": "Gel posé",
    "hold.lifted": "Gel levé",
    "retention.permanent": "Conservation définitive",
    "disposal.list_created": "Liste d'élimination créée",
    "disposal.submitted": "Liste soumise",
    "disposal.approved": "Liste approuvée",
    "derogation.requested": "Dérogation demandée",
    "derogation.granted": "Dérogation accordée",
    "derogation.refused": "Dérogation refusée",
    "disposal.rejected": "Liste rejetée",
    "disposal.visa_recorded": "Visa enregistré",
    "disposal.execution_started": "Élimination commencée",
    "disposal.execution_refused": "Élimination refusée",
    "disposal.unit_destroyed": "Unité éliminée",
    "disposal.object_destroyed": "Objet éliminé",
    "disposal.executed": "Élimination exécutée",
}


def fr_actor(actor: str | None) -> str:
    """Who acted, readably: "token:<id>:archivist" → "Archiviste (jeton 1a2b3c4d)",
    "user:jdupont:<id>:archivist" → "jdupont (Archiviste, jeton 1a2b3c4d)"."""
    if not actor:
        return "—"
    parts = actor.split(":")
    if len(parts) == 3 and parts[0] == "token":
        if parts[1] == "system":
            return "SAE (système)"
        return f"{ROLE.get(parts[2], parts[2])} (jeton {parts[1][:8]})"
    if len(parts) == 4 and parts[0] == "user":
        role = ROLE.get(parts[3], parts[3])
        if parts[2] in ("", "-"):
            return f"{parts[1]} ({role})"
        return f"{parts[1]} ({role}, jeton {parts[2][:8]})"
    if parts[0] == "system":
        return "SAE (système)" + (f" — {parts[1]}" if len(parts) > 1 and parts[1] else "")
    return actor


def event_label(event_type: str) -> str:
    """A French name for a journal event type (the type itself when unknown)."""
    return EVENT_TYPE.get(event_type, event_type)
