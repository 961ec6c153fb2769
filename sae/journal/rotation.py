"""``sae journal rotate-key``: a new journal key, introduced by the journal itself.

The rotation is one ``journal.key_rotated`` leaf (see :mod:`sae.journal.keyhistory`) whose
payload carries the new public key, its fingerprint, the previous fingerprint and the previous
key's signature of the new fingerprint — or ``lost: true`` and no signature when the previous
key is gone, so that an auditor sees a key change the old key did not vouch for. Then a head is
sealed with the new key: it covers the rotation leaf, and every later head is checked against
the new key.

Files, in ``$SAE_DATA_DIR/keys``: the new key is first written as
``journal-signing.<new fingerprint>.key`` (a crash before the leaf is committed leaves only an
unused file); once the leaf is committed, the old ``journal-signing.key`` is renamed
``journal-signing.<old fingerprint>.key`` (kept, never deleted) and the new one takes its name.
A start that finds the journal pinning a key held by such a pending file finishes the swap
(:func:`finish_interrupted_rotation`).
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.db import lock_for_writing, transaction
from sae.fileio import fsync_directory, write_new_file
from sae.journal.checkpoint import SigningKey
from sae.journal.errors import KeyChanged, KeyMissing
from sae.journal.keyhistory import (
    KEY_EVENTS,
    expected_fingerprint,
    fingerprint,
    rotation_message,
)
from sae.journal.models import Event, TreeHead
from sae.journal.service import append_event

log = logging.getLogger("sae.journal")

#: Shared with the start's check (``sae.journal.keys``): one key change at a time.
ROTATION_LOCK = 0x5AE0_4E75


@dataclass(frozen=True)
class Rotation:
    """What ``rotate-key`` did."""

    leaf_index: int
    old_fingerprint: str | None
    new_fingerprint: str
    lost: bool
    retired_file: Path | None
    head: TreeHead | None


def retired_name(directory: Path, fpr: str) -> Path:
    """Where a key that is no longer (or not yet) the journal's is kept."""
    return directory / f"journal-signing.{fpr}.key"


def rotate_key(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    lost: bool = False,
    actor: str = "system:cli",
) -> Rotation:
    """Introduce a new journal key (see the module's docstring) and seal a head with it."""
    from sae.journal.keys import forget_journal_keys
    from sae.journal.sealing import seal_now

    directory = settings.data_dir / "keys"
    path = directory / SigningKey.FILENAME
    directory.mkdir(parents=True, exist_ok=True)
    with transaction(sessions) as session:
        lock_for_writing(session, ROTATION_LOCK)
        pinned = expected_fingerprint(session)
        old: SigningKey | None = None
        if not lost:
            if not path.exists():
                raise KeyMissing(
                    f"the journal signing key {path} is missing: restore it to have the old key "
                    "vouch for the new one, or run `sae journal rotate-key --lost`",
                    path=str(path),
                )
            old = SigningKey.load(path)
            held = fingerprint(old.public_pem)
            if pinned is not None and held != pinned:
                raise KeyChanged(
                    f"{path} (fingerprint {held}) is not the key the journal pins ({pinned}): "
                    "put the pinned key back, or run `sae journal rotate-key --lost`",
                    path=str(path),
                    found=held,
                    pinned=pinned,
                )
            pinned = held
        if old is None and pinned is not None:
            # The lost key's public half stays known beside the others: a rebuild from the
            # offers trusts the heads it signed (``sae.recovery.rebuild._first_keys``).
            _keep_public_half(session, directory, pinned)
        new = SigningKey.generate()
        new_fpr = fingerprint(new.public_pem)
        pending = retired_name(directory, new_fpr)
        write_new_file(pending, new.private_pem())
        signature = (
            base64.b64encode(old.sign(rotation_message(new_fpr))).decode("ascii")
            if old is not None
            else None
        )
        event = append_event(
            session,
            type="journal.key_rotated",  # KEY_ROTATED, written out for the registry test
            actor=actor,
            payload={
                "fingerprint": new_fpr,
                "public_key_pem": new.public_pem.decode("ascii"),
                "old_fingerprint": pinned,
                "old_key_signature": signature,
                "lost": old is None,
            },
        )
        leaf_index = event.leaf_index
    retired = _swap_in(directory, new_fpr)
    forget_journal_keys()
    head = seal_now(sessions, settings, wait=True)
    log.warning(
        "journal.key_rotated: leaf %s, key %s -> %s%s",
        leaf_index,
        pinned,
        new_fpr,
        " (old key lost: not vouched for)" if old is None else "",
    )
    return Rotation(leaf_index, pinned, new_fpr, old is None, retired, head)


def _keep_public_half(session: Session, directory: Path, fpr: str) -> None:
    target = directory / f"journal-signing.{fpr}.pub.pem"
    if target.exists():
        return
    candidates = [
        str(payload.get("public_key_pem", "")).encode("ascii", "replace")
        for payload in session.scalars(
            select(Event.payload).where(Event.type.in_(KEY_EVENTS)).order_by(Event.leaf_index)
        )
    ]
    candidates += [
        bytes(pem)
        for pem in session.scalars(
            select(TreeHead.public_key_pem).order_by(TreeHead.tree_size.desc()).limit(1)
        )
    ]
    for pem in candidates:
        if fingerprint(pem) == fpr:
            write_new_file(target, pem, 0o644)
            return


def _swap_in(directory: Path, new_fpr: str) -> Path | None:
    """Retire ``journal-signing.key`` under its fingerprint and put the pending key in place."""
    path = directory / SigningKey.FILENAME
    pending = retired_name(directory, new_fpr)
    retired: Path | None = None
    if path.exists():
        try:
            held = fingerprint(SigningKey.load(path).public_pem)
        except Exception:  # an unreadable file is kept too, under a name of its own
            held = "unreadable-" + os.urandom(4).hex()
        if held == new_fpr:
            return None  # already swapped
        retired = retired_name(directory, held)
        if retired.exists():
            retired = directory / f"journal-signing.{held}.{os.urandom(4).hex()}.key"
        os.rename(path, retired)
    os.link(pending, path)
    (directory / "journal-signing.pub.pem").unlink(missing_ok=True)
    (directory / "journal-signing.pub.pem").write_bytes(SigningKey.load(path).public_pem)
    fsync_directory(directory)
    return retired


def finish_interrupted_rotation(directory: Path, expected: str) -> bool:
    """A rotation committed its leaf but not the file swap: finish it. True if it did."""
    if not retired_name(directory, expected).exists():
        return False
    _swap_in(directory, expected)
    log.warning("journal: finished an interrupted key rotation (key %s in place)", expected)
    return True
