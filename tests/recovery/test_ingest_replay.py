"""The ingest replays on their own (``sae.ingest.replay``): what a refusal's leaf restores, and
what a transfer's leaf without its description stops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from sae.ingest.models import Transfer
from sae.ingest.replay import replay_accepted, replay_rejected
from sae.recovery.errors import DescriptionInvalid
from sae.recovery.replay import LeafEvent, ReplayContext
from sae.storage.filesystem import FilesystemOffer

TRANSFER = "3f2c0000-0000-4000-8000-000000000001"


def leaf(type_: str, payload: dict[str, object], transfer: str | None = TRANSFER) -> LeafEvent:
    doc = {
        "v": 1,
        "index": 7,
        "type": type_,
        "actor": "token:t:depositor",
        "at": "2026-12-01T10:00:00.123456Z",
        "transfer": transfer,
        "unit": None,
        "object": None,
        "sha512": {},
        "data": payload,
    }
    return LeafEvent.parse(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


@pytest.fixture
def context(db_session: Session, tmp_path: Path) -> ReplayContext:
    return ReplayContext(session=db_session, offer=FilesystemOffer("local", tmp_path / "offer"))


def test_a_refusal_journaled_before_its_leaf_carried_its_row(context: ReplayContext) -> None:
    """Older ingest.rejected leaves: the row is what the leaf says, without an ATR, and the
    report says so."""
    errors = [{"code": "ingest.digest_mismatch", "message": "m", "where": "Content/a.pdf"}]
    replay_rejected(
        context,
        leaf(
            "ingest.rejected",
            {
                "message_identifier": "MSG-1",
                "transferring_agency": "URBANISME",
                "sip_sha512": "ab" * 64,
                "errors": errors,
                "error_count": 1,
            },
        ),
    )
    context.session.flush()
    row = context.session.get(Transfer, TRANSFER)
    assert row is not None
    assert (row.status, row.message_identifier, row.errors, row.atr) == (
        "KO",
        "MSG-1",
        errors,
        None,
    )
    assert row.received_at.isoformat() == "2026-12-01T10:00:00.123456+00:00"
    assert any(TRANSFER in note for note in context.notes)


def test_a_refusal_leaf_naming_another_transfer_stops(context: ReplayContext) -> None:
    values = {"id": "another", "status": "KO", "errors": [], "warnings": []}
    with pytest.raises(DescriptionInvalid, match="carries transfer another"):
        replay_rejected(context, leaf("ingest.rejected", {"transfer": values, "atr": "<x/>"}))


def test_an_accepted_transfer_without_its_description_stops_naming_it(
    context: ReplayContext,
) -> None:
    with pytest.raises(DescriptionInvalid) as stopped:
        replay_accepted(context, leaf("ingest.accepted", {"units": 1, "objects": 1}))
    assert stopped.value.key == f"transfers/{TRANSFER}.zip"
    assert stopped.value.kind == "missing"
