"""The record of what SAE assigned to an accepted transfer, as JSON, and back (issue 17).

:func:`record_of` turns the rows an accepted transfer adds to the catalogue (its transfer row,
:class:`~sae.catalog.rows.CatalogueRows` and its computed end dates) into one JSON document;
:func:`rows_from_record` gives the same rows back, which is what a rebuild of the catalogue from
an offer writes through :func:`sae.catalog.rows.write_catalogue`. The ingest writes the document
to every offer beside the manifest and the ATR (``sae.ingest.transfer_record``).

Every mapped column is written, by iterating the mappers (a column added to a table is in the
record without touching this module), except the surrogate integer keys the database numbers
itself (``unit_rules.id``, ``object_copies.id``): nothing refers to them across tables, and a
rebuild lets the database number them again. Values are encoded by the column's type: dates and
times in ISO 8601, bytes in base64, JSON as it is.

Format ``sae-transfer-record/1``::

    {"format": "sae-transfer-record/1", "manifest": "<name of the manifest in the SIP>",
     "transfer": {<transfers row, without atr: it is atr.xml beside the record>},
     "groups": [...], "objects": [...], "copies": [...], "units": [...], "links": [...],
     "rules": [...], "end_dates": [<unit_computed_rules rows>]}
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import Mapper

from sae.catalog.models import ArchiveUnit, DataObject, DataObjectGroup, UnitLink, UnitRule
from sae.catalog.rows import CatalogueRows
from sae.db import Base
from sae.ingest.models import Transfer
from sae.retention.models import UnitComputedRule
from sae.storage.models import ObjectCopy

FORMAT = "sae-transfer-record/1"

#: The record's lists of catalogue rows, in the order of ``CatalogueRows``' fields.
TABLES: tuple[tuple[str, type[Base]], ...] = (
    ("groups", DataObjectGroup),
    ("objects", DataObject),
    ("copies", ObjectCopy),
    ("units", ArchiveUnit),
    ("links", UnitLink),
    ("rules", UnitRule),
)
#: Transfer columns kept outside ``record.json`` (the ATR is its own member, ``atr.xml``).
TRANSFER_OUTSIDE = frozenset({"atr"})

R = TypeVar("R", bound=Base)


class RecordError(ValueError):
    """A record that is not a ``sae-transfer-record/1`` document."""


def record_of(
    transfer_row: Transfer,
    rows: CatalogueRows,
    end_dates: Sequence[dict[str, Any]],
    *,
    manifest_name: str,
) -> dict[str, Any]:
    """The JSON-ready record of an accepted transfer (see the module's docstring).

    First fills in, on the rows themselves, the column defaults the database would otherwise
    choose at insert time (``created_at``, ``stored_at``…): the record and the catalogue then
    hold the same values, not two clocks' readings.
    """
    settle_defaults([transfer_row])
    record: dict[str, Any] = {
        "format": FORMAT,
        "manifest": manifest_name,
        "transfer": _encode(transfer_row, skip=TRANSFER_OUTSIDE),
    }
    for name, model in TABLES:
        table_rows: list[Base] = getattr(rows, name)
        settle_defaults(table_rows)
        record[name] = [_encode(row) for row in table_rows]
        assert all(isinstance(row, model) for row in table_rows)
    record["end_dates"] = [_encode_values(UnitComputedRule, values) for values in end_dates]
    return record


def rows_from_record(
    record: dict[str, Any], *, atr: bytes | None
) -> tuple[Transfer, CatalogueRows, list[dict[str, Any]]]:
    """The rows of :func:`record_of` back: the transfer row (with ``atr``, kept beside the
    record), its catalogue rows and its end dates, equal column by column to those written."""
    if record.get("format") != FORMAT:
        raise RecordError(f"not a {FORMAT} record: format {record.get('format')!r}")
    transfer = _decode(Transfer, _field(record, "transfer"))
    transfer.atr = atr
    parts = [[_decode(model, values) for values in _list(record, name)] for name, model in TABLES]
    rows = CatalogueRows(*parts)  # type: ignore[arg-type]  # the order of TABLES
    end_dates = [_decode_values(UnitComputedRule, values) for values in _list(record, "end_dates")]
    return transfer, rows, end_dates


def transfer_values(row: Transfer) -> dict[str, Any]:
    """A transfer row as a record holds it (``record["transfer"]``: every column but the ATR),
    JSON-ready. A refused transfer has no description on the offers: its ``ingest.rejected``
    leaf carries these values and its ATR instead (``sae.ingest.replay``)."""
    settle_defaults([row])
    return _encode(row, skip=TRANSFER_OUTSIDE)


def transfer_from_values(values: Any, *, atr: bytes | None) -> Transfer:
    """:func:`transfer_values` back: the transfer row, with ``atr``."""
    transfer = _decode(Transfer, values)
    transfer.atr = atr
    return transfer


def settle_defaults(rows: Iterable[Base]) -> None:
    """Set, on each row, every column it leaves to a Python-side default, to that default."""
    for row in rows:
        state = row.__dict__
        for key, default in _plan(type(row)).defaults:
            if key in state:
                continue
            if default.is_scalar:
                setattr(row, key, default.arg)
            else:
                # SQLAlchemy wraps a default callable to take the execution context.
                setattr(row, key, default.arg(None))


def recorded_columns(model: type[Base]) -> list[str]:
    """The attribute names a record holds for ``model``'s rows: every mapped column but a
    surrogate key the database numbers (and, for transfers, the ATR kept beside)."""
    return list(_plan(model).recorded)


# --- encoding ----------------------------------------------------------------------------------


def _mapper(model: type[Base]) -> Mapper[Any]:
    return inspect(model)


def _numbered_by_database(column: Any) -> bool:
    return bool(column.primary_key and column.autoincrement is True)


@dataclass(frozen=True)
class _Plan:
    """What a record does with one model's columns, worked out once per model: every accepted
    transfer builds a record of its rows before its 201, and walking the mapper's attributes
    for each row cost more than encoding its values."""

    #: The attribute names a record holds, in the mapper's order.
    recorded: tuple[str, ...]
    #: ``recorded``, sorted, and as a set (rows given as values: end dates).
    recorded_sorted: tuple[str, ...]
    recorded_set: frozenset[str]
    #: The columns with a Python-side default (scalar or callable), with that default.
    defaults: tuple[tuple[str, Any], ...]


@functools.cache
def _plan(model: type[Base]) -> _Plan:
    skip = TRANSFER_OUTSIDE if model is Transfer else frozenset()
    recorded: list[str] = []
    defaults: list[tuple[str, Any]] = []
    for attr in _mapper(model).column_attrs:
        column = attr.columns[0]
        if not _numbered_by_database(column) and attr.key not in skip:
            recorded.append(attr.key)
        default: Any = column.default
        if default is not None and (default.is_scalar or default.is_callable):
            defaults.append((attr.key, default))
    return _Plan(tuple(recorded), tuple(sorted(recorded)), frozenset(recorded), tuple(defaults))


#: Values a record holds as they are (everything but bytes, dates and times).
_AS_IS = frozenset({str, int, float, bool, type(None), dict, list})


def _encode(row: Base, *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    get = row.__dict__.get
    out: dict[str, Any] = {}
    for key in _plan(type(row)).recorded:
        if key in skip:
            continue
        value = get(key)
        out[key] = value if type(value) in _AS_IS else encode_value(value)
    return out


def _encode_values(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    plan = _plan(model)
    if not plan.recorded_set.issuperset(values):
        unknown = set(values) - plan.recorded_set
        raise RecordError(f"{model.__tablename__}: unknown columns {sorted(unknown)}")
    get = values.get
    return {key: encode_value(get(key)) for key in plan.recorded_sorted}


def encode_value(value: Any) -> Any:
    """A column's value as a record writes it in JSON: bytes in base64, dates and times in
    ISO 8601, anything else as it is."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, date):  # datetime too (a subclass)
        return value.isoformat()
    return value


def _decode(model: type[R], values: dict[str, Any]) -> R:
    row = model()
    for key, value in _decode_values(model, values).items():
        setattr(row, key, value)
    return row


def _decode_values(model: type[Base], values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise RecordError(f"{model.__tablename__}: a row is not an object")
    out: dict[str, Any] = {}
    for attr in _mapper(model).column_attrs:
        if attr.key not in values:
            continue
        out[attr.key] = _decode_value(attr.columns[0], values[attr.key])
    unknown = set(values) - set(out)
    if unknown:
        raise RecordError(f"{model.__tablename__}: unknown columns {sorted(unknown)}")
    return out


def _decode_value(column: Any, value: Any) -> Any:
    if value is None:
        return None
    # A TypeDecorator (``UTCDateTime``) says nothing of its Python type: its implementation does.
    kind = getattr(column.type, "impl_instance", column.type).python_type
    if kind is bytes:
        return base64.b64decode(value, validate=True)
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is date:
        return date.fromisoformat(value)
    return value


def _field(record: dict[str, Any], name: str) -> dict[str, Any]:
    value = record.get(name)
    if not isinstance(value, dict):
        raise RecordError(f"{name!r} is missing or not an object")
    return value


def _list(record: dict[str, Any], name: str) -> list[Any]:
    value = record.get(name)
    if not isinstance(value, list):
        raise RecordError(f"{name!r} is missing or not a list")
    return value
