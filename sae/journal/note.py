"""C2SP signed notes, checkpoints and cosignatures (a stand-alone library: no database, no
settings).

The formats are those of c2sp.org — ``signed-note``, ``tlog-checkpoint``,
``tlog-cosignature`` — the ones Go's checksum database, Sigsum and the public witness network
speak, so that a witness run by someone else (or ours, ``sae witness``) can co-sign SAE's tree
heads and an auditor can check them with any implementation:

* a **note** is a text of newline-terminated lines, a blank line, then one or more signature
  lines ``— <key name> base64(key id (4 bytes) || signature)``;
* a **key id** is ``SHA-256(name || "\\n" || type || public key)[:4]``; type ``0x01`` is an
  Ed25519 signature over the text (the log's key, :class:`NoteKey`), type ``0x04`` a
  ``cosignature/v1`` (a witness's key, :class:`WitnessKey`): ``timestamp (u64 big-endian) ||
  Ed25519("cosignature/v1\\ntime <t>\\n" || text)``;
* a **vkey** (verifier key) is ``<name>+<key id hex>+base64(type || public key)``;
* a **checkpoint** is a note whose text is the origin, the tree size in decimal, the base64 root
  hash, then optional extension lines.

Errors (each with a stable code, HTTP status in brackets)::

    NoteError                 note.invalid (400)
    ├── MalformedNote         note.malformed: bytes that are not a signed note
    ├── InvalidKeyName        note.key_name: empty, or holds a space or a plus
    ├── MalformedVerifierKey  note.vkey: not <name>+<hex id>+<base64 key>, or its id is wrong
    ├── UnsupportedKeyType    note.key_type: a signature type other than 0x01 and 0x04
    ├── MalformedCheckpoint   note.checkpoint: a note text that is not a tlog-checkpoint
    ├── AmbiguousVerifiers    note.ambiguous_verifiers: two keys share a name and key id
    ├── SignatureInvalid      note.signature_invalid (403): a known key's signature fails
    ├── NoteUnverified        note.unverified (403): no signature by a known key
    └── CosignatureInvalid    note.cosignature_invalid (403): a cosignature does not verify
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from sae.errors import SAEError

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "AmbiguousVerifiers",
    "Checkpoint",
    "CosignatureInvalid",
    "InvalidKeyName",
    "MalformedCheckpoint",
    "MalformedNote",
    "MalformedVerifierKey",
    "Note",
    "NoteError",
    "NoteKey",
    "NoteUnverified",
    "Signature",
    "SignatureInvalid",
    "UnsupportedKeyType",
    "Verifier",
    "WitnessKey",
    "checkpoint_text",
    "cosignature_message",
    "key_id",
    "parse_checkpoint",
    "verify_cosignature",
]

#: Signature type of an Ed25519 note signature (signed-note).
ED25519 = 0x01
#: Signature type of a timestamped Ed25519 checkpoint cosignature (tlog-cosignature v1).
COSIGNATURE_V1 = 0x04

#: Signatures read from one note at most. The spec asks verifiers to accept at least 16; Go's
#: implementation stops at 100, and so do we, so that a note cannot make us verify forever.
MAX_SIGNATURES = 100
#: Bytes of one note at most (text and signatures): a checkpoint is about 100 bytes and an
#: Ed25519 signature line about 100 more; a megabyte leaves room for post-quantum signatures.
MAX_NOTE_BYTES = 1 << 20

#: A cosignature's timestamp is a u64 that must not exceed 2^63 - 1 (tlog-cosignature).
MAX_TIMESTAMP = (1 << 63) - 1

_DASH = "\u2014 "  # em dash and space: the start of every signature line
_ED25519_PUBLIC = 32
_ED25519_SIGNATURE = 64


# --- errors ---------------------------------------------------------------------------------


class NoteError(SAEError):
    """Something that is not a valid note, key, checkpoint or signature."""

    code = "note.invalid"
    status = 400
    title = "Invalid signed note"


class MalformedNote(NoteError):
    code = "note.malformed"
    title = "Malformed signed note"


class InvalidKeyName(NoteError):
    code = "note.key_name"
    title = "Invalid key name"


class MalformedVerifierKey(NoteError):
    code = "note.vkey"
    title = "Malformed verifier key"


class UnsupportedKeyType(NoteError):
    code = "note.key_type"
    title = "Unsupported signature type"


class MalformedCheckpoint(NoteError):
    code = "note.checkpoint"
    title = "Malformed checkpoint"


class AmbiguousVerifiers(NoteError):
    code = "note.ambiguous_verifiers"
    title = "Ambiguous verifier keys"


class SignatureInvalid(NoteError):
    """A signature line names a known key (name and key id) but does not verify: per
    signed-note the whole note is then rejected, and a witness answers 403."""

    code = "note.signature_invalid"
    status = 403
    title = "Invalid note signature"


class NoteUnverified(NoteError):
    code = "note.unverified"
    status = 403
    title = "No signature by a known key"


class CosignatureInvalid(NoteError):
    code = "note.cosignature_invalid"
    status = 403
    title = "Invalid cosignature"


# --- names, key ids, base64 ----------------------------------------------------------------


def _check_name(name: str) -> str:
    # signed-note: non-empty, no Unicode space, no plus; and, being part of a note, no control
    # character either.
    if not name:
        raise InvalidKeyName("a key name must not be empty")
    if "+" in name:
        raise InvalidKeyName(f"key name {name!r} holds a plus (U+002B)")
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in name):
        raise InvalidKeyName(f"key name {name!r} holds a space or a control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyName(f"key name {name!r} is not valid UTF-8") from None
    return name


def key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """The 4-byte key id: ``SHA-256(name || 0x0A || type || public key)[:4]``."""
    data = name.encode("utf-8") + b"\n" + bytes([key_type]) + public_key
    return hashlib.sha256(data).digest()[:4]


def _b64decode(text: str, what: str, error: type[NoteError]) -> bytes:
    """Strict standard base64 (RFC 4648 §4, padded): anything else is refused, including the
    non-canonical encodings a lenient decoder would accept, so one value has one spelling."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise error(f"{what} is not base64: {text[:80]!r}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"{what} is not canonical base64: {text[:80]!r}")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_text(text: str) -> None:
    """A note text: newline-terminated lines, no control character but newline."""
    if not text.endswith("\n"):
        raise MalformedNote("a note text must end with a newline")
    _check_characters(text)


def _check_characters(text: str) -> None:
    for i, c in enumerate(text):
        if ord(c) < 0x20 and c != "\n":
            raise MalformedNote(f"control character U+{ord(c):04X} at offset {i}")
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise MalformedNote(f"lone surrogate at offset {i} (not UTF-8)")


# --- signatures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """One signature line: the key's name, its 4-byte id and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def line(self) -> str:
        """The signature line, newline included."""
        return f"{_DASH}{self.name} {_b64(self.key_id + self.signature)}\n"

    @classmethod
    def parse(cls, line: str) -> Signature:
        """Read one signature line (with or without its final newline)."""
        body = line[:-1] if line.endswith("\n") else line
        if "\n" in body:
            raise MalformedNote("a signature line holds a newline")
        if not body.startswith(_DASH):
            raise MalformedNote(f"a signature line must start with '— ': {body[:80]!r}")
        name, sep, encoded = body[len(_DASH) :].partition(" ")
        if not sep:
            raise MalformedNote(f"a signature line has no signature after its key name: {name!r}")
        try:
            _check_name(name)
        except InvalidKeyName as exc:
            raise MalformedNote(f"signature line: {exc.detail}") from None
        raw = _b64decode(encoded, f"the signature of {name!r}", MalformedNote)
        if len(raw) < 5:
            raise MalformedNote(f"the signature of {name!r} is shorter than a key id and a byte")
        return cls(name, raw[:4], raw[4:])


# --- verifiers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verifier:
    """A public key that checks note signatures: type 0x01 (a log's Ed25519 key) or 0x04 (a
    witness's cosignature/v1 key)."""

    name: str
    key_id: bytes
    key_type: int
    public_bytes: bytes

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read a vkey ``<name>+<key id hex>+<base64(type || public key)>``."""
        vkey = vkey.strip()
        # The name holds no plus and the id is hex: the first two pluses split; the base64 key
        # may hold more.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise MalformedVerifierKey(
                f"a vkey is <name>+<key id hex>+<base64 key>, three parts; got {len(parts)}: "
                f"{vkey[:120]!r}"
            )
        name, id_hex, encoded = parts
        try:
            _check_name(name)
        except InvalidKeyName as exc:
            raise MalformedVerifierKey(f"vkey: {exc.detail}") from None
        if len(id_hex) != 8 or id_hex != id_hex.lower():
            raise MalformedVerifierKey(f"vkey key id must be 8 lowercase hex digits: {id_hex!r}")
        try:
            claimed = bytes.fromhex(id_hex)
        except ValueError:
            raise MalformedVerifierKey(f"vkey key id is not hex: {id_hex!r}") from None
        raw = _b64decode(encoded, "the vkey's key", MalformedVerifierKey)
        if not raw:
            raise MalformedVerifierKey("the vkey's key is empty")
        key_type, public = raw[0], raw[1:]
        if key_type not in (ED25519, COSIGNATURE_V1):
            raise UnsupportedKeyType(
                f"vkey {name!r}: signature type 0x{key_type:02x} is not supported "
                "(0x01 Ed25519, 0x04 cosignature/v1)"
            )
        if len(public) != _ED25519_PUBLIC:
            raise MalformedVerifierKey(
                f"vkey {name!r}: an Ed25519 public key is 32 bytes, not {len(public)}"
            )
        expected = key_id(name, key_type, public)
        if claimed != expected:
            raise MalformedVerifierKey(
                f"vkey {name!r}: key id {id_hex} does not match its name and key "
                f"(expected {expected.hex()})"
            )
        return cls(name, expected, key_type, public)

    @classmethod
    def from_public_bytes(cls, name: str, key_type: int, public: bytes) -> Verifier:
        """The verifier of an Ed25519 public key under ``name`` for ``key_type``."""
        _check_name(name)
        if key_type not in (ED25519, COSIGNATURE_V1):
            raise UnsupportedKeyType(f"signature type 0x{key_type:02x} is not supported")
        if len(public) != _ED25519_PUBLIC:
            raise MalformedVerifierKey(f"an Ed25519 public key is 32 bytes, not {len(public)}")
        return cls(name, key_id(name, key_type, public), key_type, public)

    @property
    def vkey(self) -> str:
        """The vkey string, as :meth:`parse` reads it."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.key_type]) + self.public_bytes)}"

    def matches(self, signature: Signature) -> bool:
        """Whether a signature line names this key (name and key id both)."""
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` (the bytes after the key id) signs the note text ``text``.

        For a cosignature/v1 key the signature is the 8-byte timestamp then the Ed25519
        signature over ``cosignature/v1\\ntime <t>\\n`` + text.
        """
        public = Ed25519PublicKey.from_public_bytes(self.public_bytes)
        if self.key_type == COSIGNATURE_V1:
            if len(signature) != 8 + _ED25519_SIGNATURE:
                return False
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp > MAX_TIMESTAMP:
                return False
            message, signature = cosignature_message(text, timestamp), signature[8:]
        else:
            if len(signature) != _ED25519_SIGNATURE:
                return False
            message = text.encode("utf-8")
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: ``cosignature/v1\\ntime <t>\\n`` then the checkpoint's
    whole note text (its final newline included, no signature line)."""
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


# --- private keys ----------------------------------------------------------------------------


class _Ed25519Key:
    """An Ed25519 private key with a name, for one signature type."""

    key_type: ClassVar[int]

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._private = private
        self.public_bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(name, self.key_type, self.public_bytes)

    @classmethod
    def generate(cls, name: str) -> Self:
        """A new random key named ``name``."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, name: str, raw: bytes) -> Self:
        """The key whose 32-byte Ed25519 seed (RFC 8032 private key) is ``raw``."""
        if len(raw) != 32:
            raise NoteError(f"an Ed25519 private key is 32 bytes, not {len(raw)}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The 32-byte Ed25519 seed; keep it secret (file mode 0600)."""
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.key_type, self.public_bytes)

    @property
    def vkey(self) -> str:
        """``<name>+<key id hex>+<base64(type || public key)>``."""
        return self.verifier.vkey

    def __repr__(self) -> str:  # never the private key
        return f"{type(self).__name__}({self.vkey!r})"


class NoteKey(_Ed25519Key):
    """A log's note key: Ed25519 signatures (type 0x01) over the note text."""

    key_type = ED25519

    def signature(self, text: str) -> Signature:
        _check_text(text)
        return Signature(self.name, self.key_id, self._private.sign(text.encode("utf-8")))

    def sign(self, text: str) -> str:
        """The signature line ``— <name> base64(key id || Ed25519(text))\\n``."""
        return self.signature(text).line


class WitnessKey(_Ed25519Key):
    """A witness's key: timestamped cosignatures (tlog-cosignature v1, type 0x04).

    The signed message does not name the witness, so one key must serve one witness name only.
    """

    key_type = COSIGNATURE_V1

    def cosignature(self, checkpoint_text: str, timestamp: int | None = None) -> Signature:
        _check_text(checkpoint_text)
        if timestamp is None:
            timestamp = int(time.time())
        # tlog-witness: a witness's cosignature never omits its time (0); the u64 stays
        # below 2^63.
        if not 0 < timestamp <= MAX_TIMESTAMP:
            raise NoteError(f"a cosignature timestamp must be in 1..2^63-1, not {timestamp}")
        sig = self._private.sign(cosignature_message(checkpoint_text, timestamp))
        return Signature(self.name, self.key_id, timestamp.to_bytes(8, "big") + sig)

    def cosign(self, checkpoint_text: str, timestamp: int | None = None) -> str:
        """The cosignature line over a checkpoint's text at ``timestamp`` (POSIX seconds; now
        by default)."""
        return self.cosignature(checkpoint_text, timestamp).line


def verify_cosignature(verifier: Verifier, checkpoint_text: str, line: str) -> int:
    """Check one cosignature line by ``verifier`` (a type 0x04 key) over a checkpoint's text;
    return its timestamp. Raises :class:`CosignatureInvalid` (or :class:`MalformedNote` for a
    line that is not a signature line)."""
    if verifier.key_type != COSIGNATURE_V1:
        raise CosignatureInvalid(
            f"{verifier.name}: a cosignature is checked with a type 0x04 key, "
            f"not 0x{verifier.key_type:02x}"
        )
    signature = Signature.parse(line)
    if not verifier.matches(signature):
        raise CosignatureInvalid(
            f"the cosignature is by {signature.name}+{signature.key_id.hex()}, "
            f"not {verifier.name}+{verifier.key_id.hex()}"
        )
    if len(signature.signature) != 8 + _ED25519_SIGNATURE:
        raise CosignatureInvalid(
            f"a cosignature/v1 is 4+8+64 bytes, not {4 + len(signature.signature)}"
        )
    timestamp = int.from_bytes(signature.signature[:8], "big")
    if timestamp == 0 or timestamp > MAX_TIMESTAMP:
        raise CosignatureInvalid(f"cosignature timestamp {timestamp} is out of range")
    if not verifier.verify(checkpoint_text, signature.signature):
        raise CosignatureInvalid(f"the cosignature by {verifier.name} does not verify")
    return timestamp


# --- notes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A signed note: its text (final newline included) and its signature lines."""

    text: str
    signatures: tuple[Signature, ...]

    @classmethod
    def parse(cls, data: bytes | str) -> Note:
        """Read a signed note; its signatures are not checked (see :meth:`verified_by`)."""
        if isinstance(data, str):
            try:
                data = data.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedNote("a note must be valid UTF-8") from None
        if len(data) > MAX_NOTE_BYTES:
            raise MalformedNote(f"a note is at most {MAX_NOTE_BYTES} bytes, not {len(data)}")
        try:
            message = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNote(f"a note must be valid UTF-8 (offset {exc.start})") from None
        _check_characters(message)
        # The text ends at the last blank line: the text may hold blank lines, signatures not.
        split = message.rfind("\n\n")
        if split < 0:
            raise MalformedNote("no blank line before the signatures")
        text, block = message[: split + 1], message[split + 2 :]
        if not block:
            raise MalformedNote("a note has at least one signature line")
        if not block.endswith("\n"):
            raise MalformedNote("the last signature line must end with a newline")
        lines = block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise MalformedNote(f"a note has at most {MAX_SIGNATURES} signatures")
        return cls(text, tuple(Signature.parse(line) for line in lines))

    @classmethod
    def sign(cls, text: str, *keys: NoteKey) -> Note:
        """The note of ``text`` signed by each key, in order."""
        _check_text(text)
        return cls(text, tuple(key.signature(text) for key in keys))

    def with_signatures(self, *lines: str | Signature) -> Note:
        """This note with more signature lines (e.g. cosignatures) after its own; a line
        already present is not repeated."""
        added = [s if isinstance(s, Signature) else Signature.parse(s) for s in lines]
        signatures = list(self.signatures)
        for s in added:
            if s not in signatures:
                signatures.append(s)
        if len(signatures) > MAX_SIGNATURES:
            raise MalformedNote(f"a note has at most {MAX_SIGNATURES} signatures")
        return Note(self.text, tuple(signatures))

    def encode(self) -> str:
        """The note as text: the text, a blank line, the signature lines."""
        return self.text + "\n" + "".join(s.line for s in self.signatures)

    def __bytes__(self) -> bytes:
        return self.encode().encode("utf-8")

    def verified_by(self, verifiers: Iterable[Verifier]) -> list[Verifier]:
        """The verifiers (of ``verifiers``, in their order) whose signature on this note verifies.

        Signatures by unknown keys — another name or another key id — are ignored, as
        signed-note requires. A signature by a known key that fails raises
        :class:`SignatureInvalid`: the note is then rejected whole. An empty answer means no
        known key signed it (:meth:`verify` makes that an error).
        """
        known: dict[tuple[str, bytes], Verifier] = {}
        for v in verifiers:
            other = known.setdefault((v.name, v.key_id), v)
            if other != v:
                raise AmbiguousVerifiers(f"two keys are named {v.name}+{v.key_id.hex()}")
        verified: set[tuple[str, bytes]] = set()
        for s in self.signatures:
            v_ = known.get((s.name, s.key_id))
            if v_ is None or (s.name, s.key_id) in verified:
                continue
            if not v_.verify(self.text, s.signature):
                raise SignatureInvalid(f"invalid signature for key {v_.name}+{v_.key_id.hex()}")
            verified.add((s.name, s.key_id))
        return [v for key, v in known.items() if key in verified]

    def verify(self, verifiers: Iterable[Verifier]) -> list[Verifier]:
        """:meth:`verified_by`, raising :class:`NoteUnverified` when no known key signed."""
        verifiers = list(verifiers)
        verified = self.verified_by(verifiers)
        if not verified:
            names = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers) or "none"
            raise NoteUnverified(f"no signature by a known key (known: {names})")
        return verified


# --- checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The text of a tlog-checkpoint: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return checkpoint_text(self.origin, self.size, self.root_hash, self.extensions)


def checkpoint_text(
    origin: str, size: int, root_hash: bytes, extensions: Sequence[str] = ()
) -> str:
    """``<origin>\\n<size>\\n<base64 root>\\n`` then one line per extension."""
    if not origin or "\n" in origin:
        raise MalformedCheckpoint(f"the origin must be one non-empty line: {origin!r}")
    if not 0 <= size <= MAX_TIMESTAMP:
        raise MalformedCheckpoint(f"tree size out of range: {size}")
    if len(root_hash) != 32:
        raise MalformedCheckpoint(f"a root hash is 32 bytes (SHA-256), not {len(root_hash)}")
    for line in extensions:
        if not line or "\n" in line:
            raise MalformedCheckpoint(f"an extension line must be one non-empty line: {line!r}")
    text = "".join(f"{line}\n" for line in (origin, str(size), _b64(root_hash), *extensions))
    try:
        _check_text(text)
    except MalformedNote as exc:
        raise MalformedCheckpoint(exc.detail) from None
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint's note text (the text only: see :meth:`Note.parse` for the note)."""
    try:
        _check_text(text)
    except MalformedNote as exc:
        raise MalformedCheckpoint(exc.detail) from None
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint(
            f"a checkpoint has at least three lines (origin, size, root hash), not {len(lines)}"
        )
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise MalformedCheckpoint("the origin line is empty")
    if not size_line.isascii() or not size_line.isdigit():
        raise MalformedCheckpoint(f"the tree size is not a decimal number: {size_line!r}")
    if size_line != "0" and size_line.startswith("0"):
        raise MalformedCheckpoint(f"the tree size has a leading zero: {size_line!r}")
    if len(size_line) > 19 or int(size_line) > MAX_TIMESTAMP:
        raise MalformedCheckpoint(f"the tree size is too large: {size_line[:40]!r}")
    root = _b64decode(root_line, "the root hash", MalformedCheckpoint)
    if len(root) != 32:
        raise MalformedCheckpoint(f"the root hash is 32 bytes (SHA-256), not {len(root)}")
    for line in extensions:
        if not line:
            raise MalformedCheckpoint("an extension line is empty")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))
