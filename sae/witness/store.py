"""The witness's ``--data DIR``: its key, the logs it trusts, and per log the latest checkpoint it
co-signed. Nothing else: a witness shares no state with the archive it watches.

::

    DIR/witness.key          the Ed25519 seed and the witness's name (JSON, mode 0600)
    DIR/witness.vkey         its verifier key, type 0x04 (what the archive's operator pins)
    DIR/logs.json            {"logs": {origin: [log vkey, …]}}: the logs it accepts
    DIR/state/<sha256(origin) hex>.json   {"origin", "size", "root_hash" (base64),
                                          "checkpoint" (the co-signed note), "cosigned_at"}
    DIR/state/<sha256(origin) hex>.lock   held (flock) while a request checks and updates

Every file is replaced whole — written under a temporary name, fsynced, renamed over the old
one, the directory fsynced — so a crash at any instant leaves the old or the new file, never a
mix; and the state is durable before the cosignature leaves (see :mod:`sae.witness.service`).
A state file that cannot be read stops the witness rather than counting as "never co-signed":
that would let the log roll back.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae.fileio import fsync_directory, publish_new_file
from sae.journal.note import NoteError, Verifier, WitnessKey
from sae.witness.errors import WitnessDataError

KEY_FILE = "witness.key"
VKEY_FILE = "witness.vkey"
LOGS_FILE = "logs.json"
STATE_DIR = "state"


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` by ``data`` atomically and durably (temp file, fsync, rename, fsync of
    the directory)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


@dataclass(frozen=True)
class CosignedState:
    """The latest checkpoint the witness co-signed for one origin."""

    origin: str
    size: int
    root_hash: bytes
    checkpoint: str
    cosigned_at: int

    def to_json(self) -> bytes:
        doc = {
            "origin": self.origin,
            "size": self.size,
            "root_hash": base64.b64encode(self.root_hash).decode("ascii"),
            "checkpoint": self.checkpoint,
            "cosigned_at": self.cosigned_at,
        }
        return (json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


class WitnessStore:
    """One witness's data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # --- the key ------------------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    def create_key(self, name: str) -> WitnessKey:
        """Create the witness's key; refuse when one exists (a witness's key is its identity:
        replacing it silently would orphan every cosignature it gave)."""
        key = WitnessKey.generate(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / STATE_DIR).mkdir(exist_ok=True)
        doc = {"name": name, "ed25519_seed": base64.b64encode(key.private_bytes()).decode()}
        data = (json.dumps(doc) + "\n").encode()
        # Written whole under a temporary name, then linked: a crash never leaves half a key,
        # and an existing key is never overwritten.
        if not publish_new_file(self.key_path, data, 0o600):
            raise WitnessDataError(
                f"{self.key_path} exists: this directory already holds a witness key "
                "(remove it yourself to start a new witness)"
            )
        replace_file(self.directory / VKEY_FILE, (key.vkey + "\n").encode())
        return key

    def load_key(self) -> WitnessKey:
        """The witness's key; refused when missing, unreadable, or readable by others."""
        try:
            st = self.key_path.stat()
        except FileNotFoundError:
            raise WitnessDataError(
                f"{self.key_path} is missing: run `sae witness init --data {self.directory} "
                "--name NAME` first"
            ) from None
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise WitnessDataError(
                f"{self.key_path} has mode {stat.S_IMODE(st.st_mode):04o}: a private key must "
                "be readable by its owner only (chmod 600)"
            )
        try:
            doc = json.loads(self.key_path.read_text("utf-8"))
            seed = base64.b64decode(doc["ed25519_seed"], validate=True)
            return WitnessKey.from_private_bytes(str(doc["name"]), seed)
        except (OSError, ValueError, KeyError, TypeError, NoteError) as exc:
            raise WitnessDataError(f"{self.key_path} is unreadable: {exc}") from None

    # --- trusted logs -------------------------------------------------------------------------

    def trusted_logs(self) -> dict[str, list[Verifier]]:
        """The logs accepted, by origin, each with its note verifier keys."""
        path = self.directory / LOGS_FILE
        try:
            doc = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise WitnessDataError(f"{path} is unreadable: {exc}") from None
        try:
            return {
                origin: [Verifier.parse(vkey) for vkey in vkeys]
                for origin, vkeys in doc["logs"].items()
            }
        except (KeyError, TypeError, AttributeError, NoteError) as exc:
            raise WitnessDataError(f"{path} is malformed: {exc}") from None

    def trust(self, origin: str, verifier: Verifier) -> bool:
        """Accept checkpoints of ``origin`` signed by ``verifier`` (one more key for an origin
        already trusted, e.g. the log's next key). False if it was already trusted."""
        self.load_key()  # only an initialised directory
        logs = self.trusted_logs()
        keys = logs.setdefault(origin, [])
        if verifier in keys:
            return False
        keys.append(verifier)
        doc: dict[str, Any] = {"logs": {o: [v.vkey for v in vs] for o, vs in logs.items()}}
        data = (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        replace_file(self.directory / LOGS_FILE, data)
        return True

    # --- per-origin state ---------------------------------------------------------------------

    def _state_path(self, origin: str, suffix: str) -> Path:
        digest = hashlib.sha256(origin.encode("utf-8")).hexdigest()
        return self.directory / STATE_DIR / f"{digest}{suffix}"

    @contextlib.contextmanager
    def locked(self, origin: str) -> Iterator[None]:
        """Hold the origin's lock: one check-and-update at a time per log, across threads and
        processes (each ``open`` is its own lock owner for ``flock``)."""
        path = self._state_path(origin, ".lock")
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def state(self, origin: str) -> CosignedState | None:
        """The latest co-signed checkpoint of ``origin``, or None if it never co-signed one."""
        path = self._state_path(origin, ".json")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            state = CosignedState(
                origin=str(doc["origin"]),
                size=int(doc["size"]),
                root_hash=base64.b64decode(doc["root_hash"], validate=True),
                checkpoint=str(doc["checkpoint"]),
                cosigned_at=int(doc["cosigned_at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise WitnessDataError(f"{path} is corrupt: {exc}") from None
        if state.origin != origin or len(state.root_hash) != 32 or state.size < 0:
            raise WitnessDataError(f"{path} does not hold a valid state for {origin!r}")
        return state

    def save_state(self, state: CosignedState) -> None:
        """Make ``state`` the origin's record, durably (call with the origin's lock held)."""
        replace_file(self._state_path(state.origin, ".json"), state.to_json())
