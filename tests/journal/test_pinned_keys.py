"""Journal keys pinned, rotated, never silently replaced (issue #18 item 5)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from sqlalchemy import select, update

from sae.config import Settings, load_settings
from sae.db import transaction
from sae.journal.bundle import verify_bundle
from sae.journal.checkpoint import SigningKey, verify_signature
from sae.journal.errors import KeyChanged, KeyFileMode, KeyMissing
from sae.journal.keyhistory import KEY_PINNED, KEY_ROTATED, fingerprint, rotation_message
from sae.journal.models import Event, TreeHead
from sae.journal.rotation import rotate_key
from sae.journal.sealing import seal_now
from sae.journal.service import append_event
from sae.journal.verification import verify_journal
from sae.runtime import Runtime
from tests.conftest import Api
from tests.sipfactory import build_zip, simple_sip


def _key_file(settings: Settings) -> Path:
    return settings.data_dir / "keys" / SigningKey.FILENAME


def _start(settings: Settings) -> Runtime:
    return Runtime.open(settings)


def _fact(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        append_event(session, type="test.fact", actor="system:test", payload={})


def test_first_start_pins_the_key(settings: Settings) -> None:
    runtime = _start(settings)
    try:
        with runtime.sessions() as session:
            pinned = session.scalars(select(Event).where(Event.type == KEY_PINNED)).all()
        key = SigningKey.load(_key_file(settings))
        assert len(pinned) == 1
        assert pinned[0].payload["fingerprint"] == fingerprint(key.public_pem)
        assert pinned[0].payload["public_key_pem"] == key.public_pem.decode()
    finally:
        runtime.close()
    _start(settings).close()  # a second start pins nothing more
    runtime = _start(settings)
    with runtime.sessions() as session:
        assert len(session.scalars(select(Event).where(Event.type == KEY_PINNED)).all()) == 1
    runtime.close()


def test_a_missing_key_file_refuses_the_start_naming_it(settings: Settings) -> None:
    runtime = _start(settings)
    _fact(runtime)
    seal_now(runtime.sessions, settings, wait=True)
    runtime.close()
    path = _key_file(settings)
    path.unlink()
    with pytest.raises(KeyMissing) as caught:
        _start(settings)
    assert str(path) in caught.value.detail
    assert "rotate-key --lost" in caught.value.detail
    assert not path.exists(), "a new key was created"


def test_a_different_key_refuses_the_start(settings: Settings) -> None:
    _start(settings).close()
    path = _key_file(settings)
    path.unlink()
    path.write_bytes(SigningKey.generate().private_pem())
    path.chmod(0o600)
    with pytest.raises(KeyChanged) as caught:
        _start(settings)
    assert str(path) in caught.value.detail
    assert "sae journal rotate-key" in caught.value.detail


def test_a_key_file_readable_by_others_is_refused(settings: Settings) -> None:
    _start(settings).close()
    path = _key_file(settings)
    path.chmod(0o644)
    with pytest.raises(KeyFileMode) as caught:
        _start(settings)
    assert str(path) in caught.value.detail
    assert "0644" in caught.value.detail
    path.chmod(0o600)
    tsa_key = settings.data_dir / "tsa" / "tsa.key"
    tsa_key.chmod(0o640)
    with pytest.raises(KeyFileMode) as caught:
        _start(settings)
    assert str(tsa_key) in caught.value.detail
    assert "0640" in caught.value.detail


def test_a_missing_builtin_tsa_key_refuses_the_start_once_heads_exist(settings: Settings) -> None:
    runtime = _start(settings)
    _fact(runtime)
    seal_now(runtime.sessions, settings, wait=True)
    runtime.close()
    (settings.data_dir / "tsa" / "tsa.key").unlink()
    with pytest.raises(KeyMissing, match="built-in TSA"):
        _start(settings)


def test_the_note_key_is_pinned_by_the_notes_it_signed(settings: Settings) -> None:
    """Witnesses trust the archive's note vkey: once a head carries a note, a missing note key
    is not created again, and another one is refused."""
    from sae.journal.note import NoteKey
    from sae.journal.notekey import forget_note_keys, note_key_path

    runtime = _start(settings)
    _fact(runtime)
    seal_now(runtime.sessions, settings, wait=True)
    runtime.close()
    path = note_key_path(settings)
    original = path.read_bytes()
    path.unlink()
    forget_note_keys()
    with pytest.raises(KeyMissing) as caught:
        _start(settings)
    assert str(path) in caught.value.detail
    assert not path.exists(), "a new note key was created"
    path.write_bytes(NoteKey.generate(settings.origin).private_bytes())
    path.chmod(0o600)
    forget_note_keys()
    with pytest.raises(KeyChanged) as changed:
        _start(settings)
    assert str(path) in changed.value.detail
    path.write_bytes(original)
    forget_note_keys()
    _start(settings).close()


def test_the_configured_fingerprint_must_match(settings: Settings) -> None:
    _start(settings).close()
    other = fingerprint(SigningKey.generate().public_pem)
    with pytest.raises(KeyChanged, match="SAE_JOURNAL_KEY_FINGERPRINT"):
        _start(settings.model_copy(update={"journal_key_fingerprint": other}))
    mine = fingerprint(SigningKey.load(_key_file(settings)).public_pem)
    _start(settings.model_copy(update={"journal_key_fingerprint": mine})).close()


def test_rotation_verifies_across_the_change_and_old_bundles_still_verify(api: Api) -> None:
    settings = api.settings
    spec = simple_sip("MSG-ROTATE-1")
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    object_id = response.json()["objects"][0]["id"]
    seal_now(api.runtime.sessions, settings, wait=True)
    old = SigningKey.load(_key_file(settings))
    old_fpr = fingerprint(old.public_pem)

    rotation = rotate_key(settings, api.runtime.sessions)
    assert rotation.old_fingerprint == old_fpr
    assert not rotation.lost
    new = SigningKey.load(_key_file(settings))
    assert fingerprint(new.public_pem) == rotation.new_fingerprint != old_fpr
    # The old key is kept, renamed with its fingerprint; never deleted.
    retired = settings.data_dir / "keys" / f"journal-signing.{old_fpr}.key"
    assert retired.exists()
    assert fingerprint(SigningKey.load(retired).public_pem) == old_fpr
    with api.runtime.sessions() as session:
        leaf = session.scalars(select(Event).where(Event.type == KEY_ROTATED)).one()
        head = session.scalars(select(TreeHead).order_by(TreeHead.tree_size.desc())).first()
    payload = leaf.payload
    assert payload["old_fingerprint"] == old_fpr
    assert payload["lost"] is False
    signature = base64.b64decode(payload["old_key_signature"])
    assert verify_signature(old.public_pem, rotation_message(rotation.new_fingerprint), signature)
    assert head is not None
    assert head.tree_size > leaf.leaf_index
    assert fingerprint(head.public_key_pem) == rotation.new_fingerprint

    # More heads after the change, then verify across it.
    api.deposit(build_zip(simple_sip("MSG-ROTATE-2")))
    seal_now(api.runtime.sessions, settings, wait=True)
    with api.runtime.sessions() as session:
        report = verify_journal(session, workers=1)
    assert report.ok, report.problems
    assert [e.fingerprint for e in report.keys] == [old_fpr, rotation.new_fingerprint]

    # A record sealed before the rotation: its bundle still verifies, offline.
    auditor = api.token("auditor")
    proof = api.client.get(f"/api/v1/objects/{object_id}/proof", headers=api.auth(auditor))
    assert proof.status_code == 200, proof.text
    verdict = verify_bundle(proof.content, content=spec.files[0].data)
    assert verdict.valid, verdict.failure

    # The server restarts with the new key.
    Runtime.open(settings).close()

    # A head forged with a key the history does not know fails, naming the head.
    forger = SigningKey.generate()
    with transaction(api.runtime.sessions) as session:
        last = session.scalars(select(TreeHead).order_by(TreeHead.tree_size.desc())).first()
        assert last is not None
        forged_size = last.tree_size
        session.execute(
            update(TreeHead)
            .where(TreeHead.tree_size == forged_size)
            .values(signature=forger.sign(last.checkpoint), public_key_pem=forger.public_pem)
        )
    with api.runtime.sessions() as session:
        report = verify_journal(session, workers=1)
    assert not report.ok
    assert any(
        p.kind == "head" and f"head {forged_size}" in p.message and "key history" in p.message
        for p in report.problems
    ), report.problems


def test_rotation_with_a_lost_key_is_recorded_as_such(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from sae.journal.cli import journal_app

    runtime = _start(settings)
    _fact(runtime)
    seal_now(runtime.sessions, settings, wait=True)
    runtime.close()
    old_fpr = fingerprint(SigningKey.load(_key_file(settings)).public_pem)
    _key_file(settings).unlink()
    monkeypatch.setenv("SAE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", settings.db_url)
    runner = CliRunner()
    refused = runner.invoke(journal_app, ["rotate-key"])
    assert refused.exit_code == 1
    assert "--lost" in refused.output
    result = runner.invoke(journal_app, ["rotate-key", "--lost"])
    assert result.exit_code == 0, result.output
    new_fpr = result.output.strip().splitlines()[-1]
    assert new_fpr == fingerprint(SigningKey.load(_key_file(settings)).public_pem)
    runtime = _start(settings)  # the new key is the pinned one now
    try:
        with runtime.sessions() as session:
            leaf = session.scalars(select(Event).where(Event.type == KEY_ROTATED)).one()
            report = verify_journal(session, workers=1)
        assert leaf.payload["lost"] is True
        assert leaf.payload["old_key_signature"] is None
        assert leaf.payload["old_fingerprint"] == old_fpr
        # The lost key's public half is kept, for a rebuild to trust the heads it signed.
        assert (settings.data_dir / "keys" / f"journal-signing.{old_fpr}.pub.pem").exists()
        assert report.ok, report.problems
        assert report.keys[-1].lost
        assert report.keys[-1].fingerprint == new_fpr
    finally:
        runtime.close()
    verified = runner.invoke(journal_app, ["verify"])
    assert verified.exit_code == 0, verified.output
    assert "LOST" in verified.output


def test_a_rotation_leaf_not_signed_by_the_old_key_fails_verify(settings: Settings) -> None:
    runtime = _start(settings)
    try:
        _fact(runtime)
        seal_now(runtime.sessions, settings, wait=True)
        impostor = SigningKey.generate()
        new = SigningKey.generate()
        new_fpr = fingerprint(new.public_pem)
        with transaction(runtime.sessions) as session:
            pinned = session.scalars(select(Event).where(Event.type == KEY_PINNED)).one()
            append_event(
                session,
                type=KEY_ROTATED,
                actor="system:test",
                payload={
                    "fingerprint": new_fpr,
                    "public_key_pem": new.public_pem.decode(),
                    "old_fingerprint": pinned.payload["fingerprint"],
                    "old_key_signature": base64.b64encode(
                        impostor.sign(rotation_message(new_fpr))
                    ).decode(),
                    "lost": False,
                },
            )
        with runtime.sessions() as session:
            report = verify_journal(session, workers=1)
        assert any(p.kind == "key" and "does not verify" in p.message for p in report.problems)
    finally:
        runtime.close()


def test_settings_refuse_a_malformed_fingerprint(tmp_path: Path) -> None:
    from sae.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="SAE_JOURNAL_KEY_FINGERPRINT"):
        load_settings(data_dir=tmp_path, journal_key_fingerprint="abc")
    colons = ":".join(["AB"] * 32)
    assert load_settings(data_dir=tmp_path, journal_key_fingerprint=colons).journal_key_fingerprint
    assert os.environ.get("SAE_JOURNAL_KEY_FINGERPRINT") is None


def test_verify_takes_the_first_key_from_the_configuration(settings: Settings) -> None:
    runtime = _start(settings)
    try:
        _fact(runtime)
        seal_now(runtime.sessions, settings, wait=True)
        mine = fingerprint(SigningKey.load(_key_file(settings)).public_pem)
        other = fingerprint(SigningKey.generate().public_pem)
        with runtime.sessions() as session:
            assert verify_journal(session, workers=1, pinned_key=mine).ok
            # A database whose pin and heads were rewritten with another key: the configured
            # fingerprint, outside the database, does not follow.
            report = verify_journal(session, workers=1, pinned_key=other)
        assert not report.ok
        kinds = {p.kind for p in report.problems}
        assert "key" in kinds
        assert "head" in kinds
    finally:
        runtime.close()
