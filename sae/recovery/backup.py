"""Backups of the embedded catalogue and their restore (``sae backup``, ``sae restore``).

A backup is a directory ``DEST/sae-backup-<UTC time>/`` holding:

- ``database/sae.db``: a consistent copy of the SQLite catalogue, taken while SAE runs;
- ``keys/``: the journal's signing key (**private**) and its public key;
- ``tsa/``: the built-in TSA's key (**private**) and chain, or ``tsa-ca/`` the external TSA's
  trust anchors (``SAE_TSA_CA_FILE``);
- ``offers/``: the offers file (``SAE_OFFERS_FILE``; no secret is ever written there);
- ``MANIFEST.json`` (format ``sae-backup/1``: when, which SAE, the journal's size at the copy,
  every file with its SHA-512 and size) and ``SHA512SUMS`` (``sha512sum -c SHA512SUMS``).

Every file is 0600 and every directory 0700: the backup holds private keys. It is written in a
hidden staging directory under DEST and renamed into place whole, so a backup that exists is
complete. Nothing is written in the data directory.

**The copy.** SQLite's online backup API copies the database page by page. A step that finds
the source changed by another connection since the previous step starts again from the first
page, so under a steady flow of deposits a page-by-page copy never ends (measured: it did not
finish in two minutes against one writer). The copy is therefore made inside one read
transaction on the source: in WAL mode a reader sees one snapshot for as long as it lasts and
blocks no writer, so deposits go on during the copy (the WAL grows until the copy ends, as the
checkpointer cannot pass a reader) and the copy is the catalogue exactly as of one commit. The
app's writer lock (:class:`sae.db.WriterTurns`) is not taken: it orders writers, and the backup
writes nothing. The copy is switched to a rollback journal so that it is one self-contained file.

**The restore** (:func:`check_backup`, :func:`plan_catch_up`, :func:`put_back`,
:func:`catch_up`): every file is checked against ``SHA512SUMS`` and the MANIFEST; the offer the
catch-up reads is verified like ``sae journal verify --offer``, and its journal must continue
the backup's (same root at a common signed head, same leaves after it); only then are the
catalogue, keys and offers file put back — what they replace is renamed aside
(``<name>.replaced-by-restore-<time>``), never deleted. What happened after the backup is then
replayed from the offer by the rebuild's replay (:mod:`sae.recovery.rebuild`), starting at the
backup's tree size: the restore has no replay of its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

import sae
from sae.config import Settings
from sae.db import sqlite_file
from sae.fileio import fsync_directory, write_all
from sae.journal.keyhistory import KeyHistory, fingerprint
from sae.journal.keys import JournalKeys
from sae.journal.segments import PREFIX as SEGMENTS_PREFIX
from sae.journal.segments import read_segment
from sae.journal.service import append_event
from sae.recovery.errors import (
    BackupFailed,
    BackupInvalid,
    BackupRefused,
    RestoreFailed,
    RestoreRefused,
)
from sae.recovery.replay import changes_no_state
from sae.storage.base import StorageOffer

FORMAT = "sae-backup/1"
MANIFEST = "MANIFEST.json"
SUMS = "SHA512SUMS"
DATABASE = "database/sae.db"
#: Where the restore refers the PostgreSQL user.
PG_PROCEDURE = "docs/recovery.md, « PostgreSQL: pg_dump and PITR »"
#: Pages copied per step of the online backup (4 MiB of 4 KiB pages): the progress bar moves.
PAGES_PER_STEP = 1024
#: Where the offers keep the transfers' descriptions.
TRANSFERS_PREFIX = "transfers/"

BACKED_UP = "catalog.backed_up"
RESTORED = "catalog.restored"

changes_no_state(BACKED_UP, "a copy of the catalogue was made; the catalogue itself did not change")
changes_no_state(
    RESTORED,
    "the catalogue was put back from a backup and caught up from an offer: a rebuild from the "
    "offers replays what the restore replayed, from the same leaves",
)

Progress = Callable[[int, int], None]


def _no_progress(_done: int, _total: int) -> None:
    return None


# --------------------------------------------------------------------------- backup


@dataclass(frozen=True)
class BackupResult:
    """A backup written: where, and what its MANIFEST says."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _inside(path: Path, directory: Path) -> bool:
    path, directory = path.resolve(), directory.resolve()
    return path == directory or directory in path.parents


def take_backup(
    settings: Settings,
    dest: Path,
    *,
    keys_only: bool = False,
    progress: Progress = _no_progress,
    now: dt.datetime | None = None,
) -> BackupResult:
    """Write a new dated backup under ``dest`` (see the module's docstring).

    ``keys_only``: the keys, the TSA material and the offers file without the database (for a
    PostgreSQL catalogue, saved by pg_dump or a base backup beside them). Refused
    (:class:`BackupRefused`): a PostgreSQL or in-memory catalogue without ``keys_only``, a
    destination inside the data directory.
    """
    database = sqlite_file(settings.db_url)
    if not keys_only and database is None:
        if settings.db_url.startswith("postgresql"):
            raise BackupRefused(
                "the catalogue is in PostgreSQL: `sae backup` copies only the embedded SQLite "
                "catalogue. Save it with pg_dump or a base backup and WAL archiving "
                f"({PG_PROCEDURE}), and keep the keys, the TSA material and the offers file "
                "beside it: `sae backup --keys-only DEST` copies those."
            )
        raise BackupRefused("an in-memory catalogue cannot be backed up")
    if _inside(dest, settings.data_dir):
        raise BackupRefused(
            f"{dest} is inside the data directory {settings.data_dir}: a backup must live "
            "elsewhere (another disk, another site), never beside what it saves"
        )
    if database is not None and not keys_only and not Path(database).is_file():
        raise BackupRefused(f"the catalogue {database} does not exist")
    at = now or dt.datetime.now(dt.UTC)
    try:
        return _write_backup(settings, dest, database, keys_only, progress, at)
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BackupFailed(
            f"the backup could not be written to {dest} ({type(exc).__name__}: {reason}); "
            "nothing was kept"
        ) from exc


def _write_backup(
    settings: Settings,
    dest: Path,
    database: str | None,
    keys_only: bool,
    progress: Progress,
    at: dt.datetime,
) -> BackupResult:
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".sae-backup-{_stamp(at)}-", dir=dest))
    try:
        files: list[dict[str, Any]] = []
        catalogue: dict[str, Any] | None = None
        if not keys_only and database is not None:
            target = staging / DATABASE
            _mkdirs(target.parent, staging)
            _copy_database(database, target, progress)
            catalogue = {"file": DATABASE, "source": database, **_journal_extent(target)}
            files.append(_entry(staging, DATABASE, "database"))
        for rel, role in _copy_material(settings, staging):
            files.append(_entry(staging, rel, role))
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": _iso(at),
            "sae_version": sae.__version__,
            "contains_private_keys": any(f["role"] in ("signing_key", "tsa_key") for f in files),
            "keys_only": keys_only,
            "database": catalogue,
            "source": {
                "data_dir": str(settings.data_dir),
                "database": "sqlite" if database is not None else "postgresql",
                "offers_file": str(settings.offers_file) if settings.offers_file else None,
                "tsa": "external" if settings.tsa_url else "built-in",
                "tsa_ca_file": str(settings.tsa_ca_file) if settings.tsa_ca_file else None,
                "origin": settings.origin,
            },
            "files": files,
        }
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
        _write_file(staging / MANIFEST, manifest_bytes)
        sums = [(f["sha512"], f["path"]) for f in files]
        sums.append((hashlib.sha512(manifest_bytes).hexdigest(), MANIFEST))
        lines = "".join(f"{digest}  {rel}\n" for digest, rel in sorted(sums, key=lambda s: s[1]))
        _write_file(staging / SUMS, lines.encode())
        for directory in sorted({p.parent for p in staging.rglob("*")}, reverse=True):
            fsync_directory(directory)
        final = _publish(staging, dest, f"sae-backup-{_stamp(at)}")
    except BaseException:
        # Only the hidden staging directory of this very call: never a finished backup.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupResult(final, manifest)


def _publish(staging: Path, dest: Path, name: str) -> Path:
    """Rename ``staging`` to ``dest/name``, or ``name-2``, ``name-3``… when two backups share
    a second (a rename onto a directory that is not empty fails: none is ever replaced)."""
    n = 1
    while True:
        final = dest / (name if n == 1 else f"{name}-{n}")
        if not final.exists():
            try:
                os.rename(staging, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            else:
                fsync_directory(dest)
                return final
        n += 1


def _mkdirs(directory: Path, root: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in [directory, *directory.parents]:
        if part == root or root not in part.parents:
            break
        part.chmod(0o700)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha512_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha512(), 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _entry(root: Path, rel: str, role: str) -> dict[str, Any]:
    digest, size = _sha512_file(root / rel)
    return {"path": rel, "role": role, "sha512": digest, "size": size}


def _copy_database(source: str, target: Path, progress: Progress) -> None:
    """A consistent copy of the SQLite file ``source`` (see the module's docstring, « The
    copy »), checked with ``PRAGMA integrity_check`` before it is accepted."""
    src = sqlite3.connect(source, isolation_level=None, timeout=30)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        # One read transaction for the whole copy: the snapshot the steps copy never changes,
        # so no step starts over however many deposits commit meanwhile.
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(
                dst,
                pages=PAGES_PER_STEP,
                progress=lambda _status, remaining, total: progress(total - remaining, total),
            )
            src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode=DELETE")
            check = [row[0] for row in dst.execute("PRAGMA integrity_check")]
            if check != ["ok"]:
                raise BackupRefused(
                    "the copy of the catalogue fails PRAGMA integrity_check: "
                    + "; ".join(str(c) for c in check[:5])
                )
        finally:
            dst.close()
    finally:
        src.close()
    for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm"), Path(f"{target}-journal")):
        leftover.unlink(missing_ok=True)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    target.chmod(0o600)


def _journal_extent(database: Path) -> dict[str, Any]:
    """What the copy holds of the journal (read from the copy itself, so it is exactly the
    state copied): its tree size, last leaf, last sealed head, and the accepted transfers."""
    with contextlib.closing(_open_read_only(database)) as db:
        size = db.execute("SELECT value FROM journal_state WHERE name = 'tree_size'").fetchone()
        last_leaf = db.execute("SELECT max(leaf_index) FROM events").fetchone()[0]
        sealed = db.execute("SELECT max(tree_size) FROM tree_heads").fetchone()[0]
        transfers = db.execute("SELECT count(*) FROM transfers WHERE status = 'OK'").fetchone()[0]
        revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
    tree_size = int(size[0]) if size else (int(last_leaf) + 1 if last_leaf is not None else 0)
    return {
        "tree_size": tree_size,
        "last_leaf_index": int(last_leaf) if last_leaf is not None else None,
        "last_sealed_tree_size": int(sealed) if sealed is not None else 0,
        "accepted_transfers": int(transfers),
        "schema_revision": revision[0] if revision else None,
    }


def _open_read_only(database: Path) -> sqlite3.Connection:
    # immutable: the file is a backup nobody writes; SQLite then takes no lock and makes no
    # -wal or -shm beside it.
    return sqlite3.connect(f"file:{database}?mode=ro&immutable=1", uri=True)


def _material(settings: Settings) -> list[tuple[Path, str, str]]:
    """``(source file, path in the backup, role)`` of the keys, TSA material and offers file.

    Every file of ``keys/`` and ``tsa/`` is taken, not a list of names: a key added there
    later (a rotated signing key) is saved without this code knowing it. ``*.key`` files are
    the private ones (``signing_key``, ``tsa_key``)."""
    out: list[tuple[Path, str, str]] = []
    dirs = [("keys", "signing_key", "key")]
    if not settings.tsa_url:
        dirs.append(("tsa", "tsa_key", "tsa"))
    for name, secret, public in dirs:
        directory = settings.data_dir / name
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or path.is_symlink() or not path.is_file():
                continue  # a staging file of a key being created, never a key
            role = secret if path.suffix == ".key" else public
            out.append((path, f"{name}/{path.name}", role))
    if settings.tsa_url and settings.tsa_ca_file is not None:
        out.append((settings.tsa_ca_file, f"tsa-ca/{settings.tsa_ca_file.name}", "tsa_ca"))
    if settings.offers_file is not None:
        out.append((settings.offers_file, f"offers/{settings.offers_file.name}", "offers_file"))
    return out


def _copy_material(settings: Settings, staging: Path) -> Iterator[tuple[str, str]]:
    for source, rel, role in _material(settings):
        target = staging / rel
        _mkdirs(target.parent, staging)
        _write_file(target, source.read_bytes())
        yield rel, role


def record_backup(session: Session, result: BackupResult, *, actor: str) -> None:
    """Journal the backup (``catalog.backed_up``) in the caller's transaction."""
    database = result.manifest["database"] or {}
    sums = (result.path / SUMS).read_bytes()
    append_event(
        session,
        type=BACKED_UP,
        actor=actor,
        payload={
            "backup": result.name,
            "keys_only": result.manifest["keys_only"],
            "tree_size": database.get("tree_size"),
            "sha512sums": hashlib.sha512(sums).hexdigest(),
        },
    )


# --------------------------------------------------------------------------- checking


_SUM_LINE = re.compile(r"([0-9a-f]{128})  (\S[^\n]*)")


@dataclass(frozen=True)
class CheckedBackup:
    """A backup whose every file matches ``SHA512SUMS`` and whose MANIFEST is ours."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def tree_size(self) -> int:
        """The journal's size in the copied catalogue (0 for a keys-only backup)."""
        database = self.manifest.get("database") or {}
        return int(database.get("tree_size") or 0)

    @property
    def database(self) -> Path | None:
        database = self.manifest.get("database")
        return self.path / str(database["file"]) if database else None

    def files(self, role: str) -> list[Path]:
        """The backup's files of ``role`` (paths inside the backup)."""
        return [self.path / f["path"] for f in self.manifest["files"] if f["role"] == role]


def _safe_member(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts and "." not in parts


def check_backup(src: Path) -> CheckedBackup:
    """Check every file of the backup ``src`` against ``SHA512SUMS`` and the MANIFEST.

    Refused (:class:`BackupInvalid`, naming the file): no ``SHA512SUMS``, a malformed line, a
    file missing, altered, or not listed, a MANIFEST of another format or that disagrees with
    ``SHA512SUMS``.
    """
    if not src.is_dir():
        raise BackupInvalid(f"{src} is not a backup directory")
    sums_path = src / SUMS
    if not sums_path.is_file():
        raise BackupInvalid(f"{src} holds no {SUMS}: not a backup of SAE, or an incomplete one")
    listed: dict[str, str] = {}
    for number, line in enumerate(sums_path.read_text(encoding="utf-8").splitlines(), 1):
        match = _SUM_LINE.fullmatch(line)
        if match is None or not _safe_member(match.group(2)):
            raise BackupInvalid(f"{SUMS}, line {number}: not « <sha512>  <file> »")
        listed[match.group(2)] = match.group(1)
    for rel, expected in sorted(listed.items()):
        path = src / rel
        if path.is_symlink() or not path.is_file():
            raise BackupInvalid(f"{rel}: listed in {SUMS} but missing from the backup", file=rel)
        actual, _ = _sha512_file(path)
        if actual != expected:
            raise BackupInvalid(
                f"{rel}: its SHA-512 does not match {SUMS} (altered or damaged)", file=rel
            )
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if (path.is_file() or path.is_symlink()) and rel != SUMS and rel not in listed:
            raise BackupInvalid(f"{rel}: in the backup but not in {SUMS}", file=rel)
    if MANIFEST not in listed:
        raise BackupInvalid(f"{MANIFEST}: missing from the backup", file=MANIFEST)
    try:
        manifest = json.loads((src / MANIFEST).read_bytes())
    except ValueError as exc:
        raise BackupInvalid(f"{MANIFEST}: not JSON ({exc})", file=MANIFEST) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BackupInvalid(
            f"{MANIFEST}: format {found!r}, this SAE reads {FORMAT!r}", file=MANIFEST
        )
    entries = manifest.get("files")
    if not isinstance(entries, list):
        raise BackupInvalid(f"{MANIFEST}: no list of files", file=MANIFEST)
    for entry in entries:
        member = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(member, str) or listed.get(member) != entry.get("sha512"):
            raise BackupInvalid(f"{MANIFEST}: its entry for {member!r} disagrees with {SUMS}")
    return CheckedBackup(src, manifest)


# --------------------------------------------------------------------------- catch-up plan


@dataclass(frozen=True)
class CatchUpPlan:
    """What the offer holds beyond the backup, found before anything is put back."""

    offer: str
    backup_tree_size: int
    offer_tree_size: int
    segments: int
    #: Transfers whose description is on the offer but which the backup's catalogue lacks.
    missing_transfers: tuple[str, ...]
    #: The signed head at which the backup's journal and the offer's were found equal.
    common_head: int
    #: Heads the offer holds over leaves the backup holds, that the backup lacks: sealed by
    #: the running server after the copy (and answered by its API before the loss).
    missing_heads: tuple[int, ...] = ()

    @property
    def leaves_after_backup(self) -> int:
        return max(0, self.offer_tree_size - self.backup_tree_size)

    @property
    def needed(self) -> bool:
        return (
            self.leaves_after_backup > 0 or bool(self.missing_transfers) or bool(self.missing_heads)
        )


def plan_catch_up(backup: CheckedBackup, offer: StorageOffer) -> CatchUpPlan:
    """Check that ``offer``'s journal is whole and continues the backup's, and say what it
    holds beyond it. Reads the backup's copy, writes nothing.

    Refused (:class:`RestoreRefused`): the offer's segments do not verify (as ``sae journal
    verify --offer``, each bad segment named), or they disagree with the backup's journal (a
    different root at a head both hold, a different leaf after it): replaying them onto this
    backup would fork the journal.
    """
    from sae.journal.publishing import verify_offer

    verdict = verify_offer(offer)
    if not verdict.ok:
        raise RestoreRefused(
            f"the journal on offer {offer.name} does not verify: nothing was restored",
            problems=[f"{p.key}: {p.kind}: {p.message}" for p in verdict.problems],
        )
    database = backup.database
    if database is None:
        return CatchUpPlan(offer.name, 0, verdict.tree_size, verdict.segments, (), 0)
    keys = sorted(offer.list_keys(SEGMENTS_PREFIX))
    with contextlib.closing(_open_read_only(database)) as db:
        public = [p for p in backup.files("key") if p.name == "journal-signing.pub.pem"]
        common = _check_continuation(
            db, offer, keys, backup.tree_size, public[0].read_bytes() if public else None
        )
        known = {row[0] for row in db.execute("SELECT id FROM transfers")}
        heads = {int(row[0]) for row in db.execute("SELECT tree_size FROM tree_heads")}
    # A head sealed after the copy may cover no leaf the backup lacks (the sealer sealed
    # between the copy and its catalog.backed_up leaf): the catch-up must still record it.
    missing_heads = sorted(
        {
            size
            for size in (_segment_range(key)[1] for key in keys)
            if size <= backup.tree_size and size not in heads
        }
    )
    missing = []
    for key in offer.list_keys(TRANSFERS_PREFIX):
        name = key[len(TRANSFERS_PREFIX) :]
        if name.endswith(".zip") and name[: -len(".zip")] not in known:
            missing.append(name[: -len(".zip")])
    return CatchUpPlan(
        offer=offer.name,
        backup_tree_size=backup.tree_size,
        offer_tree_size=verdict.tree_size,
        segments=verdict.segments,
        missing_transfers=tuple(sorted(missing)),
        common_head=common,
        missing_heads=tuple(missing_heads),
    )


def _segment_range(key: str) -> tuple[int, int]:
    first, size = key[len(SEGMENTS_PREFIX) : -len(".jsonl")].split("-")
    return int(first), int(size)


def _check_continuation(
    db: sqlite3.Connection,
    offer: StorageOffer,
    keys: list[str],
    backup_size: int,
    public_pem: bytes | None,
) -> int:
    """The largest signed head both journals hold, checked equal; the backup's leaves after it
    checked byte for byte against the offer's; every later segment signed by the backup's key.

    A root equal at size S proves the leaves ``[0, S)`` equal (RFC 9162), so only the leaves
    after the last common head are read. A segment carries its own public key and
    ``verify_offer`` checks its signature with it: one written by someone else with their own
    key would pass there, not here."""
    heads = {
        int(size): bytes(root)
        for size, root in db.execute("SELECT tree_size, root_hash FROM tree_heads")
    }
    common = 0
    for key in keys:
        _first, size = _segment_range(key)
        if size <= backup_size and size in heads:
            common = max(common, size)
    # The keys in force after the backup: its own, then those its rotations introduce (each
    # vouched for by the key before it, or recorded as lost), as the catch-up will find them.
    history = KeyHistory()
    if public_pem is not None:
        history.start(fingerprint(public_pem), public_pem)
    for key in keys:
        first, size = _segment_range(key)
        if size < common:
            continue
        header, leaves = read_segment(offer.get(key))
        if size == common:
            if header.head.root_hash != heads[common]:
                raise RestoreRefused(
                    f"offer {offer.name}: segment {key} seals {size} leaves with another root "
                    "than the backup's head of the same size: this offer's journal is not the "
                    "backup's"
                )
            continue
        for index, leaf in enumerate(leaves, start=first):
            if index >= backup_size:
                if b'"type":"journal.key_rotated"' in leaf and public_pem is not None:
                    rotation = json.loads(leaf)
                    problem = history.apply(index, str(rotation["type"]), rotation["data"])
                    if problem is not None:
                        raise RestoreRefused(f"offer {offer.name}: segment {key}: {problem}")
                continue
            row = db.execute("SELECT leaf FROM events WHERE leaf_index = ?", (index,)).fetchone()
            if row is None or bytes(row[0]) != leaf:
                raise RestoreRefused(
                    f"offer {offer.name}: leaf {index} in segment {key} differs from the "
                    "backup's: this offer's journal is not the backup's"
                )
        in_force = history.key_for(size)
        if in_force is not None and fingerprint(header.head.public_key_pem) != (
            in_force.fingerprint
        ):
            raise RestoreRefused(
                f"offer {offer.name}: segment {key} is signed by a key that is neither the "
                "backup's nor one its rotations introduced: it is not replayed"
            )
    return common


# --------------------------------------------------------------------------- putting back


@dataclass(frozen=True)
class RestoreTargets:
    """Where a restore puts each part back (from the settings of the restored SAE)."""

    data_dir: Path
    database: Path | None
    offers_file: Path | None

    @classmethod
    def of(cls, settings: Settings, *, offers_file: Path | None) -> RestoreTargets:
        database = sqlite_file(settings.db_url)
        return cls(settings.data_dir, Path(database) if database else None, offers_file)


@dataclass
class PutBack:
    """What a restore wrote, and what it renamed aside (``(old path, new path)``)."""

    written: list[Path] = field(default_factory=list)
    moved_aside: list[tuple[Path, Path]] = field(default_factory=list)


def _placements(backup: CheckedBackup, targets: RestoreTargets) -> list[tuple[Path, Path]]:
    """``(file in the backup, where it goes)`` for the keys, the TSA material, the offers file."""
    out = []
    for entry in backup.manifest["files"]:
        rel, role = str(entry["path"]), str(entry["role"])
        source = backup.path / rel
        if role in ("signing_key", "key"):
            out.append((source, targets.data_dir / "keys" / source.name))
        elif role in ("tsa_key", "tsa"):
            out.append((source, targets.data_dir / "tsa" / source.name))
        elif role == "offers_file" and targets.offers_file is not None:
            out.append((source, targets.offers_file))
    return out


def conflicts(backup: CheckedBackup, targets: RestoreTargets) -> list[Path]:
    """What the restore would replace: a catalogue (or a WAL left beside one), keys, TSA
    material or an offers file that differ from the backup's. Identical files are no
    conflict: a data directory that lost only its catalogue is restored without ``--force``."""
    found: list[Path] = []
    if backup.database is not None:
        if targets.database is None:
            raise RestoreRefused(
                "the configured catalogue is not a SQLite file: a backup of the embedded "
                f"catalogue cannot be restored into it ({PG_PROCEDURE})"
            )
        for path in _database_files(targets.database):
            if path.exists() and (path != targets.database or path.stat().st_size > 0):
                found.append(path)
    for source, target in _placements(backup, targets):
        if target.exists() and target.read_bytes() != source.read_bytes():
            found.append(target)
    return found


def _refuse_conflicts(backup: CheckedBackup, targets: RestoreTargets, *, force: bool) -> list[Path]:
    found = conflicts(backup, targets)
    if found and not force:
        raise RestoreRefused(
            "the target already holds a catalogue or keys that differ from the backup's; "
            "nothing was changed (--force moves them aside, never deletes them)",
            problems=[str(p) for p in found],
        )
    return found


def _database_files(database: Path) -> list[Path]:
    # A WAL beside a catalogue put back would be replayed into it by SQLite: it goes aside too.
    return [database, Path(f"{database}-wal"), Path(f"{database}-shm"), Path(f"{database}-journal")]


def put_back(
    backup: CheckedBackup, targets: RestoreTargets, *, force: bool, now: dt.datetime | None = None
) -> PutBack:
    """Put the backup's catalogue, keys, TSA material and offers file in place.

    Refused (:class:`RestoreRefused`, naming them) when something would be replaced, unless
    ``force``: then each is renamed ``<name>.replaced-by-restore-<time>`` in its own
    directory (the same file system: an atomic rename, nothing copied, nothing deleted);
    the keys and TSA directories go aside whole when one of their files differs.
    """
    found = _refuse_conflicts(backup, targets, force=force)
    done = PutBack()
    try:
        _put_back(backup, targets, found, done, now or dt.datetime.now(dt.UTC))
    except OSError as exc:
        raise RestoreFailed(
            f"the restore stopped ({type(exc).__name__}: {exc.strerror or exc}): what it had "
            "set aside and written is listed; nothing was deleted",
            problems=[f"moved aside: {old} -> {new}" for old, new in done.moved_aside]
            + [f"written: {path}" for path in done.written],
        ) from exc
    return done


def _put_back(
    backup: CheckedBackup,
    targets: RestoreTargets,
    found: list[Path],
    done: PutBack,
    now: dt.datetime,
) -> None:
    suffix = f".replaced-by-restore-{_stamp(now)}"
    aside: set[Path] = set()
    for path in found:
        # A key that differs puts its whole directory aside: a key never sits beside another
        # key's certificate.
        key_dirs = (targets.data_dir / "keys", targets.data_dir / "tsa")
        whole = path.parent if path.parent in key_dirs else path
        if whole in aside:
            continue
        aside.add(whole)
        if whole == targets.database:
            for companion in _database_files(whole)[1:]:
                if companion.exists() and companion not in aside:
                    aside.add(companion)
                    done.moved_aside.append(_rename_aside(companion, suffix))
        done.moved_aside.append(_rename_aside(whole, suffix))
    targets.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if backup.database is not None and targets.database is not None:
        _place(backup.database, targets.database)
        done.written.append(targets.database)
    for source, target in _placements(backup, targets):
        if target.exists():
            continue  # identical (checked above), or its directory was moved aside
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _place(source, target)
        done.written.append(target)


def _rename_aside(path: Path, suffix: str) -> tuple[Path, Path]:
    # os.rename replaces an existing file: a name already taken (two restores within one
    # second) gets a number, so that nothing set aside before is ever lost.
    new, n = path.with_name(path.name + suffix), 1
    while new.exists() or new.is_symlink():
        n += 1
        new = path.with_name(f"{path.name}{suffix}-{n}")
    os.rename(path, new)
    fsync_directory(path.parent)
    return path, new


def _place(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (0600) under a temporary name, synced, then renamed."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.restoring-", dir=target.parent)
    try:
        with open(source, "rb") as src:
            for chunk in iter(lambda: src.read(1024 * 1024), b""):
                write_all(fd, chunk)
        os.fsync(fd)
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    if target.exists():  # raced: never replace what appeared meanwhile
        os.unlink(tmp)
        raise RestoreRefused(f"{target} appeared during the restore; nothing was replaced")
    os.rename(tmp, target)
    fsync_directory(target.parent)


# --------------------------------------------------------------------------- catching up


@dataclass(frozen=True)
class CatchUpCounts:
    """What the catch-up replayed from the offer."""

    leaves: int = 0
    transfers: int = 0
    #: Heads sealed after the copy over leaves the backup held, recorded from their segments.
    heads: int = 0


def catch_up(
    sessions: sessionmaker[Session],
    offer: StorageOffer,
    plan: CatchUpPlan,
    *,
    keys: JournalKeys,
    settings: Settings,
) -> CatchUpCounts:
    """Replay from ``offer`` what happened after the backup, with the rebuild's own replay
    starting at the backup's tree size (the restore has no replay engine of its own)."""
    if not plan.needed:
        return CatchUpCounts()
    from sae.recovery.rebuild import replay_journal  # the rebuild imports nothing of this

    result = replay_journal(
        sessions, offer, start_leaf=plan.backup_tree_size, keys=keys, settings=settings
    )
    return CatchUpCounts(leaves=result.leaves, transfers=result.transfers, heads=result.heads)


def record_restore(
    session: Session,
    backup: CheckedBackup,
    plan: CatchUpPlan | None,
    counts: CatchUpCounts,
    *,
    actor: str,
) -> None:
    """Journal the restore (``catalog.restored``, with the counts replayed), in the caller's
    transaction, after the catch-up's leaves."""
    append_event(
        session,
        type=RESTORED,
        actor=actor,
        payload={
            "backup": backup.name,
            "backup_created_at": backup.manifest.get("created_at"),
            "backup_tree_size": backup.tree_size,
            "offer": plan.offer if plan is not None else None,
            "leaves_replayed": counts.leaves,
            "transfers_replayed": counts.transfers,
        },
    )


# --------------------------------------------------------------------------- the restore


@dataclass(frozen=True)
class Restore:
    """A backup put back, and what its catch-up must replay from ``offer``."""

    backup: CheckedBackup
    targets: RestoreTargets
    offer: str | None
    plan: CatchUpPlan | None
    put: PutBack


def restore_files(
    settings: Settings,
    src: Path,
    *,
    force: bool = False,
    offer_name: str | None = None,
    offers_file: Path | None = None,
) -> Restore:
    """Check the backup ``src`` and the offer the catch-up will read, then put the backup back.

    ``settings`` say where the catalogue and the data directory are (their offers file is not
    read: it may be what is being restored). ``offers_file``: where the backup's offers file
    goes (default: where it was when the backup was taken). ``offer_name``: the offer to catch
    up from (default: the first of the backup's strategy). Every check is made before anything
    is written: a refused restore changes nothing. The catch-up itself (:func:`catch_up`) needs
    the runtime of the restored catalogue, opened by the caller.
    """
    from sae.storage.offers import default_offers, parse_offers

    backup = check_backup(src)
    recorded = (backup.manifest.get("source") or {}).get("offers_file")
    if offers_file is None and backup.files("offers_file") and recorded:
        offers_file = Path(str(recorded))
    targets = RestoreTargets.of(settings, offers_file=offers_file)
    _refuse_conflicts(backup, targets, force=force)  # cheap: before the offer is read whole
    plan: CatchUpPlan | None = None
    name: str | None = None
    if backup.database is not None:
        own = backup.files("offers_file")
        offer_set = parse_offers(own[0]) if own else default_offers(settings)
        offer = offer_set.get(offer_name) if offer_name else offer_set.copies()[0]
        name = offer.name
        plan = plan_catch_up(backup, offer)
    put = put_back(backup, targets, force=force)
    return Restore(backup, targets, name, plan, put)
