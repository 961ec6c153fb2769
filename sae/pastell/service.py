"""Pastell's as@lae connector, translated to SAE's own ingest (docs/pastell.md).

A transfer goes through three steps:

1. **Receipt** (:func:`receive`, :func:`open_chunked`, :func:`receive_chunk`): the bordereau is
   read only for its version, transferring agency and identifier; the attachments are written
   to ``$SAE_DATA_DIR/pastell/<random>.upload`` (a name SAE chooses), the bordereau beside it
   (``<random>.bordereau``), both synced; then the transfer is recorded (``pastell_messages``,
   status ``received``, its ACK written) and journaled (``pastell.received``, with the ACK) in
   one commit, and that leaf put on the offers (a tail) — only then does Pastell get its 200:
   a rebuild brings the message back (:mod:`sae.pastell.replay`). The
   same (agency, identifier) sent again by the same account is answered the same way and
   nothing is stored twice; after a refusal it starts a new attempt.
2. **Ingest** (:func:`process`, run by :class:`sae.pastell.worker.PastellWorker`): the
   bordereau and attachments become a SIP zip (``manifest.xml`` in SEDA 2.x: unchanged for
   2.x, read from 1.0 for 1.0) and go through the same domain function as ``POST
   /api/v1/transfers`` (``sae.ingest.deposit.ingest_and_commit``: validation, antivirus,
   storage, journal, contracts). A message is claimed by an atomic update; one left
   ``processing`` by a process that died is claimed again after ``RECLAIM_AFTER``, and its
   ingest, if it had committed, is found and not done twice.
3. **Replies** (:func:`reply`): the ACK and the ATR, in the transfer's SEDA version, shaped as
   Pastell checks them (``ReplyCode`` ``000`` when accepted; in 2.x one top-level
   ``ArchiveUnit`` per root unit with ``ArchivalAgencyArchiveUnitIdentifier``), only to the
   account that sent the transfer. Each ATR is journaled as written (``pastell.accepted`` or
   ``pastell.rejected``), so that a rebuild answers the same bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import seda
from sae.auth import accounts, signin
from sae.auth.errors import InvalidCredentials
from sae.auth.models import User
from sae.auth.service import SYSTEM, Principal
from sae.catalog.models import ArchiveUnit
from sae.config import Settings
from sae.db import new_id, transaction, utcnow
from sae.errors import SAEError
from sae.ingest.deposit import ingest_and_commit
from sae.ingest.errors import Refusal
from sae.ingest.models import Transfer
from sae.journal.service import append_event
from sae.pastell.errors import (
    PastellBadMessage,
    PastellChunkRefused,
    PastellNotFound,
    PastellNotReady,
    PastellTooLarge,
    PastellUnauthorized,
)
from sae.pastell.models import PastellChunkSession, PastellMessage
from sae.runtime import Runtime

log = logging.getLogger("sae.pastell")

#: A message left ``processing`` this long is claimed again (its process died).
RECLAIM_AFTER = timedelta(minutes=30)
#: SEDA 1.0 access codes (``seda_v1-0_accessrestriction_code.xsd``, AR038…AR062) and the rule of
#: SAE's shipped access referential (``retention_rules/access-delays.yaml``, loaded by ``sae
#: retention import-shipped``) with the same duration, start and legal basis. The code list
#: cites Code du patrimoine L213-2 as of 2008; the shipped rules cite it as of loi 2021-998, so
#: a code matches the rule of the paragraph that now holds its category (AR059: the
#: defence-secret documents endangering named persons are in I 5° since 2008, not in I 3° as the
#: code list says). The durations "25 ans après le décès si ce délai est plus court" (AR044…047)
#: are the rule counted from the death: an archivist who knows no death date sends the 75-year
#: code (AR054…057) instead, as SEDA 1.0 intends.
ACCESS_CODES_10 = {
    "AR038": "ACC-00001",  # 0 an, L213-1
    "AR039": "ACC-L213-2-I1A",  # 25 ans, I 1° a: délibérations, monnaie, secret des affaires
    "AR040": "ACC-L213-2-I1B",  # 25 ans, I 1° b: CRPA L311-5 1°
    "AR041": "ACC-L213-2-I1A",  # 25 ans, I 1° a: secret statistique
    "AR043": "ACC-MEDICAL-DECES",  # 25 ans après le décès, I 2°: secret médical
    "AR044": "ACC-L213-2-I4-DECES",  # 25 ans après le décès, I 4° e: naissances, mariages
    "AR045": "ACC-L213-2-I4-DECES",  # 25 ans après le décès, I 4° d: minutes des notaires
    "AR046": "ACC-L213-2-I4-DECES",  # 25 ans après le décès, I 4° b: police judiciaire
    "AR047": "ACC-L213-2-I4-DECES",  # 25 ans après le décès, I 4° c: juridictions
    "AR048": "ACC-L213-2-I3",  # 50 ans, I 3°: vie privée, jugement de valeur
    "AR049": "ACC-L213-2-I3",  # 50 ans, I 3°: défense nationale, sûreté de l'État
    "AR050": "ACC-L213-2-I3",  # 50 ans, I 3°: bâtiments pénitentiaires
    "AR052": "ACC-L213-2-I4",  # 75 ans, I 4° a: questionnaires statistiques, vie privée
    "AR054": "ACC-EC-NAISSANCE-MARIAGE",  # 75 ans depuis la clôture, I 4° e: état civil
    "AR055": "ACC-L213-2-I4",  # 75 ans, I 4° d: minutes des officiers publics
    "AR056": "ACC-L213-2-I4",  # 75 ans, I 4° b: police judiciaire
    "AR057": "ACC-L213-2-I4",  # 75 ans, I 4° c: juridictions
    "AR058": "ACC-L213-2-I5",  # 100 ans, I 5°: mineurs
    "AR059": "ACC-L213-2-I5",  # 100 ans, I 5° (I 3° in the code list): défense, personnes
    "AR060": "ACC-L213-2-I5",  # 100 ans, I 5°: intimité de la vie sexuelle
    "AR061": "ACC-MEDICAL-NAISSANCE",  # 120 ans après la naissance, I 2°: secret médical
    "AR062": "ACC-L213-2-II",  # illimitée, II: armes de destruction massive
}
#: SEDA 1.0 codes no rule of the referential matches: the documents "élaborés dans le cadre
#: d'un contrat de prestation de services" (L213-2 I 1° c as of 2008) with their own 25, 50 and
#: 75 years. Loi 2021-998 has no such paragraph any more (such documents take the delay of
#: their content) and the shipped referential no such rule. Mapping them to the rule of the same
#: duration would cite a legal basis the bordereau does not, and dropping the code would make
#: the documents communicable at once: the transfer is refused instead, with a fault naming
#: the code (``pastell.access_code_unmapped``), so the commune sends the code of the content's
#: category (AR048…AR057).
UNMAPPED_ACCESS_CODES_10 = {
    "AR042": "25 ans, contrat de prestation de services (L213-2 I 1° c, rédaction de 2008)",
    "AR051": "50 ans, contrat de prestation de services (L213-2 I 1° c, rédaction de 2008)",
    "AR053": "75 ans, contrat de prestation de services (L213-2 I 1° b/c, rédaction de 2008)",
}
_COPY = 1024 * 1024


# --- accounts ------------------------------------------------------------------------------


def pastell_secret(password: str) -> str:
    """What Pastell sends as the password: the lowercase hex SHA-256 of the configured one."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def create_account(
    session: Session,
    *,
    login: str,
    producers: list[str],
    password: str | None = None,
    label: str = "",
    actor: Principal = SYSTEM,
) -> tuple[User, str]:
    """A Pastell account: a service account of role depositor for ``producers``, whose stored
    secret is argon2id of what the connector sends (:func:`pastell_secret` of the password).
    Returns it and the password to type in Pastell's connector: ``password`` when given, else
    a random one (shown once). Journaled by ``sae.auth.accounts`` (``auth.user_created``)."""
    if not producers:
        raise PastellBadMessage("a Pastell account deposits for at least one producer")
    password = password or secrets.token_urlsafe(24)
    user = accounts.create_user(
        session,
        login=login,
        role="depositor",
        producers=producers,
        kind="service",
        password=pastell_secret(password),
        display_name=label or f"Pastell {login}",
        actor=actor,
    )
    # After a rebuild the account is created again (accounts are not rebuilt): the messages
    # its login sent before the loss, rebuilt from the journal, are its own again, so Pastell's
    # ACK/ATR lookups answer as before (sae.pastell.replay).
    session.flush()
    session.execute(
        update(PastellMessage)
        .where(PastellMessage.login == login, PastellMessage.account_id.is_(None))
        .values(account_id=user.id)
    )
    return user, password


def principal_of(account: User) -> Principal:
    """The depositor a Pastell account acts as. A Pastell call has no token: the account's id
    stands for one (``transfers.submitted_by``, the journal's actor)."""
    return Principal(
        token_id=account.id,
        role=account.role,
        producers=tuple(account.producers),
        label=f"pastell:{account.login}",
        user_id=account.id,
        login=account.login,
    )


def authenticate(
    session: Session, login: str, secret: str, *, recent: accounts.VerifiedSecrets | None = None
) -> tuple[User, Principal]:
    """The Pastell account whose login and secret (the hex SHA-256 Pastell sends) match: an
    enabled local service account of role depositor (a person's account never signs in with
    Pastell's unsalted scheme). ``recent``: the process's recently verified secrets (Pastell
    sends its credentials with every call, each chunk included)."""
    try:
        user = accounts.verify_password(session, login, secret, recent=recent)
    except InvalidCredentials:
        raise PastellUnauthorized("unknown login or wrong password") from None
    if user.kind != "service" or user.role != "depositor":
        raise PastellUnauthorized("this account is not a Pastell (service, depositor) account")
    return user, principal_of(user)


def sign_in(
    sessions: sessionmaker[Session],
    login: str,
    secret: str,
    *,
    address: str,
    limits: signin.Limits,
    recent: accounts.VerifiedSecrets | None = None,
) -> User:
    """:func:`authenticate` under the console's limit of refused sign-ins per login and per
    address (``sign_in_failures``, in the database: it holds across workers and restarts),
    so Basic auth offers no faster way to guess an account's secret than the sign-in page.
    Raises :class:`PastellUnauthorized` (the refusal counted) or
    :class:`sae.auth.errors.TooManyAttempts` (429, ``Retry-After``)."""
    now = utcnow()
    with sessions() as session:
        signin.check_rate(session, login=login, address=address, limits=limits, now=now)
    try:
        with sessions() as session:
            account, _principal = authenticate(session, login, secret, recent=recent)
            session.expunge(account)
            return account
    except PastellUnauthorized:
        with transaction(sessions) as session:
            signin.record_failure(session, login=login, address=address, limits=limits, now=now)
        raise


# --- receipt -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What receipt reads of a bordereau: its version, transferring agency and identifier,
    as raw text (Pastell builds its ACK/ATR URLs from the same raw text)."""

    version: str
    agency: str
    identifier: str


def read_header(bordereau: bytes, max_bytes: int) -> Header:
    """The header of a SEDA 1.0/2.x ArchiveTransfer, or ``PastellBadMessage``."""
    try:
        root = seda.safe_parse(bordereau, max_bytes=max_bytes)
    except seda.SedaError as error:
        raise PastellBadMessage(f"the bordereau is not XML: {error.faults[0].message}") from None
    namespace = root.nsmap.get(root.prefix) or ""
    if namespace == seda.SEDA10_NAMESPACE:
        version, ident, agency_id = "1.0", "TransferIdentifier", "Identification"
    else:
        parsed = seda.version_from_namespace(namespace)
        if parsed is None:
            raise PastellBadMessage(f"the bordereau is not SEDA 1.0, 2.1 or 2.2 ({namespace!r})")
        version, ident, agency_id = parsed.value, "MessageIdentifier", "Identifier"
    ns = "{" + namespace + "}"
    if root.tag != ns + "ArchiveTransfer":
        raise PastellBadMessage("the bordereau is not an ArchiveTransfer")
    identifier = root.findtext(ns + ident)
    agency = root.findtext(f"{ns}TransferringAgency/{ns}{agency_id}")
    if not identifier or not agency or len(identifier) > 255 or len(agency) > 255:
        raise PastellBadMessage(f"the bordereau has no {ident} or no transferring agency")
    return Header(version=version, agency=agency, identifier=identifier)


def uploads_dir(runtime: Runtime) -> Path:
    """Where uploads wait for their ingest (``$SAE_DATA_DIR/pastell``)."""
    path = runtime.settings.data_dir / "pastell"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _new_upload(runtime: Runtime) -> tuple[str, Path]:
    name = f"{uuid.uuid4().hex}.upload"
    return name, uploads_dir(runtime) / name


def bordereau_path(upload: Path) -> Path:
    """Where an upload's bordereau waits with it (``<hex>.bordereau``): the database holds it
    too, but a rebuild finds only the files (the journal carries its digest, not its text)."""
    return upload.with_suffix(".bordereau")


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_upload(source: IO[bytes], target: Path, limit: int) -> int:
    size = 0
    with target.open("xb") as out:
        while block := source.read(_COPY):
            size += len(block)
            if size > limit:
                raise PastellTooLarge(f"the attachments exceed the limit of {limit} bytes")
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    _sync_dir(target.parent)
    return size


@dataclass(frozen=True)
class Received:
    """The answer to a ``POST /sedaMessages``."""

    message_id: str
    status: str
    identifier: str
    chunk_session: str | None = None
    chunk_security: str | None = None


def _existing(session: Session, account_id: str, header: Header) -> PastellMessage | None:
    return session.scalar(
        select(PastellMessage).where(
            PastellMessage.account_id == account_id,
            PastellMessage.agency == header.agency,
            PastellMessage.transfer_identifier == header.identifier,
        )
    )


def _accepted(session: Session, message: PastellMessage) -> bool:
    if message.transfer_id is None:
        return False
    return session.scalar(select(Transfer.status).where(Transfer.id == message.transfer_id)) == "OK"


def _ack(message: PastellMessage, archival_agency: str) -> bytes:
    """The message's Acknowledgement, in its SEDA version (its id is filename-safe)."""
    now = utcnow()
    identifier = f"ACK-{message.id}"
    comment = "Transfert reçu par le SAE ; il sera traité sous peu."
    if message.seda_version == "1.0":
        return seda.write_acknowledgement_v10(
            identifier=identifier,
            date=now,
            received_identifier=message.transfer_identifier,
            receiver=message.agency,
            sender=archival_agency,
            comments=[comment],
        )
    return seda.write_acknowledgement(
        seda.Acknowledgement(
            version=seda.SedaVersion(message.seda_version),
            message_identifier=identifier,
            date=now,
            message_received_identifier=message.transfer_identifier,
            sender_identifier=archival_agency,
            receiver_identifier=message.agency,
            comments=[comment],
        )
    )


def _archival_agency(bordereau: bytes, version: str) -> str:
    root = seda.safe_parse(bordereau)
    ns = "{" + (root.nsmap.get(root.prefix) or "") + "}"
    name = "Identification" if version == "1.0" else "Identifier"
    return root.findtext(f"{ns}ArchivalAgency/{ns}{name}") or "SAE"


def _remove_upload(runtime: Runtime, name: str | None) -> None:
    if name:
        path = uploads_dir(runtime) / name
        path.unlink(missing_ok=True)
        bordereau_path(path).unlink(missing_ok=True)


def receive(
    runtime: Runtime,
    account: User,
    bordereau: bytes,
    attachments: IO[bytes] | None,
    *,
    chunked: bool,
) -> Received:
    """Record a transfer sent in one go (``attachments``), or open a chunked upload."""
    settings = runtime.settings
    header = read_header(bordereau, settings.max_manifest_bytes)
    if not chunked and attachments is None:
        raise PastellBadMessage("send the archive as the 'attachments' part")
    with runtime.sessions() as session:
        existing = _existing(session, account.id, header)
        if existing is not None and existing.status in ("received", "processing", "done"):
            if existing.status != "done" or _accepted(session, existing):
                # The same transfer sent again (Pastell's "Verser au SAE" clicked twice, a
                # retried job): the same answer, nothing stored twice. Sent in chunks, it gets
                # a session whose chunks are checked and answered as usual, then dropped.
                if chunked:
                    again = _open_session(session, settings, account, existing)
                    session.commit()
                    return Received(existing.id, existing.status, header.identifier, *again)
                return Received(existing.id, existing.status, header.identifier)
    upload_name, upload_path = _new_upload(runtime)
    size = 0
    end = 0
    try:
        _write_synced(bordereau_path(upload_path), bordereau)
        if attachments is not None and not chunked:
            size = _copy_upload(attachments, upload_path, settings.max_sip_bytes)
        else:
            upload_path.touch(mode=0o600, exist_ok=False)
            _sync_dir(upload_path.parent)
        with runtime.sessions() as session:
            message = _existing(session, account.id, header)
            old_upload = None
            if message is None:
                message = PastellMessage(
                    id=new_id(),
                    account_id=account.id,
                    agency=header.agency,
                    transfer_identifier=header.identifier,
                    received_at=utcnow(),
                )
                session.add(message)
            elif message.status in ("received", "processing") or (
                message.status == "done" and _accepted(session, message)
            ):
                upload_path.unlink(missing_ok=True)
                bordereau_path(upload_path).unlink(missing_ok=True)
                return Received(message.id, message.status, header.identifier)
            else:  # a new attempt after a refusal, or a chunked upload started again
                old_upload = message.attachments
                session.execute(
                    delete(PastellChunkSession).where(PastellChunkSession.message_id == message.id)
                )
                message.transfer_id = None
                message.atr = None
                message.completed_at = None
                message.claimed_at = None
                message.attempts = 0
                message.received_at = utcnow()
            message.login = account.login
            message.sender_id = account.id
            message.seda_version = header.version
            message.archival_agency = _archival_agency(bordereau, header.version)
            message.bordereau = bordereau
            message.bordereau_sha256 = hashlib.sha256(bordereau).hexdigest()
            message.attachments = upload_name
            message.attachments_bytes = size
            session_id: str | None = None
            security: str | None = None
            if chunked:
                message.status = "chunking"
                message.ack = None
                session_id, security = _open_session(session, settings, account, message)
            else:
                message.status = "received"
                message.ack = _ack(message, message.archival_agency)
                end = _journal_received(session, account, message)
            try:
                session.commit()
            except IntegrityError:
                # The same transfer sent twice at once: the other request recorded it first.
                session.rollback()
                upload_path.unlink(missing_ok=True)
                bordereau_path(upload_path).unlink(missing_ok=True)
                raise PastellBadMessage(
                    f"the transfer {header.identifier!r} is being received by another request"
                ) from None
            status = message.status
            message_id = message.id
    except BaseException:
        upload_path.unlink(missing_ok=True)
        bordereau_path(upload_path).unlink(missing_ok=True)
        raise
    _remove_upload(runtime, old_upload)
    if end:
        secure_leaves(runtime, end)
    return Received(message_id, status, header.identifier, session_id, security)


def _open_session(
    session: Session, settings: Settings, account: User, message: PastellMessage
) -> tuple[str, str]:
    """A chunk session for ``message``: its identifier and security identifier (random, 192
    bits each; only the security one's SHA-256 is stored)."""
    session_id = secrets.token_urlsafe(24)
    security = secrets.token_urlsafe(24)
    session.add(
        PastellChunkSession(
            id=session_id,
            security_hash=hashlib.sha256(security.encode()).hexdigest(),
            account_id=account.id,
            message_id=message.id,
            expires_at=utcnow() + timedelta(seconds=settings.pastell_chunk_idle_seconds),
        )
    )
    return session_id, security


def _journal_received(session: Session, account: User, message: PastellMessage) -> int:
    """Journal the receipt with what rebuilds the message (:mod:`sae.pastell.replay`): its
    keys, the upload's name (its file, and the bordereau's beside it, are in the data
    directory until the ATR is written) and the ACK as sent. The tree size after it."""
    assert message.ack is not None
    event = append_event(
        session,
        type="pastell.received",
        actor=principal_of(account).actor,
        payload={
            "message_id": message.id,
            "account_id": account.id,
            "login": account.login,
            "agency": message.agency,
            "archival_agency": message.archival_agency,
            "transfer_identifier": message.transfer_identifier,
            "seda_version": message.seda_version,
            "bordereau_sha256": message.bordereau_sha256,
            "attachments": message.attachments,
            "attachments_bytes": message.attachments_bytes,
            "received_at": message.received_at.isoformat(),
            "ack": base64.b64encode(message.ack).decode("ascii"),
        },
    )
    return event.leaf_index + 1


def secure_leaves(runtime: Runtime, end: int) -> None:
    """Put the journal's leaves ``[0, end)`` on the offers (a tail, as a deposit does before
    its 201) before Pastell gets its 200: a receipt or an ATR Pastell was told of comes back
    with a rebuild. An offer that refuses the tail is logged, not answered: the message is
    recorded, its leaves go with the next segment, and a non-200 would only make Pastell send
    again what SAE holds."""
    from sae.ingest.deposit import tail_writer
    from sae.journal.tails import TailNotWritten

    try:
        tail_writer(runtime).cover(end)
    except TailNotWritten as exc:
        log.warning("pastell.journal_not_on_offers end=%d: %s", end, exc)


@dataclass(frozen=True)
class Chunk:
    """The text fields of a ``POST /sedaAttachmentsChunkFiles``."""

    session_identifier: str
    security_identifier: str
    number_of_chunks: int
    chunk_index: int


def receive_chunk(runtime: Runtime, account: User, chunk: Chunk, data: IO[bytes]) -> bool:
    """Append one chunk of a chunked upload; True when it was the last one.

    Refused (``PastellChunkRefused``, nothing appended): an unknown session, a session of
    another account, a wrong security identifier, an expired session, an index other than the
    next one, a changed chunk count, a count or size past the caps. ``file_name`` is never
    used: the upload's file is the one SAE named when the session was opened.
    """
    settings = runtime.settings
    end = 0
    with runtime.sessions() as session:
        chunks = session.get(PastellChunkSession, chunk.session_identifier, with_for_update=True)
        given = hashlib.sha256(chunk.security_identifier.encode()).hexdigest()
        if (
            chunks is None
            or chunks.account_id != account.id
            or not hmac.compare_digest(chunks.security_hash, given)
        ):
            raise PastellChunkRefused("unknown chunk session (or wrong security identifier)")
        if chunks.expires_at < utcnow():
            raise PastellChunkRefused("this chunk session has expired; send the transfer again")
        if not 1 <= chunk.number_of_chunks <= settings.pastell_chunk_max_count:
            raise PastellChunkRefused(
                f"number_of_chunks must be 1 to {settings.pastell_chunk_max_count}"
            )
        if chunks.number_of_chunks not in (None, chunk.number_of_chunks):
            raise PastellChunkRefused("number_of_chunks changed during the upload")
        if chunk.chunk_index != chunks.next_index:
            raise PastellChunkRefused(
                f"chunk {chunk.chunk_index} received, chunk {chunks.next_index} expected"
            )
        message = session.get(PastellMessage, chunks.message_id)
        if message is None or (message.status == "chunking" and message.attachments is None):
            raise PastellChunkRefused("this chunk session is closed")
        limit = min(
            settings.pastell_chunk_max_bytes, settings.max_sip_bytes - chunks.received_bytes
        )
        too_large = PastellChunkRefused(
            f"chunk larger than {settings.pastell_chunk_max_bytes} bytes, or the "
            f"upload larger than {settings.max_sip_bytes}"
        )
        written = 0
        if message.status != "chunking":  # a transfer received already, sent again: dropped
            while block := data.read(_COPY):
                written += len(block)
                if written > limit:
                    raise too_large
        else:
            path = uploads_dir(runtime) / str(message.attachments)
            with path.open("r+b") as out:
                out.seek(chunks.received_bytes)
                out.truncate()  # what a failed earlier attempt at this chunk may have left
                while block := data.read(_COPY):
                    written += len(block)
                    if written > limit:
                        out.truncate(chunks.received_bytes)
                        raise too_large
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        chunks.number_of_chunks = chunk.number_of_chunks
        chunks.next_index += 1
        chunks.received_bytes += written
        chunks.expires_at = utcnow() + timedelta(seconds=settings.pastell_chunk_idle_seconds)
        last = chunk.chunk_index == chunk.number_of_chunks
        if last and message.status != "chunking":
            session.delete(chunks)
        elif last:
            message.status = "received"
            message.attachments_bytes = chunks.received_bytes
            message.received_at = utcnow()
            message.ack = _ack(
                message,
                message.archival_agency
                or _archival_agency(message.bordereau, message.seda_version),
            )
            session.delete(chunks)
            end = _journal_received(session, account, message)
        session.commit()
    if end:
        secure_leaves(runtime, end)
    return last


# --- replies -------------------------------------------------------------------------------


def reply(runtime: Runtime, account: User, kind: str, agency: str, identifier: str) -> bytes:
    """The ACK (``Acknowledgement``) or ATR (``ArchiveTransferReply``) of the account's
    transfer (agency, identifier): ``PastellNotFound`` for a transfer of another account or
    none, ``PastellNotReady`` while it is not final."""
    with runtime.sessions() as session:
        message = session.scalar(
            select(PastellMessage).where(
                PastellMessage.account_id == account.id,
                PastellMessage.agency == agency,
                PastellMessage.transfer_identifier == identifier,
            )
        )
        if message is None:
            raise PastellNotFound(f"no transfer {identifier!r} from {agency!r} for this account")
        document = message.ack if kind == "Acknowledgement" else message.atr
        if document is None:
            raise PastellNotReady("Transfert en cours de traitement")
        return document


# --- ingest --------------------------------------------------------------------------------


@dataclass
class _Refused(Exception):  # noqa: N818 - control flow inside process()
    faults: list[dict[str, str | None]]


def claim(runtime: Runtime, message_id: str) -> bool:
    """Take the message for processing (atomic: one worker of the installation wins)."""
    now = utcnow()
    with runtime.sessions() as session:
        result = session.execute(
            update(PastellMessage)
            .where(
                PastellMessage.id == message_id,
                PastellMessage.account_id.is_not(None),
                or_(
                    PastellMessage.status == "received",
                    (PastellMessage.status == "processing")
                    & (PastellMessage.claimed_at < now - RECLAIM_AFTER),
                ),
            )
            .values(status="processing", claimed_at=now, attempts=PastellMessage.attempts + 1)
        )
        session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)


def pending(runtime: Runtime) -> list[str]:
    """Messages waiting for their ingest (received, or left processing by a dead process)."""
    with runtime.sessions() as session:
        return list(
            session.scalars(
                select(PastellMessage.id)
                .where(
                    # A rebuilt message waits for its account to be created again.
                    PastellMessage.account_id.is_not(None),
                    or_(
                        PastellMessage.status == "received",
                        (PastellMessage.status == "processing")
                        & (PastellMessage.claimed_at < utcnow() - RECLAIM_AFTER),
                    ),
                )
                .order_by(PastellMessage.received_at)
            )
        )


def expire_chunk_sessions(runtime: Runtime) -> int:
    """Remove expired chunk sessions and their partial uploads; how many."""
    with runtime.sessions() as session:
        expired = list(
            session.scalars(
                select(PastellChunkSession).where(PastellChunkSession.expires_at < utcnow())
            )
        )
        names = []
        for chunks in expired:
            message = session.get(PastellMessage, chunks.message_id)
            if message is not None and message.status == "chunking":
                names.append(message.attachments)
                session.delete(message)
            session.delete(chunks)
        session.commit()
    for name in names:
        _remove_upload(runtime, name)
    return len(expired)


#: An upload no message names (its process died between writing it and recording it) is
#: removed once this old.
ORPHAN_AFTER = timedelta(days=1)


def sweep_orphan_uploads(runtime: Runtime) -> int:
    """Remove uploads (and their bordereaux) no message names, once a day old; how many."""
    folder = uploads_dir(runtime)
    with runtime.sessions() as session:
        named = set(
            session.scalars(
                select(PastellMessage.attachments).where(PastellMessage.attachments.is_not(None))
            )
        )
    cutoff = (utcnow() - ORPHAN_AFTER).timestamp()
    removed = 0
    for path in [*folder.glob("*.upload"), *folder.glob("*.bordereau")]:
        try:
            if path.with_suffix(".upload").name not in named and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _manifest(message: PastellMessage) -> bytes:
    """The SIP's manifest: the 2.x bordereau as sent, or the 1.0 one read into 2.1."""
    if message.seda_version != "1.0":
        return message.bordereau
    try:
        read = seda.read_transfer_v10(message.bordereau)
    except seda.SedaError as error:
        raise _Refused([_fault(f) for f in error.faults]) from None
    transfer = read.transfer
    units = []
    for unit in transfer.package.archive_units:
        rules = dict(unit.management.rules)
        access = rules.get("AccessRule")
        if access is not None:
            _refuse_unmapped(unit.id, access.rules)
            rules["AccessRule"] = type(access)(
                category="AccessRule",
                rules=[
                    type(ref)(
                        rule_id=ACCESS_CODES_10.get(ref.rule_id, ref.rule_id),
                        start_date=ref.start_date,
                    )
                    for ref in access.rules
                ],
            )
        description = unit.description
        duration = read.appraisal_durations.get(unit.id)
        if duration:
            note = f"Durée d'utilité administrative (SEDA 1.0) : {duration}"
            description = f"{description}\n{note}" if description else note
        units.append(
            dataclasses.replace(
                unit, management=type(unit.management)(rules=rules), description=description
            )
        )
    package = dataclasses.replace(transfer.package, archive_units=units)
    return seda.write_archive_transfer(dataclasses.replace(transfer, package=package))


def _refuse_unmapped(where: str, refs: Iterable[seda.RuleRef]) -> None:
    """Refuse a SEDA 1.0 access code no rule of the referential matches (never map it to a
    rule of another legal basis, never drop it: either would be wrong about communicability)."""
    faults: list[dict[str, str | None]] = [
        {
            "code": "pastell.access_code_unmapped",
            "message": (
                f"le code de communicabilité SEDA 1.0 {ref.rule_id} "
                f"({UNMAPPED_ACCESS_CODES_10[ref.rule_id]}) n'a pas de règle équivalente dans "
                "le référentiel : indiquez le code de la catégorie du contenu (AR048 à AR057)"
            ),
            "where": where,
        }
        for ref in refs
        if ref.rule_id in UNMAPPED_ACCESS_CODES_10
    ]
    if faults:
        raise _Refused(faults)


def _fault(fault: seda.Fault) -> dict[str, str | None]:
    return {"code": fault.code, "message": fault.message, "where": fault.where}


def _build_sip(runtime: Runtime, message: PastellMessage, target: Path) -> None:
    """Write the SIP zip: ``manifest.xml`` and every attachment member (stored, streamed)."""
    manifest = _manifest(message)
    source = uploads_dir(runtime) / (message.attachments or "")
    settings = runtime.settings
    limits = seda.AttachmentLimits(
        max_members=settings.max_zip_entries,
        max_total_bytes=settings.max_uncompressed_bytes,
        max_member_bytes=settings.max_uncompressed_bytes,
    )
    try:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as sip:
            sip.writestr("manifest.xml", manifest)
            for name, stream in seda.iter_attachments(source, limits):
                if name == "manifest.xml":
                    raise _Refused(
                        [
                            {
                                "code": "attachments.manifest_name",
                                "message": "a member of the attachments is named manifest.xml",
                                "where": name,
                            }
                        ]
                    )
                with sip.open(zipfile.ZipInfo(name), "w", force_zip64=True) as out:
                    shutil.copyfileobj(stream, out, _COPY)
    except seda.SedaError as error:
        raise _Refused([_fault(f) for f in error.faults]) from None


def _already_ingested(session: Session, message: PastellMessage, account: User) -> str | None:
    """The transfer a previous run of this message committed before its process died."""
    return session.scalar(
        select(Transfer.id).where(
            Transfer.status == "OK",
            Transfer.message_identifier == message.transfer_identifier.strip(),
            Transfer.transferring_agency == message.agency.strip(),
            # The account's id, or the one it had before a rebuild (created again since).
            Transfer.submitted_by.in_((account.id, message.sender_id)),
            Transfer.received_at >= message.received_at - timedelta(minutes=1),
        )
    )


#: The fault of a message rebuilt without its upload (docs/pastell.md): Pastell is told to send
#: the transfer again (a refusal ATR: ``rejet-sae``, from which the same identifier is sent again).
LOST = "pastell.lost_in_rebuild"


def _restore_bordereau(runtime: Runtime, message: PastellMessage) -> bool:
    """A rebuilt message's bordereau, read back from beside its upload (checked against the
    journal's SHA-256) into the row; False when the upload or its bordereau is gone."""
    if message.bordereau:
        return True
    upload = uploads_dir(runtime) / (message.attachments or "-")
    try:
        data = bordereau_path(upload).read_bytes() if upload.is_file() else b""
    except OSError:
        data = b""
    if not data or hashlib.sha256(data).hexdigest() != message.bordereau_sha256:
        return False
    message.bordereau = data
    with transaction(runtime.sessions) as session:
        session.execute(
            update(PastellMessage).where(PastellMessage.id == message.id).values(bordereau=data)
        )
    return True


def process(runtime: Runtime, message_id: str) -> str | None:
    """Ingest one claimed message and write its ATR; the SAE transfer id (None when refused
    before the ingest, or left for a retry because storage failed)."""
    with runtime.sessions() as session:
        message = session.get(PastellMessage, message_id)
        assert message is not None
        account = session.get(User, message.account_id) if message.account_id else None
        session.expunge_all()
    if account is None:  # rebuilt, its account not created again: not claimable (pending())
        _release(runtime, message_id)
        return None
    principal = principal_of(account)
    transfer_id = None
    faults: list[dict[str, str | None]] = []
    with runtime.sessions() as session:
        transfer_id = _already_ingested(session, message, account)
    if not _restore_bordereau(runtime, message):
        # Rebuilt from the journal, its files gone with the database's data directory.
        if transfer_id is not None:
            # Archived before the loss, but its ATR cannot be written again without the
            # bordereau: never a refusal (Pastell would send it again, archived twice).
            log.error("pastell.lost message=%s transfer=%s: no bordereau", message_id, transfer_id)
            _set_status(runtime, message_id, "lost", transfer_id)
            return transfer_id
        faults = [
            {
                "code": LOST,
                "message": (
                    "le transfert a été reçu avant une reconstruction du SAE, mais son archive "
                    "n'a pas été retrouvée : renvoyez-le"
                ),
                "where": None,
            }
        ]
        _finish(runtime, message.id, None, faults, principal)
        return None
    if transfer_id is None:
        sip_path = runtime.settings.data_dir / "tmp" / f"pastell-{message.id}.zip"
        sip_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _build_sip(runtime, message, sip_path)
            outcome = ingest_and_commit(runtime, principal, sip_path)
            if outcome.refusal is Refusal.STORAGE_UNAVAILABLE:
                _release(runtime, message.id)
                return None
            transfer_id = outcome.transfer.id
        except _Refused as refused:
            faults = refused.faults
        except SAEError as error:
            faults = [{"code": error.code, "message": error.detail, "where": None}]
        finally:
            sip_path.unlink(missing_ok=True)
    _finish(runtime, message.id, transfer_id, faults, principal)
    return transfer_id


def refuse(runtime: Runtime, message_id: str, faults: list[dict[str, str | None]]) -> None:
    """Close a message with a refusal ATR carrying ``faults`` (nothing was ingested)."""
    with runtime.sessions() as session:
        message = session.get(PastellMessage, message_id)
        assert message is not None
        account = session.get(User, message.account_id) if message.account_id else None
        assert account is not None
        principal = principal_of(account)
    _finish(runtime, message_id, None, faults, principal)


def _finish(
    runtime: Runtime,
    message_id: str,
    transfer_id: str | None,
    faults: list[dict[str, str | None]],
    principal: Principal,
) -> None:
    """Write the ATR (accepted when the transfer is, refused otherwise), close the message,
    then remove its upload."""
    with runtime.sessions() as session:
        row = session.get(PastellMessage, message_id)
        assert row is not None
        transfer = session.get(Transfer, transfer_id) if transfer_id else None
        if transfer is not None:
            row.transfer_id = transfer.id
            if transfer.status != "OK":
                faults = list(transfer.errors)
        atr = _atr(session, row, transfer, faults)
        row.atr = atr
        row.status = "done"
        row.completed_at = utcnow()
        accepted = transfer is not None and transfer.status == "OK" and not faults
        # The ATR as sent, so that a rebuild answers Pastell's lookup byte for byte
        # (sae.pastell.replay); deflated: a SEDA 1.0 acceptance repeats the bordereau's Archive.
        reply: dict[str, Any] = {
            "actor": principal.actor,
            "transfer_id": transfer.id if transfer is not None else None,
            "payload": {
                "message_id": row.id,
                "transfer_id": transfer.id if transfer is not None else None,
                "faults": [] if accepted else faults,
                "completed_at": row.completed_at.isoformat(),
                "atr_deflated": base64.b64encode(zlib.compress(atr, 9)).decode("ascii"),
            },
        }
        if accepted:
            event = append_event(session, type="pastell.accepted", **reply)
        else:
            event = append_event(session, type="pastell.rejected", **reply)
        session.commit()
        upload = row.attachments
    _remove_upload(runtime, upload)
    secure_leaves(runtime, event.leaf_index + 1)


def _set_status(runtime: Runtime, message_id: str, status: str, transfer_id: str) -> None:
    with runtime.sessions() as session:
        session.execute(
            update(PastellMessage)
            .where(PastellMessage.id == message_id)
            .values(status=status, transfer_id=transfer_id, claimed_at=None)
        )
        session.commit()


def _release(runtime: Runtime, message_id: str) -> None:
    with runtime.sessions() as session:
        session.execute(
            update(PastellMessage)
            .where(PastellMessage.id == message_id)
            .values(status="received", claimed_at=None)
        )
        session.commit()


def _lines(faults: Iterable[Mapping[str, object]]) -> list[str]:
    lines = []
    for fault in faults:
        where = f" ({fault.get('where')})" if fault.get("where") else ""
        lines.append(f"{fault.get('code')} : {fault.get('message')}{where}")
    return lines


def _atr(
    session: Session,
    message: PastellMessage,
    transfer: Transfer | None,
    faults: list[dict[str, str | None]],
) -> bytes:
    """The ATR Pastell reads, in the transfer's SEDA version."""
    now = utcnow()
    accepted = transfer is not None and transfer.status == "OK" and not faults
    identifier = f"ATR-{transfer.id if transfer is not None else message.id}"
    if accepted:
        assert transfer is not None
        comments = [f"Transfert accepté par le SAE (transfert {transfer.id})."]
        comments += [f"Avertissement : {line}" for line in _lines(transfer.warnings)]
    else:
        comments = [f"Transfert refusé par le SAE : {len(faults)} anomalie(s)."]
        comments += _lines(faults)
    roots = _root_units(session, message, transfer) if accepted else []
    archival_agency = message.archival_agency or _archival_agency(
        message.bordereau, message.seda_version
    )
    if message.seda_version == "1.0":
        return seda.write_archive_transfer_reply_v10(
            bordereau=message.bordereau or _bordereau_stub_10(message, archival_agency),
            identifier=identifier,
            date=now,
            reply_code="000" if accepted else "300",
            comments=comments,
            archival_identifiers={i: unit.id for i, unit in enumerate(roots)},
            grant_date=now if accepted else None,
        )
    return seda.write_archive_transfer_reply(
        seda.ArchiveTransferReply(
            version=seda.SedaVersion(message.seda_version),
            message_identifier=identifier,
            date=now,
            message_request_identifier=message.transfer_identifier,
            reply_code="000" if accepted else "KO",
            grant_date=now if accepted else None,
            archival_agency_identifier=archival_agency,
            transferring_agency_identifier=message.agency,
            comments=comments,
            events=[
                seda.ReplyEvent(
                    type=str(f.get("code")),
                    outcome="KO",
                    detail=str(f.get("message")),
                    where=f.get("where"),
                    date=now,
                )
                for f in faults
            ],
            units=[
                seda.ReplyUnit(
                    sip_id=unit.sip_id,
                    system_id=unit.id,
                    title=unit.title,
                    archival_agency_identifier=unit.id,
                )
                for unit in roots
            ],
        )
    )


def _bordereau_stub_10(message: PastellMessage, archival_agency: str) -> bytes:
    """What a SEDA 1.0 refusal reads of a bordereau (its identifier, archival and transferring
    agencies), for a rebuilt message whose bordereau is lost: a refusal repeats no Archive."""
    from html import escape

    return (
        f'<ArchiveTransfer xmlns="{seda.SEDA10_NAMESPACE}">'
        f"<TransferIdentifier>{escape(message.transfer_identifier, quote=False)}"
        "</TransferIdentifier>"
        f"<ArchivalAgency><Identification>{escape(archival_agency, quote=False)}"
        "</Identification>"
        "</ArchivalAgency><TransferringAgency>"
        f"<Identification>{escape(message.agency, quote=False)}</Identification>"
        "</TransferringAgency></ArchiveTransfer>"
    ).encode()


def _root_units(
    session: Session, message: PastellMessage, transfer: Transfer | None
) -> list[ArchiveUnit]:
    """The transfer's root units, in the bordereau's order (one per ``Archive`` in 1.0)."""
    if transfer is None:
        return []
    units = list(session.scalars(select(ArchiveUnit).where(ArchiveUnit.transfer_id == transfer.id)))
    by_sip = {u.sip_id: u for u in units}
    if message.seda_version == "1.0":
        read = seda.read_transfer_v10(message.bordereau)
        sip_ids = read.archive_unit_ids
    else:
        parsed = seda.read_transfer(message.bordereau)
        sip_ids = parsed.package.top_unit_ids()
    return [by_sip[s] for s in sip_ids if s in by_sip]
