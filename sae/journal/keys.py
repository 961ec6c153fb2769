"""The journal's signing key and time-stamping authority, as the settings configure them.

Embedded default: the SAE signing key and a built-in TSA, both created at first start under
``$SAE_DATA_DIR/keys`` and ``$SAE_DATA_DIR/tsa``. Production: ``SAE_TSA_URL`` names an external
RFC 3161 authority and ``SAE_TSA_CA_FILE`` its trust anchor(s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.db import lock_for_writing, transaction
from sae.journal.checkpoint import SigningKey, check_private_mode
from sae.journal.errors import KeyChanged, KeyMissing, SigningKeyError
from sae.journal.keyhistory import KEY_EVENTS, expected_fingerprint, fingerprint
from sae.journal.models import Event, TreeHead
from sae.journal.rotation import ROTATION_LOCK, finish_interrupted_rotation
from sae.journal.service import append_event
from sae.journal.tsa import BuiltinTSA, HttpTSA, TimestampAuthority, create_builtin_tsa_files

_lock = threading.Lock()
_cache: dict[tuple[str | None, ...], JournalKeys] = {}
#: Keys kept beside the key file under their fingerprint (a rotation's), by fingerprint.
_by_fingerprint: dict[str, SigningKey] = {}


@dataclass(frozen=True)
class JournalKeys:
    """What sealing needs: who signs, who time-stamps, and the log's name."""

    signer: SigningKey
    tsa: TimestampAuthority
    origin: str


def load_journal_keys(settings: Settings) -> JournalKeys:
    """Load (creating on first start) the keys for ``settings``; cached per configuration and
    per signing key file: ``sae journal rotate-key`` run by another process puts a new file in
    place, and the next call here — a seal, a tail — signs with it (as the note key is read)."""
    key = (
        *_config_key(settings),
        _file_identity(settings.data_dir / "keys" / SigningKey.FILENAME),
        settings.tsa_policy_oid,
        settings.tsa_username,
        str(settings.tsa_chain_file),
        str(settings.tsa_client_cert),
        # The secrets' digests, not the secrets: a changed password is a changed client.
        _digest(settings.tsa_password),
        _digest(settings.tsa_bearer_token),
    )
    with _lock:
        cached = _cache.get(key)
        if cached is None or cached.origin != settings.origin:
            cached = _load(settings)
            # The same configuration's entry for the key file it replaces goes.
            for stale in [k for k in _cache if k[:3] == key[:3] and k[3] != key[3]]:
                del _cache[stale]
            _cache[key] = cached
        return cached


def _file_identity(path: Path) -> str:
    """The file's inode, modification time and size: another file put in its place (a key
    rotation's rename, a restore) is another identity. A stat per call, cheaper than a read."""
    try:
        info = path.stat()
    except OSError:
        return "absent"
    return f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}"


def signing_key_for(settings: Settings, fpr: str) -> SigningKey:
    """The journal signing key whose fingerprint is ``fpr``: the key file's, or one kept beside
    it under its fingerprint by ``sae journal rotate-key`` — the new key before it is swapped
    in, the previous one after. What signs a checkpoint is the key *in force at its size*
    (:mod:`sae.journal.keyhistory`), which for a moment around a rotation is not the file's.
    :class:`KeyChanged` when this SAE holds no such key."""
    current = load_journal_keys(settings).signer
    if fingerprint(current.public_pem) == fpr:
        return current
    with _lock:
        kept = _by_fingerprint.get(fpr)
    if kept is not None:
        return kept
    from sae.journal.rotation import retired_name

    path = retired_name(settings.data_dir / "keys", fpr)
    if path.exists():
        kept = SigningKey.load(path)
        if fingerprint(kept.public_pem) == fpr:
            with _lock:
                _by_fingerprint[fpr] = kept
            return kept
    raise KeyChanged(
        f"the journal's key in force is {fpr}, which is neither {settings.data_dir / 'keys'}"
        f"/{SigningKey.FILENAME} nor kept beside it as {path.name}",
        pinned=fpr,
    )


def _digest(secret: SecretStr | None) -> str | None:
    if secret is None:
        return None
    return hashlib.sha256(secret.get_secret_value().encode()).hexdigest()


def forget_journal_keys() -> None:
    """Drop the cached keys: the next :func:`load_journal_keys` reads the files again (after a
    rotation, here or in another process)."""
    with _lock:
        _cache.clear()
        _by_fingerprint.clear()


def check_keys_at_start(settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Refuse to start with a missing, replaced or world-readable key; pin the key at first start.

    On a first start (no key leaf, no head, no ``SAE_JOURNAL_KEY_FINGERPRINT``) the signing key
    is created as before. Afterwards the key file must exist and hold the pinned key — the one
    of the last ``journal.key_pinned``/``journal.key_rotated`` leaf, else of the last head —
    and match ``SAE_JOURNAL_KEY_FINGERPRINT`` when set: a new key is only ever introduced by
    ``sae journal rotate-key``, which journals the change. The first start that finds no key
    leaf journals ``journal.key_pinned``.
    """
    directory = settings.data_dir / "keys"
    path = directory / SigningKey.FILENAME
    configured = settings.journal_key_fingerprint
    with transaction(sessions) as session:
        # Several processes starting at once pin one key, once; a rotation waits for them.
        lock_for_writing(session, ROTATION_LOCK)
        expected = expected_fingerprint(session)
        if expected is not None and not _holds(path, expected):
            finish_interrupted_rotation(directory, expected)
        signer = SigningKey.load_or_create(
            directory, create=expected is None and configured is None
        )
        found = fingerprint(signer.public_pem)
        for pinned, where in ((configured, "SAE_JOURNAL_KEY_FINGERPRINT"), (expected, "journal")):
            if pinned is not None and found != pinned:
                raise KeyChanged(
                    f"the journal signing key {path} (fingerprint {found}) is not the key the "
                    f"{where} pins ({pinned}): put the right key file back, or introduce a new "
                    "key with `sae journal rotate-key` (`--lost` if the pinned key is gone)",
                    path=str(path),
                    found=found,
                    pinned=pinned,
                )
        if not settings.tsa_url:
            has_head = session.scalar(select(TreeHead.tree_size).limit(1)) is not None
            _check_builtin_tsa(settings.data_dir / "tsa", established=has_head)
        _check_note_key(settings, session)
        pinned_leaf = session.scalar(
            select(Event.leaf_index).where(Event.type.in_(KEY_EVENTS)).limit(1)
        )
        if pinned_leaf is None:
            append_event(
                session,
                type="journal.key_pinned",  # KEY_PINNED, written out for the registry test
                actor="system:start",
                payload={
                    "fingerprint": found,
                    "public_key_pem": signer.public_pem.decode("ascii"),
                },
            )


def _check_note_key(settings: Settings, session: Session) -> None:
    """The note key (``sae.journal.notekey``) is pinned by the notes it signed: once a head
    carries one, the key file must exist and be the key that signed the latest — never a new
    one, which the witnesses (who pinned the old vkey) would refuse as a stranger's."""
    from sae.journal.note import Note, NoteError
    from sae.journal.notekey import load_note_key, note_key_path

    noted = session.scalar(
        select(TreeHead.note)
        .where(TreeHead.note.is_not(None))
        .order_by(TreeHead.tree_size.desc())
        .limit(1)
    )
    if noted is None:
        load_note_key(settings)  # first start: created (0600); one readable by others refused
        return
    path = note_key_path(settings)
    if not path.exists():
        raise KeyMissing(
            f"the journal note key {path} is missing while heads carry notes it signed (the "
            "witnesses trust its vkey): restore it from a backup; SAE does not create another",
            path=str(path),
        )
    key = load_note_key(settings)
    try:
        signed = Note.parse(bytes(noted)).verified_by([key.verifier])
    except NoteError:
        signed = []
    if not signed:
        raise KeyChanged(
            f"the journal note key {path} ({key.vkey}) did not sign the latest head's note: "
            "put the right key file back (the witnesses trust the key that did)",
            path=str(path),
            found=key.vkey,
        )


def _holds(path: Path, fpr: str) -> bool:
    try:
        return fingerprint(SigningKey.load(path).public_pem) == fpr
    except SigningKeyError:
        return False


def _check_builtin_tsa(directory: Path, *, established: bool) -> None:
    key = directory / "tsa.key"
    if not established:
        # Created now rather than at the first seal: the configuration journaled at this start
        # names its root.
        create_builtin_tsa_files(directory)
    if key.exists():
        check_private_mode(key)
    elif established:
        # A fresh built-in TSA would be another root: heads already sealed keep their chain,
        # but the operator should know the TSA changed, not find out from an auditor.
        raise KeyMissing(
            f"the built-in TSA's key {key} is missing while the journal has heads it "
            f"time-stamped: restore {directory} from a backup (SAE does not silently create "
            "another TSA), or configure an external TSA (SAE_TSA_URL)",
            path=str(key),
        )


def _load(settings: Settings) -> JournalKeys:
    signer = SigningKey.load_or_create(settings.data_dir / "keys")
    tsa: TimestampAuthority
    if settings.tsa_url:
        tsa = http_tsa(settings)
    else:
        tsa = BuiltinTSA.load(settings.data_dir / "tsa")
    return JournalKeys(signer=signer, tsa=tsa, origin=settings.origin)


def http_tsa(settings: Settings) -> HttpTSA:
    """The external TSA client the settings describe (URL, anchors, intermediates, policy,
    authentication)."""
    assert settings.tsa_url is not None
    auth = None
    if settings.tsa_username is not None and settings.tsa_password is not None:
        auth = (settings.tsa_username, settings.tsa_password.get_secret_value())
    bearer = settings.tsa_bearer_token.get_secret_value() if settings.tsa_bearer_token else None
    client_cert = None
    if settings.tsa_client_cert is not None and settings.tsa_client_key is not None:
        check_private_mode(settings.tsa_client_key)
        client_cert = (settings.tsa_client_cert, settings.tsa_client_key)
    extra = _certificates(settings.tsa_chain_file, "SAE_TSA_CHAIN_FILE") or []
    return HttpTSA(
        settings.tsa_url,
        _anchors(settings.tsa_ca_file),
        extra_certs=extra,
        auth=auth,
        bearer=bearer,
        client_cert=client_cert,
        policy=settings.tsa_policy_oid,
    )


def _certificates(path: Path | None, variable: str) -> list[x509.Certificate] | None:
    if path is None:
        return None
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"{variable}={path} is unreadable: {exc}") from None


def _anchors(path: Path | None) -> list[x509.Certificate]:
    if path is None:
        raise SigningKeyError(
            "SAE_TSA_URL is set but SAE_TSA_CA_FILE is not: the TSA's replies cannot be checked"
        )
    anchors = _certificates(path, "SAE_TSA_CA_FILE")
    assert anchors is not None
    return anchors


# --------------------------------------------------------------------------- /health's TSA check


@dataclass(frozen=True)
class TsaCheck:
    """The last time this process saw the TSA answer (or fail)."""

    ok: bool
    detail: str
    at: dt.datetime


#: A failed check is retried sooner than a good one is repeated: the TSA may be back.
FAILED_CHECK_RETRY = dt.timedelta(minutes=1)
_checks: dict[tuple[str, str | None, str | None], TsaCheck] = {}
_probe_lock = threading.Lock()


def _config_key(settings: Settings) -> tuple[str, str | None, str | None]:
    return (
        str(settings.data_dir),
        settings.tsa_url,
        str(settings.tsa_ca_file) if settings.tsa_ca_file else None,
    )


def record_tsa_check(
    settings: Settings, *, ok: bool, detail: str, at: dt.datetime | None = None
) -> None:
    """Remember a TSA result: a seal's verified token counts as a check (``at``: its time)."""
    when = at or dt.datetime.now(dt.UTC)
    key = _config_key(settings)
    with _lock:
        last = _checks.get(key)
        if last is None or when >= last.at:
            _checks[key] = TsaCheck(ok, detail, when)


def last_tsa_check(settings: Settings) -> TsaCheck | None:
    """The latest TSA result this process knows of (None before the first)."""
    with _lock:
        return _checks.get(_config_key(settings))


def tsa_health(settings: Settings) -> tuple[bool, str]:
    """For ``/health``: the TSA's last result, asking it for a token only when that result is
    older than ``SAE_TSA_CHECK_MINUTES`` (a failure: after a minute).

    Each token may be paid for at a qualified TSA: a health check every 15 s (a container's
    healthcheck) must not buy 5,760 of them a day. A sealed head's token counts as a check.
    Concurrent calls after the period ask once: the others wait and read its result.
    """
    period = dt.timedelta(minutes=settings.tsa_check_minutes)
    last = last_tsa_check(settings)
    if _due(last, period):
        with _probe_lock:
            last = last_tsa_check(settings)
            if _due(last, period):
                last = _probe(settings)
    assert last is not None
    stamp = last.at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return last.ok, f"{last.detail}; checked at {stamp} (at most every {period})"


def _due(last: TsaCheck | None, period: dt.timedelta) -> bool:
    if last is None:
        return True
    age = dt.datetime.now(dt.UTC) - last.at
    return age >= (period if last.ok else min(period, FAILED_CHECK_RETRY))


def _probe(settings: Settings) -> TsaCheck:
    from sae.errors import SAEError

    kind = "external" if settings.tsa_url else "built-in"
    now = dt.datetime.now(dt.UTC)
    try:
        keys = load_journal_keys(settings)
        token = keys.tsa.timestamp(b"sae health probe")
    except SAEError as exc:
        check = TsaCheck(False, f"{exc.code}: {exc.detail}", now)
    else:
        check = TsaCheck(True, f"{kind} TSA answered ({token.gen_time.isoformat()})", now)
    with _lock:
        _checks[_config_key(settings)] = check
    return check
