"""The journal's key history: which key signs which heads, as the journal itself records it.

A head is trusted when it is signed by the key *in force* at its size, never merely by the key
stored beside it (whoever can write the database could store their own). The history is:

1. the **first key**: ``SAE_JOURNAL_KEY_FINGERPRINT`` when set, else the first
   ``journal.key_pinned`` leaf, else the key of the first head (a journal older than pinning);
2. then each ``journal.key_rotated`` leaf at index *i* introduces a new key for every head of
   size > *i* (the first head covering the leaf). Its payload carries the new public key, its
   fingerprint, the previous fingerprint and the previous key's signature of the new
   fingerprint (``old_key_signature``, base64 DER ECDSA-SHA256 over the 64 ASCII hex digits), or
   ``lost: true`` and no signature when the previous key was gone.

A fingerprint is the SHA-256 of the public key's SubjectPublicKeyInfo DER, in lowercase hex
(``openssl pkey -pubin -in key.pem -outform DER | sha256sum``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.journal.checkpoint import verify_signature
from sae.journal.models import Event, TreeHead

KEY_PINNED = "journal.key_pinned"
KEY_ROTATED = "journal.key_rotated"
KEY_EVENTS = (KEY_PINNED, KEY_ROTATED)


@lru_cache(maxsize=64)
def fingerprint(public_pem: bytes) -> str:
    """SHA-256 (hex) of the SubjectPublicKeyInfo DER of a PEM public key ('' if unreadable)."""
    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, UnsupportedAlgorithm):
        return ""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def rotation_message(new_fingerprint: str) -> bytes:
    """What the previous key signs to vouch for its successor: the new fingerprint's hex."""
    return new_fingerprint.encode("ascii")


@dataclass(frozen=True)
class KeyEntry:
    """A key in force for the heads of size > ``since`` (until the next entry)."""

    since: int
    """-1 for the first key; a rotation leaf's index otherwise."""
    fingerprint: str
    public_pem: bytes | None
    """Known when the journal holds it (a pin or rotation leaf, a head); None otherwise."""
    lost: bool = False


@dataclass
class KeyHistory:
    """The keys in force, in order, and what is wrong with the history itself."""

    entries: list[KeyEntry] = field(default_factory=list)
    problems: list[tuple[int | None, str]] = field(default_factory=list)

    def key_for(self, size: int) -> KeyEntry | None:
        """The key that must have signed a head of ``size`` leaves (None: no key known)."""
        position = bisect_left([e.since for e in self.entries], size) - 1
        return self.entries[position] if position >= 0 else None

    @property
    def current(self) -> KeyEntry | None:
        """The key in force now (the last one)."""
        return self.entries[-1] if self.entries else None

    def spans(self) -> tuple[tuple[int, str], ...]:
        """``(since, fingerprint)`` pairs, picklable for the verification's worker processes."""
        return tuple((e.since, e.fingerprint) for e in self.entries)

    def start(self, fpr: str, public_pem: bytes | None) -> None:
        """Set the first key (when the history is still empty)."""
        if not self.entries:
            self.entries.append(KeyEntry(-1, fpr, public_pem))

    def apply(self, leaf_index: int, type_: str, payload: Mapping[str, Any]) -> str | None:
        """Take a key leaf into account; why it is not acceptable, or None."""
        problem = self._apply(leaf_index, type_, payload)
        if problem is not None:
            self.problems.append((leaf_index, problem))
        return problem

    def _apply(self, leaf_index: int, type_: str, payload: Mapping[str, Any]) -> str | None:
        pem_text = payload.get("public_key_pem")
        fpr = payload.get("fingerprint")
        if not isinstance(pem_text, str) or not isinstance(fpr, str):
            return f"key leaf {leaf_index}: no public_key_pem or fingerprint"
        pem = pem_text.encode("ascii", "replace")
        if fingerprint(pem) != fpr:
            return f"key leaf {leaf_index}: the fingerprint is not the public key's"
        in_force = self.key_for(leaf_index + 1)
        if type_ == KEY_PINNED:
            if in_force is None:
                self.entries.append(KeyEntry(-1, fpr, pem))
                return None
            if in_force.fingerprint != fpr:
                return (
                    f"key leaf {leaf_index}: pins key {fpr[:16]}… but the key in force is "
                    f"{in_force.fingerprint[:16]}…"
                )
            if in_force.public_pem is None:
                self.entries[self.entries.index(in_force)] = KeyEntry(
                    in_force.since, fpr, pem, in_force.lost
                )
            return None
        # A rotation.
        self.entries.append(KeyEntry(leaf_index, fpr, pem, bool(payload.get("lost"))))
        old = payload.get("old_fingerprint")
        if in_force is None:
            return f"key leaf {leaf_index}: a rotation with no key in force before it"
        if old != in_force.fingerprint:
            return (
                f"key leaf {leaf_index}: rotates from key {str(old)[:16]}… but the key in force "
                f"is {in_force.fingerprint[:16]}…"
            )
        if payload.get("lost") is True and payload.get("old_key_signature") is None:
            return None  # recorded as not vouched for by the old key: reported, not refused
        signature = payload.get("old_key_signature")
        if not isinstance(signature, str):
            return f"key leaf {leaf_index}: a rotation neither signed by the old key nor lost"
        if in_force.public_pem is None:
            return f"key leaf {leaf_index}: the previous key is unknown, its signature uncheckable"
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return f"key leaf {leaf_index}: old_key_signature is not base64"
        if not verify_signature(in_force.public_pem, rotation_message(fpr), raw):
            return f"key leaf {leaf_index}: the old key's signature of the new key does not verify"
        return None

    @property
    def lost_rotations(self) -> list[KeyEntry]:
        """Key changes the previous key did not vouch for (``--lost``)."""
        return [e for e in self.entries if e.lost]


def history_of(session: Session, pinned: str | None = None) -> KeyHistory:
    """The key history the journal in ``session`` records (``pinned``: the configured first key).

    Reads the key leaves' columns: ``sae journal verify`` checks those rows' leaf bytes like
    every other, so what is read here is what the signed roots cover.
    """
    history = KeyHistory()
    first = session.execute(
        select(TreeHead.public_key_pem).order_by(TreeHead.tree_size).limit(1)
    ).scalar()
    rows = session.execute(
        select(Event.leaf_index, Event.type, Event.payload)
        .where(Event.type.in_(KEY_EVENTS))
        .order_by(Event.leaf_index)
    ).all()
    if pinned is not None:
        pem = None
        if first is not None and fingerprint(bytes(first)) == pinned:
            pem = bytes(first)
        for _index, type_, payload in rows:
            if type_ == KEY_PINNED and payload.get("fingerprint") == pinned:
                pem = str(payload.get("public_key_pem", "")).encode("ascii", "replace")
                break
        history.start(pinned, pem)
    elif not any(t == KEY_PINNED for _i, t, _p in rows[:1]) and first is not None:
        # A journal older than pinning (or whose first key leaf is a rotation): its first head.
        history.start(fingerprint(bytes(first)), bytes(first))
    for index, type_, payload in rows:
        history.apply(index, type_, payload)
    return history


def expected_fingerprint(session: Session, *, heads: bool = True) -> str | None:
    """The fingerprint of the key that must sign the next head, as the journal says; None on a
    first start (no key leaf, no head). Two indexed reads: cheap enough for every start."""
    payload = session.execute(
        select(Event.payload)
        .where(Event.type.in_(KEY_EVENTS))
        .order_by(Event.leaf_index.desc())
        .limit(1)
    ).scalar()
    if payload is not None and isinstance(payload.get("fingerprint"), str):
        return str(payload["fingerprint"])
    if not heads:
        return None
    last = session.execute(
        select(TreeHead.public_key_pem).order_by(TreeHead.tree_size.desc()).limit(1)
    ).scalar()
    return fingerprint(bytes(last)) if last is not None else None
