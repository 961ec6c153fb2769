"""The journal's tables: events (the leaves), stored subtree hashes, counters, signed heads.

- ``events``: one row per fact; ``leaf`` is the exact leaf bytes, re-derivable from the other
  columns (``sae journal verify`` re-derives and compares).
- ``journal_nodes``: the hash of every aligned perfect subtree of size ``2**level`` (level >= 1;
  level 0 is ``events.leaf_hash``), written as leaves are appended, so that roots and proofs cost
  O(log n) reads.
- ``journal_state``: named counters. ``tree_size`` is the next leaf index: appenders increment it
  first, which takes a row lock (PostgreSQL) or the write lock (SQLite) until their commit, so
  the sequence has no gap and no duplicate across processes. ``sealer`` is locked (``SKIP
  LOCKED``) by whoever seals a head, so one instance seals at a time.
- ``tree_heads``: signed, time-stamped checkpoints; each also as a C2SP ``tlog-checkpoint``
  signed note (``note``), what witnesses co-sign.
- ``head_cosignatures``: the witnesses' ``cosignature/v1`` lines over a head's note, each
  verified against the witness's vkey before being stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow

TREE_SIZE = "tree_size"
SEALER = "sealer"


class Event(Base):
    """A journaled fact: who did what, when, on what. ``leaf`` is the exact leaf bytes."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    leaf_index: Mapped[int] = mapped_column(unique=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(255))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    transfer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    unit_id: Mapped[str | None] = mapped_column(String(36), index=True)
    object_id: Mapped[str | None] = mapped_column(String(36), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # SHA-512 (hex) of every object the fact concerns, by object id; part of the leaf.
    digests: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class JournalNode(Base):
    """Hash of the aligned perfect subtree over leaves ``[index << level, (index+1) << level)``."""

    __tablename__ = "journal_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class JournalState(Base):
    """A named counter of the journal (``tree_size``, ``sealer``)."""

    __tablename__ = "journal_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class TreeHead(Base):
    """A sealed tree head: the checkpoint bytes, SAE's signature, the TSA's token."""

    __tablename__ = "tree_heads"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, unique=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    origin: Mapped[str] = mapped_column(String(255))
    timestamp: Mapped[datetime] = mapped_column(index=True)
    checkpoint: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    public_key_pem: Mapped[bytes] = mapped_column(LargeBinary)
    tsr: Mapped[bytes] = mapped_column(LargeBinary)
    tsa_chain_pem: Mapped[bytes] = mapped_column(LargeBinary)
    tsa_time: Mapped[datetime] = mapped_column()
    #: The head as a C2SP tlog-checkpoint note signed with the archive's Ed25519 note key
    #: (None for heads sealed before notes existed).
    note: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class HeadCosignature(Base):
    """A witness's ``cosignature/v1`` over the note of the head sealed at ``tree_size``."""

    __tablename__ = "head_cosignatures"
    __table_args__ = (UniqueConstraint("tree_size", "witness"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    witness: Mapped[str] = mapped_column(String(255), index=True)
    key_id: Mapped[str] = mapped_column(String(8))
    #: The witness's clock (seconds since the epoch), as signed in the cosignature.
    cosigned_at: Mapped[int] = mapped_column(BigInteger)
    #: The exact signature line (``— <name> <base64>``), as the note carries it.
    line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
