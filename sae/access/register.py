"""The register of communications: every unit communicated to a reader or a depositor — its
metadata (``GET /units/{id}``, the console's unit page), an object's bytes, a DIP — with the
basis of the communication:

- ``law``: communicable today (Code du patrimoine L213-1, no L213-2 delay running);
- ``derogation``: not yet communicable, opened to that reader by a dérogation (L213-3), named;
- ``producer``: read by a depositor of the unit's producing service.

Archivists, auditors and admins reading are not communications to the public: their reads are
journaled (objects, DIPs) but not in the register.

The register is a projection of the journal: the read's event (``access.unit_read``,
``access.object_read``, ``access.dip_exported``) carries the basis in its payload
(``register``), and the rows are written from that payload in the event's transaction —
by :func:`record` live, by the same function on replay (``sae.access.replay``).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from sae.access.errors import InvalidRegisterQuery
from sae.access.models import Communication, DerogationUnit
from sae.auth.service import Principal
from sae.catalog import service as catalog
from sae.catalog.models import ArchiveUnit

#: The roles whose reads are communications (the others are the archives service's own staff).
COMMUNICATED_TO = ("reader", "depositor")
BASES = ("law", "derogation", "producer")
KINDS = ("metadata", "content", "dip")
#: Which event records which kind of communication.
KIND_OF_EVENT = {
    "access.unit_read": "metadata",
    "access.object_read": "content",
    "access.dip_exported": "dip",
}
BASIS_FR = {
    "law": "Communicable de plein droit",
    "derogation": "Dérogation (L213-3)",
    "producer": "Service producteur",
}
KIND_FR = {"metadata": "Notice", "content": "Document", "dip": "Paquet de diffusion (DIP)"}
#: At most this many entries per page of ``GET /communications``.
MAX_PAGE = 500


def is_communication(principal: Principal) -> bool:
    """Whether a read by ``principal`` goes into the register."""
    return principal.role in COMMUNICATED_TO


def bases(
    session: Session, principal: Principal, unit_ids: Sequence[str]
) -> list[list[str | None]]:
    """``[unit_id, basis, derogation_id]`` for each unit ``principal`` reads (already allowed
    to: the caller checked access). A depositor reads as its producer's depositor; a reader
    under the law when the unit is communicable today, else under the dérogation that opens it
    to that reader today (the one open longest, when several do)."""
    ids = list(dict.fromkeys(unit_ids))
    if principal.role == "depositor":
        return [[u, "producer", None] for u in ids]
    closed = catalog.closed_units(session, ids)  # by law, whoever reads
    opened: dict[str, str] = {}
    user_id = catalog.user_of(principal)
    if closed and user_id:
        rows = session.execute(
            select(DerogationUnit.unit_id, DerogationUnit.derogation_id)
            .where(
                DerogationUnit.user_id == user_id,
                DerogationUnit.unit_id.in_(closed),
                DerogationUnit.until >= catalog.today(),
            )
            .order_by(DerogationUnit.until)
        )
        opened = {unit_id: derogation_id for unit_id, derogation_id in rows}
    return [[u, "derogation", opened.get(u)] if u in closed else [u, "law", None] for u in ids]


def payload_for(
    session: Session, principal: Principal, unit_ids: Sequence[str]
) -> dict[str, Any] | None:
    """The ``register`` member of a read's event payload, or None when the read is not a
    communication (staff) or concerns no unit. Holds what the replay needs: the account, its
    login and role, and each unit's basis."""
    if not is_communication(principal) or not unit_ids:
        return None
    return {
        "user_id": catalog.user_of(principal),
        "login": str(getattr(principal, "login", "") or principal.actor),
        "role": principal.role,
        "units": bases(session, principal, unit_ids),
    }


def record(
    session: Session,
    *,
    leaf: int,
    at: datetime,
    event_type: str,
    object_id: str | None,
    payload: dict[str, Any],
) -> list[Communication]:
    """The register's rows of one read event, from its payload (live and on replay alike).
    An event without ``register`` (a staff read, or one journaled before the register) has
    none."""
    entry = payload.get("register")
    kind = KIND_OF_EVENT.get(event_type)
    if not isinstance(entry, dict) or kind is None:
        return []
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # a leaf's time is UTC
    rows = [
        Communication(
            leaf=leaf,
            unit_id=str(unit_id),
            at=at,
            kind=kind,
            object_id=object_id,
            user_id=entry.get("user_id"),
            login=str(entry["login"]),
            role=str(entry["role"]),
            basis=str(basis),
            derogation_id=derogation_id,
            via=str(payload.get("via") or "api"),
        )
        for unit_id, basis, derogation_id in entry["units"]
    ]
    session.add_all(rows)
    session.flush()
    return rows


# --- reading the register ----------------------------------------------------------------------


@dataclass(frozen=True)
class RegisterQuery:
    """Filters of the register; every one optional. Dates are days, inclusive (UTC)."""

    login: str | None = None
    unit_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    basis: str | None = None
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.basis is not None and self.basis not in BASES:
            raise InvalidRegisterQuery(
                f"basis {self.basis!r}: one of {', '.join(BASES)}", field="basis"
            )
        if self.kind is not None and self.kind not in KINDS:
            raise InvalidRegisterQuery(
                f"kind {self.kind!r}: one of {', '.join(KINDS)}", field="kind"
            )
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidRegisterQuery("the period ends before it starts", field="to")

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.login:
            where.append(Communication.login == self.login)
        if self.unit_id:
            where.append(Communication.unit_id == self.unit_id)
        if self.basis:
            where.append(Communication.basis == self.basis)
        if self.kind:
            where.append(Communication.kind == self.kind)
        if self.date_from:
            where.append(Communication.at >= datetime.combine(self.date_from, time(), UTC))
        if self.date_to:
            end = datetime.combine(self.date_to + timedelta(days=1), time(), UTC)
            where.append(Communication.at < end)
        return where


@dataclass(frozen=True)
class Entry:
    """A register row with the unit's title (as the catalogue has it today)."""

    row: Communication
    title: str | None


def _cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    leaf, _, unit_id = cursor.partition(":")
    if not leaf.isdigit() or not unit_id:
        raise InvalidRegisterQuery(
            f"cursor {cursor!r} is not one this register gave", field="cursor"
        )
    return int(leaf), unit_id


def _titles(session: Session, unit_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(unit_ids))
    titles: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        titles.update(
            (uid, title)
            for uid, title in session.execute(
                select(ArchiveUnit.id, ArchiveUnit.title).where(ArchiveUnit.id.in_(chunk))
            )
            if title
        )
    return titles


def list_page(
    session: Session, query: RegisterQuery, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[Entry], str | None]:
    """One page of the register, the newest first, and the cursor of the next page."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(Communication).where(*query.conditions())
    after = _cursor(cursor)
    if after is not None:
        leaf, unit_id = after
        stmt = stmt.where(
            or_(
                Communication.leaf < leaf,
                and_(Communication.leaf == leaf, Communication.unit_id > unit_id),
            )
        )
    rows = list(
        session.scalars(
            stmt.order_by(Communication.leaf.desc(), Communication.unit_id).limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    titles = _titles(session, (r.unit_id for r in rows))
    entries = [Entry(r, titles.get(r.unit_id)) for r in rows]
    next_cursor = f"{rows[-1].leaf}:{rows[-1].unit_id}" if more and rows else None
    return entries, next_cursor


def all_entries(session: Session, query: RegisterQuery) -> Iterator[Entry]:
    """Every entry matching ``query``, the oldest first (exports), streamed."""
    stmt = (
        select(Communication)
        .where(*query.conditions())
        .order_by(Communication.leaf, Communication.unit_id)
        .execution_options(yield_per=1000)
    )
    batch: list[Communication] = []
    for row in session.scalars(stmt):
        batch.append(row)
        if len(batch) == 1000:
            yield from _entries(session, batch)
            batch = []
    yield from _entries(session, batch)


def _entries(session: Session, rows: list[Communication]) -> Iterator[Entry]:
    if not rows:
        return
    titles = _titles(session, (r.unit_id for r in rows))
    for r in rows:
        yield Entry(r, titles.get(r.unit_id))


# --- exports -----------------------------------------------------------------------------------

CSV_COLUMNS = (
    "at",
    "login",
    "user_id",
    "role",
    "unit_id",
    "title",
    "kind",
    "object_id",
    "basis",
    "derogation_id",
    "via",
    "leaf",
)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def csv_lines(entries: Iterable[Entry]) -> Iterator[str]:
    """The register as CSV (UTF-8, comma-separated, a header line), line by line."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def flush() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for e in entries:
        r = e.row
        writer.writerow(
            [
                _iso(r.at),
                r.login,
                r.user_id or "",
                r.role,
                r.unit_id,
                _safe_cell(e.title or ""),
                r.kind,
                r.object_id or "",
                r.basis,
                r.derogation_id or "",
                r.via,
                r.leaf,
            ]
        )
        yield flush()


def _safe_cell(text: str) -> str:
    """A title as a spreadsheet shows it, never as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass
class Summary:
    """What the annual report counts: by basis, by month (``YYYY-MM``), by kind."""

    total: int
    by_basis: Counter[str]
    by_month: Counter[str]
    by_kind: Counter[str]
    readers: int


def summarise(entries: Sequence[Entry]) -> Summary:
    return Summary(
        total=len(entries),
        by_basis=Counter(e.row.basis for e in entries),
        by_month=Counter(e.row.at.astimezone(UTC).strftime("%Y-%m") for e in entries),
        by_kind=Counter(e.row.kind for e in entries),
        readers=len({e.row.login for e in entries}),
    )


_MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def month_fr(month: str) -> str:
    """``2026-03`` → ``mars 2026``."""
    year, _, number = month.partition("-")
    return f"{_MONTHS_FR[int(number) - 1]} {year}"


def _period_fr(query: RegisterQuery) -> str:
    def d(day: date) -> str:
        return day.strftime("%d/%m/%Y")

    if query.date_from and query.date_to:
        return f"du {d(query.date_from)} au {d(query.date_to)}"
    if query.date_from:
        return f"depuis le {d(query.date_from)}"
    if query.date_to:
        return f"jusqu'au {d(query.date_to)}"
    return "depuis l'ouverture du registre"


def service_name() -> str:
    """The archives service's name, as the disposal documents give it."""
    from sae.retention.config import retention_settings

    return retention_settings().archives_service_name


def pdf(
    entries: Sequence[Entry],
    query: RegisterQuery,
    *,
    archives_service_name: str,
    created: datetime,
) -> bytes:
    """The register as a French PDF for the annual report: the filters, the counts by basis,
    by kind and by month, then every communication."""
    from fpdf.enums import XPos, YPos

    from sae.retention.documents import DocumentPdf, latin1  # the project's French PDF base

    summary = summarise(entries)
    doc = DocumentPdf("Registre des communications", created=created)
    doc.add_page()
    doc.line_text("Registre des communications", size=16, bold=True, h=8)
    doc.line_text(archives_service_name, size=11)
    doc.line_text(f"Période : {_period_fr(query)}")
    filters = [
        f"lecteur {query.login}" if query.login else "",
        f"unité {query.unit_id}" if query.unit_id else "",
        f"fondement « {BASIS_FR[query.basis]} »" if query.basis else "",
        f"nature « {KIND_FR[query.kind]} »" if query.kind else "",
    ]
    if any(filters):
        doc.line_text("Filtres : " + ", ".join(f for f in filters if f))
    doc.line_text(f"Établi le {created.astimezone(UTC).strftime('%d/%m/%Y à %H:%M UTC')}")
    doc.ln(3)
    doc.line_text(
        f"{summary.total} communication(s) à {summary.readers} lecteur(s) ou service(s) "
        "versant(s).",
        bold=True,
    )

    def table(title: str, rows: list[tuple[str, int]]) -> None:
        doc.ln(2)
        doc.line_text(title, size=11, bold=True, h=6)
        doc.set_font("Helvetica", size=10)
        for label, count in rows:
            doc.cell(110, 6, latin1(label), border=1)
            doc.cell(30, 6, str(count), border=1, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    table("Par fondement", [(BASIS_FR[b], summary.by_basis.get(b, 0)) for b in BASES])
    table("Par nature", [(KIND_FR[k], summary.by_kind.get(k, 0)) for k in KINDS])
    table("Par mois", [(month_fr(m), n) for m, n in sorted(summary.by_month.items())])

    doc.add_page()
    doc.line_text("Liste des communications", size=11, bold=True, h=6)
    widths = (34, 34, 88, 34, 40, 47)
    heads = ("Date (UTC)", "Lecteur", "Unité", "Nature", "Fondement", "Dérogation")
    doc.set_font("Helvetica", "B", 8)
    for w, head in zip(widths, heads, strict=True):
        doc.cell(w, 6, latin1(head), border=1)
    doc.ln()
    doc.set_font("Helvetica", size=8)
    for e in entries:
        r = e.row
        unit = f"{e.title} ({r.unit_id})" if e.title else r.unit_id
        cells = (
            r.at.astimezone(UTC).strftime("%d/%m/%Y %H:%M"),
            r.login,
            unit,
            KIND_FR.get(r.kind, r.kind),
            BASIS_FR.get(r.basis, r.basis),
            r.derogation_id or "",
        )
        for w, text in zip(widths, cells, strict=True):
            doc.cell(w, 5, _fit(doc, latin1(text), w), border=1)
        doc.ln()
    return bytes(doc.output())


def _fit(doc: Any, text: str, width: float) -> str:
    """``text`` cut to fit a cell of ``width`` mm (with an ellipsis)."""
    if doc.get_string_width(text) <= width - 2:
        return text
    while text and doc.get_string_width(text + "...") > width - 2:
        text = text[:-1]
    return text + "..."


# --- recording a read --------------------------------------------------------------------------


def object_units(session: Session, principal: Principal, units: Sequence[ArchiveUnit]) -> list[str]:
    """The units an object read communicates: those of its units the reader sees whole (a
    reader reads only when all are; a depositor, its producers' ones)."""
    seen = catalog.visibilities(session, principal, units)
    return [u.id for u in units if seen[u.id] == catalog.FULL]


def unit_read(session: Session, principal: Principal, unit: ArchiveUnit, *, via: str) -> None:
    """Journal and register the read of a unit's metadata by a reader or a depositor
    (``access.unit_read``); a staff read is neither (it is no communication). The caller has
    checked that ``principal`` sees the unit whole, and commits."""
    from sae.journal.service import append_event

    entry = payload_for(session, principal, [unit.id])
    if entry is None:
        return
    payload = {"via": via, "register": entry}
    event = append_event(
        session,
        type="access.unit_read",
        actor=principal.actor,
        unit_id=unit.id,
        transfer_id=unit.transfer_id,
        payload=payload,
    )
    record(
        session,
        leaf=event.leaf_index,
        at=event.occurred_at,
        event_type=event.type,
        object_id=None,
        payload=payload,
    )
