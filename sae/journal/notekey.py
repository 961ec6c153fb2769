"""The archive's Ed25519 note key: signs each head's C2SP ``tlog-checkpoint`` note.

Beside the ECDSA signing key (``sae.journal.keys``): the JSON head keeps its ECDSA signature
and RFC 3161 token (what ``openssl`` checks), the note is what witnesses co-sign. The key lives
in ``$SAE_DATA_DIR/keys/journal-note.key`` (the 32 private bytes, mode 0600), created on first
start; its name in the note's signature line is ``SAE_ORIGIN``, the log's origin.
"""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from sae.config import Settings
from sae.fileio import publish_new_file
from sae.journal.errors import SigningKeyError
from sae.journal.note import NoteError, NoteKey

NOTE_KEY_FILE = "journal-note.key"

_lock = threading.Lock()
_cache: dict[tuple[str, str, int, int, int], NoteKey] = {}


def note_key_path(settings: Settings) -> Path:
    """Where the archive's note key is kept."""
    return settings.data_dir / "keys" / NOTE_KEY_FILE


def load_note_key(settings: Settings) -> NoteKey:
    """The archive's note key, named ``SAE_ORIGIN``; created (0600) on first start.

    A key file readable by others is refused: whoever reads it can sign checkpoints that
    witnesses would take for the archive's.
    """
    path = note_key_path(settings)
    with _lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = NoteKey.generate(settings.origin)
            # Processes starting together each make one; the first published is everyone's.
            publish_new_file(path, fresh.private_bytes())
        try:
            info = path.stat()
        except OSError as exc:
            raise SigningKeyError(f"cannot read the journal note key {path}: {exc}") from None
        # The file's identity is part of the cache key: a restore (or an operator) that puts
        # another key file in place is seen by the next call of the same process.
        cache_key = (str(path), settings.origin, info.st_ino, info.st_mtime_ns, info.st_size)
        cached = _cache.get(cache_key)
        if cached is not None:
            return cached
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"cannot read the journal note key {path}: {exc}") from None
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SigningKeyError(
                f"the journal note key {path} has mode {mode:04o}: it must be 0600"
            )
        try:
            key = NoteKey.from_private_bytes(settings.origin, raw)
        except (NoteError, ValueError) as exc:
            raise SigningKeyError(f"{path} is not an Ed25519 note key: {exc}") from None
        _cache[cache_key] = key
        return key


def forget_note_keys() -> None:
    """Drop the cached note keys: the next :func:`load_note_key` reads its file again."""
    with _lock:
        _cache.clear()
