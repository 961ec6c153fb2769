"""Comparing two catalogues: the live one and one rebuilt from an offer (the restore drill).

Two readings are compared, table by table, with memory that does not grow with the archive:

- **rows**: every column a rebuild restores (``sae.catalog.records.recorded_columns``: all but
  the surrogate integer keys the database numbers) of every table the rebuild fills;
- **representations**: each unit and each object as ``GET /api/v1/units/{id}`` and
  ``GET /api/v1/objects/{id}`` show it (``sae.catalog.views``), which is what a reader sees.

Each side is first folded into a count and an order-free sum of the rows' SHA-256 (modulo
2**256): equal sums mean equal multisets, whatever order each database returns them in (SQLite
and PostgreSQL do not sort text alike). Only a table whose sums differ is read a second time,
keyed, to name the rows that differ (at most :data:`MAX_NAMED` per table).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.access.models import Communication
from sae.catalog import views
from sae.catalog.models import (
    ArchiveUnit,
    DataObject,
    DataObjectGroup,
    UnitLink,
    UnitRule,
)
from sae.catalog.records import encode_value, recorded_columns
from sae.contracts.models import ArchivalProfile, Contract
from sae.db import Base
from sae.ingest.models import Transfer
from sae.journal import merkle
from sae.journal.models import Event, TreeHead
from sae.journal.service import DbNodes
from sae.retention.models import (
    DisposalLine,
    DisposalList,
    Hold,
    HoldUnit,
    Rule,
    Tombstone,
    UnitComputedRule,
)
from sae.storage.models import ObjectCopy

#: The tables a rebuild restores, compared row by row.
TABLES: tuple[type[Base], ...] = (
    Transfer,
    DataObjectGroup,
    DataObject,
    ObjectCopy,
    ArchiveUnit,
    UnitLink,
    UnitRule,
    UnitComputedRule,
    Rule,
    Hold,
    HoldUnit,
    DisposalList,
    DisposalLine,
    Tombstone,
    Event,
    TreeHead,
    Contract,
    ArchivalProfile,
    Communication,
)
#: Columns a rebuild does not restore, by design (docs/recovery.md, "Not replayed"): a running
#: executor's claim on a disposal list and its lease, renewed at every step of the execution
#: (the rebuilt list has the ``disposal.execution_started`` leaf's time). No API answer shows
#: them; compared, they made every drill of an archive with an executed list "different".
NOT_REBUILT: dict[str, frozenset[str]] = {
    "disposal_lists": frozenset({"execution_token", "execution_started_at"}),
}
#: At most this many differing rows are named per table (the count says how many in all).
MAX_NAMED = 50
#: Units and objects whose API answers are compared when every row is the same (each kind).
VIEW_SAMPLE = 2000
_MODULUS = 1 << 256


@dataclass(frozen=True)
class Difference:
    """One thing that is not the same on both sides."""

    #: ``count``, ``row``, ``unit``, ``object``, ``journal_root``.
    kind: str
    #: The table, or ``units`` / ``objects`` / ``journal``.
    subject: str
    #: Which row (its key) or which figure.
    key: str
    live: str | None
    rebuilt: str | None
    #: For a row on both sides: the columns whose values differ (what an auditor looks for).
    columns: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "key": self.key,
            "live": self.live,
            "rebuilt": self.rebuilt,
            "columns": list(self.columns),
        }


@dataclass
class Comparison:
    """Counts on both sides and what differs."""

    counts_live: dict[str, int] = field(default_factory=dict)
    counts_rebuilt: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    #: Differences found beyond those named (``MAX_NAMED`` per table).
    unnamed: int = 0
    #: How many units and objects had their API answers compared (on the live side).
    views_compared: dict[str, int] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not self.differences and self.unnamed == 0


def _digest(doc: Any) -> bytes:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).digest()


def _compared_columns(model: type[Base]) -> list[str]:
    skipped = NOT_REBUILT.get(model.__tablename__, frozenset())
    return [name for name in recorded_columns(model) if name not in skipped]


def _key_columns(model: type[Base]) -> list[str]:
    """The natural key of a table's rows: its primary key unless the database numbers it, then
    every recorded column (a row is then known by what it holds)."""
    columns = _compared_columns(model)
    keys = [c.key for c in model.__mapper__.primary_key if c.key in columns]
    return keys or columns


def _rows(session: Session, model: type[Base]) -> Iterator[tuple[str, bytes]]:
    """(key, digest) of every row, streamed."""
    columns = _compared_columns(model)
    keys = _key_columns(model)
    attrs = [getattr(model, name) for name in columns]
    result = session.execute(select(*attrs).execution_options(yield_per=2000))
    for row in result:
        doc = {name: encode_value(value) for name, value in zip(columns, row, strict=True)}
        yield json.dumps([doc[k] for k in keys], default=str), _digest(doc)


def _row(session: Session, model: type[Base], key: str) -> dict[str, Any] | None:
    """The compared columns of the row of ``key`` (as :func:`_rows` names it), or None."""
    keys = _key_columns(model)
    columns = _compared_columns(model)
    values = json.loads(key)
    condition = [getattr(model, k) == v for k, v in zip(keys, values, strict=True)]
    attrs = [getattr(model, name) for name in columns]
    row = session.execute(select(*attrs).where(*condition)).first()
    if row is None:
        return None
    return {name: encode_value(value) for name, value in zip(columns, row, strict=True)}


def _with_columns(live: Session, rebuilt: Session, model: type[Base], into: Comparison) -> None:
    """Name the differing columns of each named row present on both sides (a table keyed by
    all its columns has none: its rows differ as one missing and one extra)."""
    if _key_columns(model) == _compared_columns(model):
        return
    for n, d in enumerate(into.differences):
        if d.subject != model.__tablename__ or d.kind != "row" or None in (d.live, d.rebuilt):
            continue
        mine, theirs = _row(live, model, d.key), _row(rebuilt, model, d.key)
        if mine is None or theirs is None:
            continue
        columns = tuple(name for name in mine if mine[name] != theirs.get(name))
        into.differences[n] = dataclasses.replace(d, columns=columns)


def _fold(items: Iterator[tuple[str, bytes]]) -> tuple[int, int]:
    count = total = 0
    for _key, digest in items:
        count += 1
        total = (total + int.from_bytes(digest, "big")) % _MODULUS
    return count, total


def _name_differences(
    subject: str,
    kind: str,
    live: Callable[[], Iterator[tuple[str, bytes]]],
    rebuilt: Callable[[], Iterator[tuple[str, bytes]]],
    into: Comparison,
) -> None:
    """Read both sides keyed and name the rows that differ (only for a table that does)."""
    seen: dict[str, bytes] = {}
    for key, digest in live():
        seen[key] = digest
    named = 0
    found: list[tuple[str, str | None, str | None]] = []
    for key, digest in rebuilt():
        mine = seen.pop(key, None)
        if mine == digest:
            continue
        found.append(
            (key, None if mine is None else mine.hex()[:16] + "…", digest.hex()[:16] + "…")
        )
    for key, digest in seen.items():
        found.append((key, digest.hex()[:16] + "…", None))
    for key, live_value, rebuilt_value in sorted(found):
        if named == MAX_NAMED:
            into.unnamed += 1
            continue
        named += 1
        into.differences.append(Difference(kind, subject, key, live_value, rebuilt_value))
    if not found:  # equal keyed, unequal sums: duplicate rows on one side
        into.differences.append(Difference(kind, subject, "(duplicates)", None, None))


def _in_sample(key: str, stride: int) -> bool:
    """Whether ``key`` is in the sample of one in ``stride`` (by its hash: the same keys on
    both sides, whatever order each database returns them in)."""
    if stride <= 1:
        return True
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % stride == 0


def _views(session: Session, kind: str, stride: int = 1) -> Iterator[tuple[str, bytes]]:
    from sae.catalog import service

    if kind == "units":
        for unit in session.scalars(select(ArchiveUnit).execution_options(yield_per=500)):
            if _in_sample(unit.id, stride):
                yield unit.id, _digest(views.unit_view(session, unit).model_dump(mode="json"))
    else:
        for obj in session.scalars(select(DataObject).execution_options(yield_per=500)):
            if _in_sample(obj.id, stride):
                units = service.units_of_object(session, obj)
                view = views.object_view(session, obj, units)
                yield obj.id, _digest(view.model_dump(mode="json"))


def journal_root(session: Session, size: int) -> bytes | None:
    """The Merkle root of the first ``size`` leaves, from the stored subtree hashes."""
    if size == 0:
        return None
    keys = merkle.peak_keys(size)
    nodes = DbNodes(session).get_nodes(keys)
    return merkle.root_from_peaks([nodes[k] for k in keys])


def compare_catalogues(
    live: Session, rebuilt: Session, *, view_sample: int = VIEW_SAMPLE
) -> Comparison:
    """Compare ``live`` with ``rebuilt``, table by table, then units and objects as the API
    shows them (all of them when a row differs, else a sample of ``view_sample`` each), then
    the journal's root at the rebuilt catalogue's size."""
    out = Comparison()
    for model in TABLES:
        name = model.__tablename__
        live_count, live_sum = _fold(_rows(live, model))
        rebuilt_count, rebuilt_sum = _fold(_rows(rebuilt, model))
        out.counts_live[name] = live_count
        out.counts_rebuilt[name] = rebuilt_count
        if live_count != rebuilt_count:
            out.differences.append(
                Difference("count", name, "rows", str(live_count), str(rebuilt_count))
            )
        if (live_count, live_sum) != (rebuilt_count, rebuilt_sum):
            _name_differences(
                name,
                "row",
                lambda m=model: _rows(live, m),  # type: ignore[misc]
                lambda m=model: _rows(rebuilt, m),  # type: ignore[misc]
                out,
            )
            _with_columns(live, rebuilt, model, out)
    # Each unit and object as the API shows it. The answers are functions of the rows just
    # compared (and of today's date, the same on both sides): when every row is the same, a
    # sample of them is read (VIEW_SAMPLE each, chosen by hash), which keeps a drill of
    # 100,000 units within minutes; when a row differs, all of them, to name what a reader
    # would see differ.
    rows_differ = bool(out.differences) or out.unnamed > 0
    for kind, model in (("units", ArchiveUnit), ("objects", DataObject)):
        total = out.counts_live.get(model.__tablename__, 0)
        stride = 1 if rows_differ or total <= view_sample else max(1, total // view_sample)
        compared, live_sum = _fold(_views(live, kind, stride))
        if (compared, live_sum) != _fold(_views(rebuilt, kind, stride)):
            _name_differences(
                kind,
                kind[:-1],
                lambda k=kind, n=stride: _views(live, k, n),  # type: ignore[misc]
                lambda k=kind, n=stride: _views(rebuilt, k, n),  # type: ignore[misc]
                out,
            )
        out.views_compared[kind] = compared
    size = out.counts_rebuilt[Event.__tablename__]  # counted with the rows above
    mine, theirs = journal_root(live, size), journal_root(rebuilt, size)
    if mine != theirs:
        out.differences.append(
            Difference(
                "journal_root",
                "journal",
                f"size {size}",
                mine.hex() if mine else None,
                theirs.hex() if theirs else None,
            )
        )
    return out
