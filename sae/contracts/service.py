"""Contracts and archival profiles: their management, and the ingest step that applies them.

Management (API, CLI and console call these): :func:`save_contract`, :func:`set_status`,
:func:`add_profile`, the listings. Each act appends one journal leaf that carries the whole
contract (``contracts.saved``) or the whole profile document (``profiles.saved``): the journal
is on every offer, so a rebuild restores them (:mod:`sae.contracts.replay`).

At ingest, :func:`evaluate` finds the SIP's contract (its ``ArchivalAgreement``) and lists every
clause the SIP breaks, in French, each naming its clause; the ingest refuses the SIP with them
(one ATR line each) before anything is stored. The rules (docs/contracts.md):

* a SIP naming an agreement that is unknown, inactive, out of its period, or another
  producer's is refused;
* a producer that has a contract may not deposit without naming one; with
  ``SAE_CONTRACTS_REQUIRED=1`` no producer may; otherwise (the embedded default: a commune
  starting with no contract) a SIP without a contract is accepted, and one naming an agreement
  while no contract exists at all gets a warning;
* a SIP naming an ``ArchivalProfile`` is validated against it (RelaxNG).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

import seda
from sae.auth.service import SYSTEM, Principal
from sae.contracts.config import contracts_settings
from sae.contracts.errors import (
    ContractExists,
    ContractNotFound,
    InvalidContract,
    InvalidProfile,
    ProfileExists,
    ProfileNotFound,
    ProfileTooLarge,
)
from sae.contracts.models import CLAUSE_KEYS, ArchivalProfile, Contract
from sae.db import utcnow
from sae.journal.service import append_event
from sae.retention.models import Rule

#: A profile document's size limit: the largest real profiles are ~50 kB, and the document
#: travels in its journal leaf.
MAX_PROFILE_BYTES = 1024 * 1024
STATUSES = ("active", "inactive")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}")
_PUID_RE = re.compile(r"(x-)?fmt/[0-9]+")
_MIME_RE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")
#: The images an OCR makes searchable (the ``ocr`` step's inputs).
OCR_INPUTS = ("image/tiff", "image/jpeg", "image/png")

# --- clauses, as the archivist reads them -----------------------------------------------------

CLAUSE_NAMES = {
    "agreement": "accord de versement",
    "producers": "services producteurs",
    "period": "période de validité",
    "profiles": "profils d'archivage",
    "record_types": "types de documents",
    "rules": "règles de gestion",
    "formats": "formats acceptés",
    "max_object_bytes": "taille maximale par objet",
    "max_transfer_bytes": "taille maximale par versement",
    "ocr_required": "OCR obligatoire",
    "antivirus_required": "antivirus obligatoire",
}


# --- management ---------------------------------------------------------------------------------


@dataclass
class ContractSpec:
    """A contract as submitted (API body, CLI options, console form), before it is checked."""

    id: str
    name: str
    producers: list[str]
    description: str = ""
    status: str = "active"
    valid_from: date | None = None
    valid_until: date | None = None
    profiles: list[str] = field(default_factory=list)
    record_types: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    max_transfer_bytes: int | None = None
    max_object_bytes: int | None = None
    ocr_required: bool = False
    antivirus_required: bool = False


def _clean(values: Sequence[str]) -> list[str]:
    """Stripped, without blanks or repeats, in the order given."""
    out: list[str] = []
    for value in values:
        value = value.strip()
        if value and value not in out:
            out.append(value)
    return out


def check_spec(session: Session, spec: ContractSpec) -> ContractSpec:
    """The spec with its lists cleaned, or :class:`InvalidContract` listing every problem."""
    problems: list[str] = []
    spec = ContractSpec(
        **{
            **spec.__dict__,
            "id": spec.id.strip(),
            "name": spec.name.strip(),
            "description": spec.description.strip(),
            "producers": _clean(spec.producers),
            "profiles": _clean(spec.profiles),
            "record_types": _clean(spec.record_types),
            "rules": _clean(spec.rules),
            "formats": _clean([f.lower() for f in spec.formats]),
        }
    )
    if not _ID_RE.fullmatch(spec.id):
        problems.append(
            f"id {spec.id!r}: letters, digits, '_', '.', ':' or '-' (the ArchivalAgreement value)"
        )
    if not spec.name:
        problems.append("name: mandatory")
    if not spec.producers:
        problems.append("producers: at least one producing service")
    if spec.status not in STATUSES:
        problems.append(f"status {spec.status!r}: one of {', '.join(STATUSES)}")
    if spec.valid_from and spec.valid_until and spec.valid_until < spec.valid_from:
        problems.append("valid_until is before valid_from")
    for name in ("max_transfer_bytes", "max_object_bytes"):
        value = getattr(spec, name)
        if value is not None and value <= 0:
            problems.append(f"{name}: a positive number of bytes")
    bad_formats = [f for f in spec.formats if not (_PUID_RE.fullmatch(f) or _MIME_RE.fullmatch(f))]
    if bad_formats:
        problems.append(
            "formats: neither a PRONOM id (fmt/354) nor a MIME type (application/pdf): "
            + ", ".join(bad_formats)
        )
    if spec.profiles:
        known = set(
            session.scalars(select(ArchivalProfile.id).where(ArchivalProfile.id.in_(spec.profiles)))
        )
        unknown = [p for p in spec.profiles if p not in known]
        if unknown:
            problems.append("profiles: unknown archival profiles: " + ", ".join(unknown))
    wanted = set(spec.rules) | set(spec.record_types)
    if wanted:
        referential = {rule.id: rule for rule in session.scalars(select(Rule))}
        unknown_rules = [r for r in spec.rules if r not in referential]
        if unknown_rules:
            problems.append("rules: not in the referential: " + ", ".join(unknown_rules))
        types = record_types_of(referential.values())
        unknown_types = [t for t in spec.record_types if t not in types]
        if unknown_types:
            problems.append(
                "record_types: neither a record type of the schedule nor an AppraisalRule id: "
                + ", ".join(unknown_types)
            )
    if problems:
        raise InvalidContract(
            f"the contract is refused ({len(problems)} problem(s)): " + "; ".join(problems),
            problems=problems,
        )
    return spec


def record_types_of(rules: Any) -> set[str]:
    """The names a contract may give a record type by: each AppraisalRule's id and its
    schedule's ``record_type``."""
    names: set[str] = set()
    for rule in rules:
        if rule.type != "AppraisalRule":
            continue
        names.add(rule.id)
        label = (rule.meta or {}).get("record_type")
        if label:
            names.add(str(label))
    return names


def save_contract(
    session: Session, spec: ContractSpec, *, actor: Principal = SYSTEM, replace: bool = False
) -> Contract:
    """Create a contract (``replace``: or replace the one of this id); one journal leaf."""
    spec = check_spec(session, spec)
    current = session.get(Contract, spec.id)
    if current is not None and not replace:
        raise ContractExists(f"contract {spec.id!r} already exists", contract_id=spec.id)
    now = utcnow()
    created = current.created_at if current is not None else now
    clauses = {key: value for key, value in spec.__dict__.items()}
    contract = apply_contract(session, clauses, created_at=created, updated_at=now)
    _journal_contract(session, contract, actor, "created" if current is None else "replaced")
    return contract


def set_status(
    session: Session, contract_id: str, status: str, *, actor: Principal = SYSTEM
) -> Contract:
    """Disable (``inactive``) or enable (``active``) a contract; one journal leaf."""
    if status not in STATUSES:
        raise InvalidContract(f"status {status!r}: one of {', '.join(STATUSES)}")
    contract = get_contract(session, contract_id)
    contract.status = status
    contract.updated_at = utcnow()
    session.flush()
    _journal_contract(session, contract, actor, "enabled" if status == "active" else "disabled")
    return contract


def _journal_contract(session: Session, contract: Contract, actor: Principal, act: str) -> None:
    append_event(
        session,
        type="contracts.saved",
        actor=actor.actor,
        # The whole contract and its clock: the replay applies it as the act did.
        payload={
            "act": act,
            "contract": contract.clauses(),
            "created_at": contract.created_at.isoformat(),
            "updated_at": contract.updated_at.isoformat(),
        },
    )


def apply_contract(
    session: Session, clauses: Mapping[str, Any], *, created_at: datetime, updated_at: datetime
) -> Contract:
    """Make the row of ``clauses`` (no checks: the caller's, or the replay of an act they let
    through); flush, no commit."""
    values = dict(clauses)
    for key in ("valid_from", "valid_until"):
        if isinstance(values.get(key), str):
            values[key] = date.fromisoformat(values[key])
    contract = session.get(Contract, values["id"])
    if contract is None:
        contract = Contract(id=values["id"])
        session.add(contract)
    for key in CLAUSE_KEYS:
        if key != "id":
            setattr(contract, key, values.get(key, _DEFAULTS.get(key)))
    contract.created_at = created_at
    contract.updated_at = updated_at
    session.flush()
    return contract


_DEFAULTS: dict[str, Any] = {
    "description": "",
    "status": "active",
    "producers": [],
    "profiles": [],
    "record_types": [],
    "rules": [],
    "formats": [],
    "ocr_required": False,
    "antivirus_required": False,
}


def get_contract(session: Session, contract_id: str) -> Contract:
    contract = session.get(Contract, contract_id)
    if contract is None:
        raise ContractNotFound(f"no contract {contract_id!r}", contract_id=contract_id)
    return contract


def visible_to(principal: Principal, contract: Contract) -> bool:
    """Archivists, auditors and admins see every contract; others, their producers' only."""
    return principal.role in ("admin", "archivist", "auditor") or any(
        p in principal.producers for p in contract.producers
    )


def list_contracts(session: Session, principal: Principal = SYSTEM) -> list[Contract]:
    """The contracts the caller may read, by id."""
    return [
        c
        for c in session.scalars(select(Contract).order_by(Contract.id))
        if visible_to(principal, c)
    ]


def read_contract(session: Session, contract_id: str, principal: Principal = SYSTEM) -> Contract:
    """One contract, if the caller may read it (else not found: its existence is not said)."""
    contract = session.get(Contract, contract_id)
    if contract is None or not visible_to(principal, contract):
        raise ContractNotFound(f"no contract {contract_id!r}", contract_id=contract_id)
    return contract


# --- profiles -----------------------------------------------------------------------------------


def compile_profile(data: bytes) -> seda.RelaxNGProfile:
    """The compiled profile, or :class:`InvalidProfile` saying why it cannot be used."""
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileTooLarge(f"the profile is over {MAX_PROFILE_BYTES} bytes")
    try:
        return seda.RelaxNGProfile(data, max_bytes=MAX_PROFILE_BYTES)
    except seda.SedaError as exc:
        problems = [f"{f.where}: {f.message}" if f.where else f.message for f in exc.faults]
        raise InvalidProfile(
            "the profile is not a RelaxNG grammar SAE can apply: " + "; ".join(problems[:5]),
            problems=problems,
        ) from None


def add_profile(
    session: Session,
    profile_id: str,
    name: str,
    data: bytes,
    *,
    filename: str = "",
    actor: Principal = SYSTEM,
    replace: bool = False,
) -> ArchivalProfile:
    """Store a RelaxNG profile (checked: it must compile); one journal leaf with the document."""
    profile_id = profile_id.strip()
    if not _ID_RE.fullmatch(profile_id):
        raise InvalidProfile(
            f"id {profile_id!r}: letters, digits, '_', '.', ':' or '-' (the ArchivalProfile value)"
        )
    compile_profile(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidProfile("the profile must be UTF-8") from None
    current = session.get(ArchivalProfile, profile_id)
    if current is not None and not replace:
        raise ProfileExists(f"profile {profile_id!r} already exists", profile_id=profile_id)
    now = utcnow()
    values = {
        "id": profile_id,
        "name": name.strip() or profile_id,
        "kind": "rng",
        "filename": filename,
        "sha512": hashlib.sha512(data).hexdigest(),
        "size": len(data),
        "status": "active",
    }
    profile = apply_profile(
        session,
        values,
        data,
        created_at=current.created_at if current is not None else now,
        updated_at=now,
    )
    append_event(
        session,
        type="profiles.saved",
        actor=actor.actor,
        # The document itself (UTF-8 XML, at most 1 MiB) goes in the leaf, as the referential
        # goes in rules.imported: the journal is on every offer, so is every profile.
        payload={
            "act": "created" if current is None else "replaced",
            "profile": values,
            "document": text,
            "created_at": profile.created_at.isoformat(),
            "updated_at": profile.updated_at.isoformat(),
        },
    )
    return profile


def apply_profile(
    session: Session,
    values: Mapping[str, Any],
    data: bytes,
    *,
    created_at: datetime,
    updated_at: datetime,
) -> ArchivalProfile:
    """Make the row of a profile (no checks); flush, no commit."""
    profile = session.get(ArchivalProfile, values["id"])
    if profile is None:
        profile = ArchivalProfile(id=values["id"])
        session.add(profile)
    profile.name = values["name"]
    profile.kind = values.get("kind", "rng")
    profile.filename = values.get("filename", "")
    profile.status = values.get("status", "active")
    profile.document = data
    profile.sha512 = values["sha512"]
    profile.size = values["size"]
    profile.created_at = created_at
    profile.updated_at = updated_at
    session.flush()
    return profile


def list_profiles(session: Session) -> list[ArchivalProfile]:
    return list(session.scalars(select(ArchivalProfile).order_by(ArchivalProfile.id)))


def get_profile(session: Session, profile_id: str) -> ArchivalProfile:
    profile = session.get(ArchivalProfile, profile_id)
    if profile is None:
        raise ProfileNotFound(f"no archival profile {profile_id!r}", profile_id=profile_id)
    return profile


# --- the ingest step ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ContractFault:
    """One clause a SIP breaks (an ATR line): a stable code, a French message, where."""

    code: str
    message: str
    where: str | None = None


@dataclass(frozen=True)
class ObjectFacts:
    """What the contract looks at in one binary object, as the ingest measured it.

    ``puid`` is the PRONOM identification of the content (None while the ingest does not
    identify formats); ``mime_type`` the MIME type measured from the bytes (never the declared
    one: a declaration is not evidence).
    """

    sip_id: str
    size: int
    mime_type: str | None = None
    puid: str | None = None
    version: str | None = None
    group_id: str | None = None


@dataclass(frozen=True)
class ChecksRun:
    """Whether the ingest's optional checks ran on this SIP: True (ran on every file), False
    (exists here but did not run: not configured, or unreachable), None (this version of SAE
    has no such step)."""

    antivirus: bool | None = None
    ocr: bool | None = None
    #: The ingest identifies each file against PRONOM only while storing it: the format
    #: clause is then checked on the files' PUIDs after that (``object_faults``), and before
    #: it only on what libmagic measured.
    formats_identified_later: bool = False


@dataclass
class Verdict:
    """The contract of a SIP (None: deposited without one) and what it breaks."""

    contract_id: str | None = None
    faults: list[ContractFault] = field(default_factory=list)
    warnings: list[ContractFault] = field(default_factory=list)


def _clause(contract: Contract, clause: str) -> str:
    return f"contrat {contract.id}, clause « {CLAUSE_NAMES[clause]} »"


#: The statements of :func:`find_contract`, built once: every deposit runs one of them.
_PRODUCERS = select(Contract.id, Contract.producers).order_by(Contract.id)
_NAMED_FIRST = (
    select(Contract).order_by((Contract.id == bindparam("agreement")).desc(), Contract.id).limit(1)
)


def find_contract(
    session: Session, agreement: str | None, producer: str, *, today: date | None = None
) -> Verdict:
    """The SIP's contract from its ``ArchivalAgreement``, or the faults of not having one."""
    today = today or utcnow().date()
    verdict = Verdict()
    agreement = (agreement or "").strip() or None
    if agreement is None:
        # The two columns, not the contracts: this runs for every deposit naming none.
        own = [
            contract_id
            for contract_id, producers in session.connection().execute(_PRODUCERS)
            if producer in producers
        ]
        if own:
            verdict.faults.append(
                ContractFault(
                    "contract.missing",
                    f"le service producteur {producer} a un contrat de versement "
                    f"({', '.join(sorted(own))}) : le bordereau doit le nommer "
                    "(ArchivalAgreement)",
                    "ArchivalAgreement",
                )
            )
        elif contracts_settings().required:
            verdict.faults.append(
                ContractFault(
                    "contract.missing",
                    "un contrat de versement est obligatoire (SAE_CONTRACTS_REQUIRED) et le "
                    "bordereau n'en nomme aucun (ArchivalAgreement)",
                    "ArchivalAgreement",
                )
            )
        return verdict
    # One query (one per deposit): the named contract if it exists, else any contract (whether
    # there are contracts at all decides whether an unknown name is a fault).
    first = session.scalars(_NAMED_FIRST, {"agreement": agreement}).first()
    contract = first if first is not None and first.id == agreement else None
    if contract is None:
        any_contract = first is not None
        if any_contract or contracts_settings().required:
            verdict.faults.append(
                ContractFault(
                    "contract.unknown",
                    f"accord de versement {agreement} inconnu : aucun contrat ne porte cet "
                    "identifiant",
                    "ArchivalAgreement",
                )
            )
        return verdict
    verdict.contract_id = contract.id
    if contract.status != "active":
        verdict.faults.append(
            ContractFault(
                "contract.inactive",
                f"contrat {contract.id} désactivé : aucun versement n'est accepté sous ce contrat",
                "ArchivalAgreement",
            )
        )
    if contract.valid_from and today < contract.valid_from:
        verdict.faults.append(
            ContractFault(
                "contract.period",
                f"{_clause(contract, 'period')} : valide à partir du "
                f"{contract.valid_from:%d/%m/%Y}",
                "ArchivalAgreement",
            )
        )
    if contract.valid_until and today > contract.valid_until:
        verdict.faults.append(
            ContractFault(
                "contract.period",
                f"{_clause(contract, 'period')} : échu le {contract.valid_until:%d/%m/%Y}",
                "ArchivalAgreement",
            )
        )
    if producer not in contract.producers:
        verdict.faults.append(
            ContractFault(
                "contract.other_producer",
                f"{_clause(contract, 'producers')} : le service producteur {producer} n'est pas "
                f"partie à ce contrat ({', '.join(contract.producers)})",
                "ArchivalAgreement",
            )
        )
    return verdict


def evaluate(
    session: Session,
    transfer: seda.ArchiveTransfer,
    producer: str,
    *,
    rules: Mapping[str, Rule],
    objects: Callable[[], Sequence[ObjectFacts]],
    manifest: bytes,
    checks: ChecksRun,
    today: date | None = None,
) -> Verdict:
    """The ingest's contract step: the SIP's contract, and every clause it breaks.

    ``rules`` are the referential's rules the SIP names (found by the ingest's rule check);
    ``objects`` is called only when a clause looks at the files (formats, sizes, OCR), so a
    contract without such clauses costs no read. ``manifest`` is parsed again only when the
    SIP names an archival profile.
    """
    mm = transfer.package.management_metadata
    verdict = find_contract(session, transfer.archival_agreement, producer, today=today)
    contract = session.get(Contract, verdict.contract_id) if verdict.contract_id else None
    if verdict.faults:
        return verdict  # without a contract that applies, its clauses say nothing
    profile_id = (mm.archival_profile if mm is not None else None) or None
    if contract is not None:
        verdict.faults.extend(_rule_faults(contract, transfer, rules))
        if (
            contract.formats
            or contract.max_object_bytes
            or contract.max_transfer_bytes
            or contract.ocr_required
        ):
            verdict.faults.extend(_object_faults(contract, objects(), checks))
        if contract.antivirus_required and checks.antivirus is not True:
            why = (
                "aucun antivirus n'est disponible dans cette version du SAE"
                if checks.antivirus is None
                else "l'analyse antivirus n'a pas été faite (antivirus injoignable ou non "
                "configuré)"
            )
            verdict.faults.append(
                ContractFault(
                    "contract.antivirus_required",
                    f"{_clause(contract, 'antivirus_required')} : {why}",
                )
            )
        if contract.profiles and profile_id is None:
            verdict.faults.append(
                ContractFault(
                    "contract.profile",
                    f"{_clause(contract, 'profiles')} : le bordereau doit nommer un profil "
                    f"d'archivage (ArchivalProfile) parmi {', '.join(contract.profiles)}",
                    "ArchivalProfile",
                )
            )
        elif profile_id is not None and profile_id not in contract.profiles:
            allowed = ", ".join(contract.profiles) or "aucun"
            verdict.faults.append(
                ContractFault(
                    "contract.profile",
                    f"{_clause(contract, 'profiles')} : le profil {profile_id} n'est pas autorisé "
                    f"(autorisés : {allowed})",
                    "ArchivalProfile",
                )
            )
    if profile_id is not None:
        verdict.faults.extend(
            _profile_faults(
                session,
                profile_id,
                manifest,
                strict=contract is not None,
                warnings=verdict.warnings,
            )
        )
    return verdict


def object_faults(
    session: Session,
    contract_id: str | None,
    objects: Sequence[ObjectFacts],
    checks: ChecksRun = ChecksRun(),  # noqa: B008 - frozen, never mutated
) -> list[ContractFault]:
    """The faults of the contract's file clauses (formats, sizes, OCR) on ``objects``: for an
    ingest that knows each file's PRONOM identification only once it has read it (while
    storing), to check the format clause again with the PUIDs (``evaluate`` gave the
    ``contract_id``). None (no contract): no fault."""
    contract = session.get(Contract, contract_id) if contract_id else None
    if contract is None:
        return []
    return _object_faults(contract, objects, checks)


def _rule_faults(
    contract: Contract, transfer: seda.ArchiveTransfer, rules: Mapping[str, Rule]
) -> list[ContractFault]:
    faults: list[ContractFault] = []
    blocks: list[tuple[str, seda.Management]] = []
    mm = transfer.package.management_metadata
    if mm is not None and mm.management is not None:
        blocks.append(("ManagementMetadata", mm.management))
    blocks.extend((unit.id, unit.management) for unit in transfer.package.archive_units)
    allowed_rules = set(contract.rules)
    allowed_types = set(contract.record_types)
    appraisal_seen = False
    reported: set[tuple[str, str]] = set()
    for where, management in blocks:
        for category, block in management.rules.items():
            for ref in block.rules:
                rule_id = ref.rule_id
                if (
                    allowed_rules
                    and rule_id not in allowed_rules
                    and ("rules", rule_id) not in reported
                ):
                    reported.add(("rules", rule_id))
                    faults.append(
                        ContractFault(
                            "contract.rule",
                            f"{_clause(contract, 'rules')} : la règle {rule_id} ({category}) "
                            f"n'est pas autorisée (autorisées : {', '.join(contract.rules)})",
                            where,
                        )
                    )
                if category != "AppraisalRule":
                    continue
                appraisal_seen = True
                rule = rules.get(rule_id)
                label = (rule.meta or {}).get("record_type") if rule is not None else None
                if (
                    allowed_types
                    and rule_id not in allowed_types
                    and (label is None or str(label) not in allowed_types)
                    and ("types", rule_id) not in reported
                ):
                    reported.add(("types", rule_id))
                    kind = f"type « {label} », règle {rule_id}" if label else f"règle {rule_id}"
                    faults.append(
                        ContractFault(
                            "contract.record_type",
                            f"{_clause(contract, 'record_types')} : le type de documents ({kind}) "
                            f"n'est pas autorisé (autorisés : {', '.join(contract.record_types)})",
                            where,
                        )
                    )
    if allowed_types and not appraisal_seen:
        faults.append(
            ContractFault(
                "contract.record_type",
                f"{_clause(contract, 'record_types')} : aucune unité ne porte de type de "
                "documents (règle de sort final, AppraisalRule)",
                None,
            )
        )
    return faults


def _lists_puids(contract: Contract) -> bool:
    return any(_PUID_RE.fullmatch(f) for f in contract.formats)


def _format_allowed(contract: Contract, obj: ObjectFacts) -> bool:
    puids = {f for f in contract.formats if _PUID_RE.fullmatch(f)}
    mimes = {f for f in contract.formats if not _PUID_RE.fullmatch(f)}
    if obj.puid is not None and obj.puid.lower() in puids:
        return True
    mime = (obj.mime_type or "").split(";", 1)[0].strip().lower()
    return bool(mime) and mime in mimes


def _object_faults(
    contract: Contract, objects: Sequence[ObjectFacts], checks: ChecksRun
) -> list[ContractFault]:
    faults: list[ContractFault] = []
    total = 0
    # A text version of the scan: raw text (TextContent), or the searchable PDF/A that
    # ``sae deposit --ocr`` sends as the group's Dissemination version.
    text_groups = {
        o.group_id
        for o in objects
        if o.group_id
        and (
            (o.version or "").startswith("TextContent")
            or (
                (o.version or "").startswith("Dissemination")
                and (o.mime_type or "").split(";")[0].strip().lower() == "application/pdf"
            )
        )
    }
    for obj in objects:
        total += obj.size
        if (
            contract.formats
            and not _format_allowed(contract, obj)
            and not (
                # A PUID the contract lists may still admit it, once storing identified it.
                checks.formats_identified_later and obj.puid is None and _lists_puids(contract)
            )
        ):
            found = (
                ", ".join(v for v in (obj.puid and f"PRONOM {obj.puid}", obj.mime_type) if v)
                or "format non identifié"
            )
            faults.append(
                ContractFault(
                    "contract.format",
                    f"{_clause(contract, 'formats')} : format {found} non accepté "
                    f"(acceptés : {', '.join(contract.formats)})",
                    obj.sip_id,
                )
            )
        if contract.max_object_bytes and obj.size > contract.max_object_bytes:
            faults.append(
                ContractFault(
                    "contract.object_size",
                    f"{_clause(contract, 'max_object_bytes')} : {obj.size} octets, plus que les "
                    f"{contract.max_object_bytes} permis",
                    obj.sip_id,
                )
            )
        if (
            contract.ocr_required
            and checks.ocr is not True
            and (obj.mime_type or "").split(";")[0].strip().lower() in OCR_INPUTS
            and (obj.group_id is None or obj.group_id not in text_groups)
        ):
            faults.append(
                ContractFault(
                    "contract.ocr_required",
                    f"{_clause(contract, 'ocr_required')} : l'image n'a pas de version texte "
                    "(TextContent) et l'OCR n'a pas été fait par le SAE "
                    + (
                        "(étape absente de cette version)"
                        if checks.ocr is None
                        else "(OCR du serveur désactivé)"
                    ),
                    obj.sip_id,
                )
            )
    if contract.max_transfer_bytes and total > contract.max_transfer_bytes:
        faults.append(
            ContractFault(
                "contract.transfer_size",
                f"{_clause(contract, 'max_transfer_bytes')} : {total} octets, plus que les "
                f"{contract.max_transfer_bytes} permis",
                None,
            )
        )
    return faults


def _profile_faults(
    session: Session,
    profile_id: str,
    manifest: bytes,
    *,
    strict: bool,
    warnings: list[ContractFault],
) -> list[ContractFault]:
    """The SIP against the profile it names. An unknown profile is a fault under a contract,
    a warning without one (nothing then said which profiles exist)."""
    profile = session.get(ArchivalProfile, profile_id)
    if profile is None or profile.status != "active":
        fault = ContractFault(
            "profile.unknown",
            f"profil d'archivage {profile_id} "
            + ("inconnu" if profile is None else "désactivé")
            + (" : le bordereau ne peut pas être vérifié" if strict else " : non vérifié"),
            "ArchivalProfile",
        )
        if strict:
            return [fault]
        warnings.append(fault)
        return []
    compiled = compile_profile(profile.document)
    return [
        ContractFault(
            f.code,
            f"profil d'archivage {profile_id} non respecté : {f.message}",
            f.where,
        )
        for f in compiled.validate(manifest)
    ]
