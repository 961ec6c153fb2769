"""Signed tree heads ("checkpoints") and SAE's journal signing key.

A checkpoint is the exact bytes of ``tree-head.json``: compact JSON with sorted keys
``origin``, ``root_hash`` (hex), ``timestamp`` (ISO 8601 UTC, SAE's clock) and ``tree_size``,
followed by one newline. Those bytes are what SAE signs (ECDSA P-256 / SHA-256, DER signature,
checkable with ``openssl dgst -sha256 -verify``) and what the TSA time-stamps (SHA-256 imprint).
The format is fixed so that a checkpoint can be re-derived from a head row and compared.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sae.fileio import publish_new_file
from sae.journal.errors import KeyFileMode, KeyMissing, SigningKeyError

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


class CheckpointFormatError(ValueError):
    """Bytes that are not a well-formed checkpoint."""


def format_time(value: dt.datetime) -> str:
    """ISO 8601 UTC with a ``Z`` (microseconds kept when present)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in a checkpoint")
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: log ``origin`` had ``tree_size`` leaves and ``root_hash`` at ``timestamp``."""

    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: dt.datetime

    def to_bytes(self) -> bytes:
        """The canonical bytes (what is signed and time-stamped)."""
        doc = {
            "origin": self.origin,
            "root_hash": self.root_hash.hex(),
            "timestamp": format_time(self.timestamp),
            "tree_size": self.tree_size,
        }
        return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """Parse canonical checkpoint bytes; anything else is refused."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointFormatError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict) or set(doc) != {
            "origin",
            "root_hash",
            "timestamp",
            "tree_size",
        }:
            raise CheckpointFormatError("keys must be origin, root_hash, timestamp, tree_size")
        size, root, stamp, origin = (
            doc["tree_size"],
            doc["root_hash"],
            doc["timestamp"],
            doc["origin"],
        )
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CheckpointFormatError("tree_size must be a non-negative integer")
        if not isinstance(root, str) or not re.fullmatch(r"[0-9a-f]{64}", root):
            raise CheckpointFormatError("root_hash must be 64 lowercase hex digits")
        if not isinstance(stamp, str) or not _TIMESTAMP.match(stamp):
            raise CheckpointFormatError("timestamp must be ISO 8601 UTC ending in Z")
        if not isinstance(origin, str) or not origin:
            raise CheckpointFormatError("origin must be a non-empty string")
        try:
            when = dt.datetime.fromisoformat(stamp)
        except ValueError as exc:
            raise CheckpointFormatError(f"timestamp: {exc}") from None
        cp = cls(origin, size, bytes.fromhex(root), when)
        if cp.to_bytes() != data:
            raise CheckpointFormatError("checkpoint bytes are not in canonical form")
        return cp


class SigningKey:
    """SAE's journal key (ECDSA P-256): signs checkpoints; its public half is published."""

    FILENAME = "journal-signing.key"

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise SigningKeyError("the journal signing key must be ECDSA P-256")
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key (tests, first start)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load_or_create(cls, directory: Path, *, create: bool = True) -> SigningKey:
        """Load ``directory/journal-signing.key``, creating it (mode 0600) on first start.

        ``create=False`` once the journal has pinned its key (:mod:`sae.journal.keys`): a
        missing file is then an error, never a fresh key that would sign a rewritten history.
        """
        path = directory / cls.FILENAME
        if not path.exists():
            if not create:
                raise KeyMissing(
                    f"the journal signing key {path} is missing, and the journal has pinned its "
                    "key: restore the file from a backup, or, if it is lost for good, run "
                    "`sae journal rotate-key --lost` (the journal then records an unvouched key "
                    "change)",
                    path=str(path),
                )
            directory.mkdir(parents=True, exist_ok=True)
            key = cls.generate()
            # Processes starting together each make one; the first published is everyone's.
            if publish_new_file(path, key.private_pem()):
                (directory / "journal-signing.pub.pem").write_bytes(key.public_pem)
                return key
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Load a private key file, refusing one whose mode lets others read it."""
        check_private_mode(path)
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningKeyError(f"cannot read the journal signing key {path}: {exc}") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise SigningKeyError(f"{path} is not an ECDSA key")
        return cls(loaded)

    def private_pem(self) -> bytes:
        """PKCS#8 PEM of the private key (written once, mode 0600)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM, as published and shipped in every bundle."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        """DER ECDSA-SHA256 signature of ``data``."""
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))


def check_private_mode(path: Path) -> None:
    """Refuse a private key file that group or others may access (mode wider than 0600)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise SigningKeyError(f"cannot read the key file {path}: {exc}") from None
    if mode & 0o077:
        raise KeyFileMode(
            f"the private key file {path} has mode {mode:04o}: others may read it; "
            f"run `chmod 600 {path}` (and check who could have copied it)",
            path=str(path),
            mode=f"{mode:04o}",
        )


def verify_signature(public_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Check an ECDSA-SHA256 signature made by :meth:`SigningKey.sign`."""
    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
