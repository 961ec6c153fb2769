"""Retention tables: the rule referential, computed end dates, holds, disposal lists, tombstones.

The referential holds durations only (FinalAction belongs to the unit, as in SEDA and Vitam);
``meta`` keeps what the communal schedule adds (record type, start event, recommended final
action with its sampling rule, legal reference, confidence).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow

if TYPE_CHECKING:
    from sae.catalog.models import ArchiveUnit, DataObject


class Rule(Base):
    """One rule of the referential. FinalAction is not here: it belongs to the unit (SEDA)."""

    __tablename__ = "rules"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    value: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    # None with measurement None: no duration ("unlimited", or a HoldRule without one).
    duration: Mapped[int | None]
    measurement: Mapped[str | None] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Schedule metadata (YAML referentials): record_type, start_event, final_action
    # (Keep/Destroy/Sample), sampling, legal_reference, confidence, access_rule…
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class UnitComputedRule(Base):
    """The computed outcome of one rule category on one unit (materialised, indexed).

    Maintained at ingest, on referential change and on hold change, so that "due before D" is
    an index range scan rather than a walk of every unit's ancestors.
    """

    __tablename__ = "unit_computed_rules"

    unit_id: Mapped[str] = mapped_column(ForeignKey("archive_units.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Latest end date over the rules; None when a rule has no end date (never due).
    end_date: Mapped[date | None]
    # True when at least one applicable rule has no end date (no StartDate, unlimited…).
    unbounded: Mapped[bool] = mapped_column(default=False)
    # Keep | Destroy (AppraisalRule) / RestrictAccess… (StorageRule); None elsewhere.
    final_action: Mapped[str | None] = mapped_column(String(16))
    # [{"rule_id", "start_date", "end_date", "origin"}], for display and change detection.
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


Index(
    "ix_unit_computed_rules_due",
    UnitComputedRule.category,
    UnitComputedRule.final_action,
    UnitComputedRule.end_date,
)


class Hold(Base):
    """A legal hold (gel) placed through the API on units (and, through them, their objects)."""

    __tablename__ = "holds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(255))
    until: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(255))


class HoldUnit(Base):
    """A unit covered by a hold: the units named, and every descendant at placement time."""

    __tablename__ = "hold_units"

    hold_id: Mapped[str] = mapped_column(ForeignKey("holds.id"), primary_key=True)
    unit_id: Mapped[str] = mapped_column(
        ForeignKey("archive_units.id"), primary_key=True, index=True
    )
    direct: Mapped[bool] = mapped_column(default=True)


class DisposalList(Base):
    """A disposal list (bordereau d'élimination) or a permanent-keeping list, with its circuit.

    States: draft → submitted → approved | rejected → visa_recorded → executing → executed.
    """

    __tablename__ = "disposal_lists"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    final_action: Mapped[str] = mapped_column(String(16))
    producer: Mapped[str | None] = mapped_column(String(255))
    due_before: Mapped[date]
    state: Mapped[str] = mapped_column(String(16), index=True, default="draft")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    submitted_at: Mapped[datetime | None]
    submitted_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decision_comment: Mapped[str | None] = mapped_column(Text)
    visa_reference: Mapped[str | None] = mapped_column(String(255))
    visa_decision_date: Mapped[date | None]
    visa_recorded_at: Mapped[datetime | None]
    visa_recorded_by: Mapped[str | None] = mapped_column(String(255))
    # The signed visa, archived as a record of the archives service.
    visa_unit_id: Mapped[str | None] = mapped_column(String(36))
    visa_object_id: Mapped[str | None] = mapped_column(String(36))
    # Execution claim: one executor at a time, a stale claim may be taken over (resume).
    execution_token: Mapped[str | None] = mapped_column(String(36))
    execution_started_at: Mapped[datetime | None]
    executed_at: Mapped[datetime | None]
    executed_by: Mapped[str | None] = mapped_column(String(255))
    # Records produced at execution (certificate PDF, SEDA notifications), archived as units.
    certificate_object_id: Mapped[str | None] = mapped_column(String(36))
    notification_object_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Outgoing transfer (Keep lists sent to another archive) and its acknowledgement.
    outgoing_transfer: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class DisposalLine(Base):
    """One archive unit on a list, with what the bordereau shows and what became of it.

    States: proposed → excluded (at visa) | sampled (kept by the sampling rule) → destroyed |
    kept (permanent keeping).
    """

    __tablename__ = "disposal_lines"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    list_id: Mapped[str] = mapped_column(ForeignKey("disposal_lists.id"), index=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("archive_units.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default="proposed")
    producer: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text, default="")
    date_start: Mapped[str | None] = mapped_column(String(64))
    date_end: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    object_count: Mapped[int] = mapped_column(default=0)
    rule_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    dua: Mapped[str] = mapped_column(String(255), default="")
    legal_reference: Mapped[str] = mapped_column(Text, default="")
    appraisal_end: Mapped[date | None]
    sampling_note: Mapped[str | None] = mapped_column(Text)
    # SHA-256 of the unit's rules and holds when the list was approved (re-checked at execution).
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    exclusion_reason: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None]


class Tombstone(Base):
    """What remains of a destroyed unit or object: enough to prove it existed and went lawfully."""

    __tablename__ = "tombstones"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))  # unit | object
    unit_id: Mapped[str] = mapped_column(String(36), index=True)
    object_id: Mapped[str | None] = mapped_column(String(36), index=True)
    list_id: Mapped[str] = mapped_column(ForeignKey("disposal_lists.id"), index=True)
    list_reference: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text, default="")
    producer: Mapped[str] = mapped_column(String(255), default="")
    sha512: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int | None] = mapped_column(BigInteger)
    date_start: Mapped[str | None] = mapped_column(String(64))
    date_end: Mapped[str | None] = mapped_column(String(64))
    archived_at: Mapped[datetime | None]
    destroyed_at: Mapped[datetime] = mapped_column(default=utcnow)
    leaf_index: Mapped[int | None]


def object_tombstone(
    unit: ArchiveUnit,
    obj: DataObject,
    disposal: DisposalList,
    *,
    at: datetime,
    leaf_index: int | None,
) -> Tombstone:
    """The tombstone of a data object that left the archive under ``disposal``."""
    return Tombstone(
        kind="object",
        unit_id=unit.id,
        object_id=obj.id,
        list_id=disposal.id,
        list_reference=disposal.reference,
        title=unit.title,
        producer=unit.producer,
        sha512=obj.sha512,
        size=obj.size,
        date_start=unit.start_date,
        date_end=unit.end_date,
        archived_at=obj.created_at,
        destroyed_at=at,
        leaf_index=leaf_index,
    )


def unit_tombstone(
    unit: ArchiveUnit,
    disposal: DisposalList,
    *,
    at: datetime,
    leaf_index: int | None = None,
    title: str | None = None,
) -> Tombstone:
    """The tombstone of an archive unit that left the archive under ``disposal``."""
    return Tombstone(
        kind="unit",
        unit_id=unit.id,
        list_id=disposal.id,
        list_reference=disposal.reference,
        title=title or unit.title,
        producer=unit.producer,
        date_start=unit.start_date,
        date_end=unit.end_date,
        archived_at=unit.created_at,
        destroyed_at=at,
        leaf_index=leaf_index,
    )
