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
from collections.abc import Iterable, Sequence
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
        for attr in _mapper(type(row)).column_attrs:
            default: Any = attr.columns[0].default
            if attr.key in state or default is None:
                continue
            if default.is_scalar:
                setattr(row, attr.key, default.arg)
            elif default.is_callable:
                # SQLAlchemy wraps a default callable to take the execution context.
                setattr(row, attr.key, default.arg(None))


def recorded_columns(model: type[Base]) -> list[str]:
    """The attribute names a record holds for ``model``'s rows: every mapped column but a
    surrogate key the database numbers (and, for transfers, the ATR kept beside)."""
    skip = TRANSFER_OUTSIDE if model is Transfer else frozenset()
    return [
        attr.key
        for attr in _mapper(model).column_attrs
        if not _numbered_by_database(attr.columns[0]) and attr.key not in skip
    ]


# --- encoding ----------------------------------------------------------------------------------


def _mapper(model: type[Base]) -> Mapper[Any]:
    return inspect(model)


def _numbered_by_database(column: Any) -> bool:
    return bool(column.primary_key and column.autoincrement is True)


def _encode(row: Base, *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    state = row.__dict__
    out: dict[str, Any] = {}
    for attr in _mapper(type(row)).column_attrs:
        column = attr.columns[0]
        if attr.key in skip or _numbered_by_database(column):
            continue
        out[attr.key] = _encode_value(state.get(attr.key))
    return out


def _encode_values(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    keys = set(recorded_columns(model))
    unknown = set(values) - keys
    if unknown:
        raise RecordError(f"{model.__tablename__}: unknown columns {sorted(unknown)}")
    return {key: _encode_value(values.get(key)) for key in sorted(keys)}


def _encode_value(value: Any) -> Any:
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
