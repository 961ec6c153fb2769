"""The witnesses' cosignatures outlive the catalogue (issue #18): each co-signed head's note,
with its cosignatures, is written to the offers (``journal/checkpoints/``), and a catalogue
rebuilt from an offer has them back — checked against the witnesses' vkeys — so that its proof
bundles carry them. An altered cosignature on the offer stops the rebuild, naming the note.
Two real ``sae witness serve`` processes co-sign (the ``archive`` fixture of
tests/journal/test_witnessing.py, through tests/recovery/conftest.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import select

from sae.db import make_engine, make_sessionmaker
from sae.journal.bundle import verify_bundle
from sae.journal.checkpoints import KIND, PREFIX, checkpoint_key, publish_checkpoints
from sae.journal.models import HeadCosignature
from sae.journal.note import Note, Verifier
from sae.recovery.errors import SegmentInvalid
from sae.recovery.rebuild import rebuild
from sae.storage.fsck import reconcile
from sae.storage.models import MetadataCopy
from tests.journal.test_witnessing import Archive, deposit
from tests.recovery.test_rebuild import local_offer, publish, rewrite, running, sqlite_target


def _witnessed(archive: Archive) -> tuple[str, bytes, int]:
    """A deposit, its head co-signed by both witnesses, segments and checkpoints published."""
    object_id, content = deposit(archive, "MSG-CHECKPOINT-1")
    size = archive.seal_and_witness()
    publish(archive.api)
    runtime = archive.runtime
    # The server's witnessing round publishes them too: whichever comes first writes them.
    publish_checkpoints(runtime.sessions, runtime.strategy_offers, runtime.witnesses.names)
    return object_id, content, size


def _cosignatures(sessions: object, size: int) -> dict[str, str]:
    with sessions() as session:  # type: ignore[operator]
        rows = session.scalars(select(HeadCosignature).where(HeadCosignature.tree_size == size))
        return {row.witness: row.line for row in rows}


def test_a_rebuilt_catalogue_keeps_the_witnesses_cosignatures(
    archive: Archive, tmp_path: Path
) -> None:
    object_id, content, size = _witnessed(archive)
    live = _cosignatures(archive.runtime.sessions, size)
    assert len(live) == 2
    offer = local_offer(archive.settings)
    key = checkpoint_key(size)
    assert key in offer.list_keys(PREFIX)
    note = Note.parse(b"".join(offer.get(key)))
    vkeys = [w.vkey for w in archive.witnesses]
    archive_vkey = archive.api.client.get(
        "/api/v1/journal/vkey", headers=archive.api.auth(archive.api.token("auditor"))
    ).text
    verifiers = [Verifier.parse(archive_vkey)] + [Verifier.parse(v) for v in vkeys]
    assert len(note.verified_by(verifiers)) == 3  # the archive's signature, both witnesses'
    with archive.runtime.sessions() as session:
        recorded = session.scalars(
            select(MetadataCopy).where(MetadataCopy.key == key, MetadataCopy.kind == KIND)
        ).all()
        assert [row.offer for row in recorded] == ["local"]
        findings = reconcile(session, archive.runtime.offer_set)
    assert not [f for f in findings if f.key.startswith(PREFIX)], findings

    target = sqlite_target(tmp_path)
    report = rebuild(archive.settings, "local", target)
    engine = make_engine(target)
    try:
        assert _cosignatures(make_sessionmaker(engine), size) == live
    finally:
        engine.dispose()
    assert any("cosignatures restored" in note for note in report.notes), report.notes
    assert report.admin_token_path is not None
    rebuilt = archive.settings.model_copy(update={"database_url": target})
    with running(rebuilt) as api:
        token = report.admin_token_path.read_text().strip()
        got = api.client.get(f"/api/v1/objects/{object_id}/proof", headers=api.auth(token))
        assert got.status_code == 200, got.text
        checked = verify_bundle(got.content, content=content, witnesses=vkeys)
        assert checked.valid, checked.failure
        assert "quorum 2" in checked.passed[-1][1]


def test_an_altered_cosignature_on_the_offer_stops_the_rebuild(
    archive: Archive, tmp_path: Path
) -> None:
    _, _, size = _witnessed(archive)
    offer = local_offer(archive.settings)
    key = checkpoint_key(size)
    lines = b"".join(offer.get(key)).decode().splitlines(keepends=True)
    name = archive.witnesses[1].name
    at = next(i for i, line in enumerate(lines) if line.startswith(f"— {name} "))
    raw = bytearray(base64.b64decode(lines[at].split(" ")[2]))
    raw[-1] ^= 1
    lines[at] = f"— {name} {base64.b64encode(bytes(raw)).decode()}\n"
    rewrite(offer, key, "".join(lines).encode())
    with pytest.raises(SegmentInvalid) as stopped:
        rebuild(archive.settings, "local", sqlite_target(tmp_path))
    assert stopped.value.key == key
    assert stopped.value.kind == "cosignature"
    assert name in stopped.value.detail
