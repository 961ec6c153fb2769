"""Pastell's mailbox: the transfers its connectors sent (with their ACK and ATR) and the
chunked uploads under way. A connector's account is a service account of ``sae.auth.accounts``
(``users``: role depositor, its producers, argon2id of the secret Pastell sends)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow


class PastellMessage(Base):
    """One transfer sent by Pastell, keyed as Pastell asks for its replies: (account,
    transferring agency, transfer identifier).

    ``status``: ``chunking`` (a chunked upload is under way), ``received`` (the whole upload is
    on disk: waiting for the worker, also after a crash), ``processing`` (claimed by a worker at
    ``claimed_at``), ``done`` (``atr`` is final), ``lost`` (rebuilt from the journal without
    what it takes to answer it: no ATR, see :mod:`sae.pastell.replay`). ``attachments`` is the
    name of the upload's file in ``$SAE_DATA_DIR/pastell`` (chosen by SAE, never by the
    client); the bordereau is beside it (``<name>.bordereau``) until the ATR is written, so that
    a rebuild finds it. A rebuilt message's ``bordereau`` is empty until the worker reads it
    back from that file.
    """

    __tablename__ = "pastell_messages"
    __table_args__ = (UniqueConstraint("account_id", "agency", "transfer_identifier"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The service account (``users.id``) that sent it: the only one that may read its replies.
    #: None after a rebuild until the account is created again with the same ``login``
    #: (accounts are not rebuilt: :mod:`sae.pastell.replay`); its creation binds the message.
    account_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    #: The login of the account that sent it (what binds it to the account created again).
    login: Mapped[str] = mapped_column(String(255))
    #: The id of the account that sent it, kept when the account is created again: the
    #: journal's actor and ``transfers.submitted_by`` of its ingest name it.
    sender_id: Mapped[str] = mapped_column(String(36))
    #: The bordereau's archival agency (the ACK's and ATR's sender).
    archival_agency: Mapped[str | None] = mapped_column(String(255))
    agency: Mapped[str] = mapped_column(String(255))
    transfer_identifier: Mapped[str] = mapped_column(String(255))
    seda_version: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), index=True)
    bordereau: Mapped[bytes] = mapped_column(LargeBinary)
    bordereau_sha256: Mapped[str] = mapped_column(String(64))
    attachments: Mapped[str | None] = mapped_column(String(80))
    attachments_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    completed_at: Mapped[datetime | None]
    transfer_id: Mapped[str | None] = mapped_column(String(36))
    ack: Mapped[bytes | None] = mapped_column(LargeBinary)
    atr: Mapped[bytes | None] = mapped_column(LargeBinary)


class PastellChunkSession(Base):
    """A chunked upload: bound to its account and message; ``id`` is the session identifier
    (random, 192 bits) and ``security_hash`` the SHA-256 of the security identifier (random,
    192 bits: a secret, not stored as sent). ``next_index`` is the 1-based index expected next;
    ``received_bytes`` the length already appended."""

    __tablename__ = "pastell_chunk_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    security_hash: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    number_of_chunks: Mapped[int | None]
    next_index: Mapped[int] = mapped_column(Integer, default=1)
    received_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
