"""Helpers of the retention tests: a controllable clock, SIPs with rules, reading the journal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from sae.journal.models import Event
from tests.sipfactory import FileSpec, RuleSpec, SipSpec, UnitSpec, build_zip


@dataclass
class Clock:
    """What ``sae.db.utcnow`` answers during a test; move it with ``set``."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def set(self, day: date) -> None:
        self.now = datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)


def dossier_sip(
    message_id: str,
    *,
    rule: str = "APP-5Y",
    start: date | None = date(2014, 1, 1),
    final_action: str | None = "Destroy",
    producer: str = "FINANCES",
    pieces: int = 2,
    title: str = "Factures 2013",
    extra_rules: list[RuleSpec] | None = None,
) -> bytes:
    """A file (dossier) declaring an appraisal rule, with ``pieces`` items that inherit it."""
    files = [
        FileSpec(uri=f"Content/pièce {i} (copie).pdf",
                 data=f"%PDF-1.4\n% {message_id} pièce {i}\n%%EOF\n".encode())
        for i in range(pieces)
    ]
    rules = [RuleSpec("AppraisalRule", rule, start=start, final_action=final_action)]
    rules += extra_rules or []
    spec = SipSpec(
        message_id=message_id,
        producer=producer,
        transferring=producer,
        files=files,
        units=[
            UnitSpec(
                id="AU-dossier",
                title=title,
                level="File",
                rules=rules,
                children=[UnitSpec(id=f"AU-{i}", title=f"{title} — pièce {i}", files=[i])
                          for i in range(pieces)],
            )
        ],
    )
    return build_zip(spec)


def event_types(api: Any, prefix: str = "") -> list[str]:
    """Journal event types in leaf order (optionally those starting with ``prefix``)."""
    with api.runtime.sessions() as session:
        types = session.scalars(select(Event.type).order_by(Event.leaf_index)).all()
    return [t for t in types if t.startswith(prefix)]


def events(api: Any, type_: str) -> list[Event]:
    """The events of one type, in leaf order."""
    with api.runtime.sessions() as session:
        return list(session.scalars(
            select(Event).where(Event.type == type_).order_by(Event.leaf_index)
        ))
