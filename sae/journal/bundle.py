"""Proof bundles: everything an auditor needs to check one object without trusting SAE.

The file list and JSON keys are fixed by INTERFACE.md ("Proof bundle"). :func:`build_bundle`
writes the zip; :func:`verify_bundle` checks one (``sae verify``). The stand-alone ``verify.py``
shipped inside (``verify_standalone.py``) is a second, independent implementation of the same
checks, and VERIFY.md gives the equivalent ``sha512sum`` / ``openssl`` commands.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sae.journal import merkle
from sae.journal.checkpoint import Checkpoint, CheckpointFormatError, verify_signature
from sae.journal.errors import TimestampInvalid
from sae.journal.note import (
    COSIGNATURE_V1,
    ED25519,
    Note,
    NoteError,
    Verifier,
    cosignature_message,
    parse_checkpoint,
    verify_cosignature,
)
from sae.journal.tsa import verify_response

BUNDLE_FILES = (
    "object.json",
    "leaf.bin",
    "inclusion.json",
    "tree-head.json",
    "tree-head.sig",
    "sae-signing-key.pem",
    "tree-head.tsr",
    "tsa-chain.pem",
    "VERIFY.md",
    "verify.py",
)

#: The witnessing files (present when the head has a checkpoint note): the note with the
#: archive's signature and every cosignature, the vkeys and quorum, the archive's note key as
#: PEM; then ``witness-N.pem`` and ``cosignature-N.msg`` per witness (N from 1, in
#: ``witnesses.json`` order), for openssl.
NOTE_FILE = "checkpoint.note"
WITNESSES_FILE = "witnesses.json"
LOG_KEY_FILE = "sae-note-key.pem"
NOTE_FILES = (NOTE_FILE, WITNESSES_FILE, LOG_KEY_FILE)
#: The option ``?consistent_with=`` of the bundle (issue #18 item 6): a later head's checkpoint
#: note (the archive's signature and every cosignature line) and the RFC 9162 consistency proof
#: from the bundle's head to it (the JSON of ``GET /api/v1/journal/consistency``). Only beside
#: ``checkpoint.note``: the later note is checked with the same keys and quorum.
LATER_NOTE_FILE = "consistency.note"
CONSISTENCY_FILE = "consistency.json"
CONSISTENCY_FILES = (LATER_NOTE_FILE, CONSISTENCY_FILE)
_NUMBERED = re.compile(r"^(witness-[1-9][0-9]{0,2}\.pem|cosignature-[1-9][0-9]{0,2}\.msg)$")

# Fixed timestamp for zip entries: the same proof gives byte-identical bundles.
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)

VERIFY_MD = """\
# Verifying this SAE proof bundle

This bundle proves that one archived object (described in `object.json`) was recorded in SAE's
journal, and that the journal's tree head covering it was signed by SAE and time-stamped by a
time-stamping authority (RFC 3161). Nothing here needs access to SAE. Run the commands in the
folder where you unzipped the bundle; `OBJECT_FILE` is your copy of the object.

## 1. The object is the one that was archived

    sha512sum OBJECT_FILE
    python3 -c 'import json; print(json.load(open("object.json"))["sha512"])'

The two digests must be identical. The journal leaf records the same digest for the same object,
at the same index, with the same description:

    python3 -c 'import json; o = json.load(open("object.json")); l = json.load(open("leaf.bin")); \
    d = {"unit_id": l["unit"], **{k: l["data"].get(k) for k in ("size", "title", "producer")}}; \
    print(l["sha512"][o["object_id"]] == o["sha512"], l["index"] == o["leaf_index"], \
    all(o[k] == v for k, v in d.items() if v is not None))'

must print `True True True`.

## 2. SAE signed the tree head

    openssl dgst -sha256 -verify sae-signing-key.pem -signature tree-head.sig tree-head.json

must print `Verified OK`. Compare `sae-signing-key.pem` with the key SAE publishes
(`GET /api/v1/journal/public-key`) or that you recorded earlier.

## 3. The time-stamping authority time-stamped exactly that tree head

    openssl ts -verify -in tree-head.tsr -data tree-head.json -CAfile tsa-chain.pem
    openssl verify -check_ss_sig -purpose timestampsign -CAfile tsa-chain.pem tsa-chain.pem
    openssl ts -reply -in tree-head.tsr -text | grep 'Time stamp'

must print `Verification: OK`, `tsa-chain.pem: OK` and the time. The trust anchor is the last
certificate of `tsa-chain.pem`; compare its fingerprint with the one your time-stamping
authority publishes:

    awk '/BEGIN CERT/{c=""} {c=c $0 "\\n"} /END CERT/{last=c} END{printf "%s", last}' \
      tsa-chain.pem | openssl x509 -noout -subject -fingerprint -sha256

## 4. The leaf is in the tree head (RFC 9162 inclusion proof)

Save these lines as `merkle.py` and run `python3 merkle.py` (standard library only):

```python
import hashlib, json
H = lambda b: hashlib.sha256(b).digest()
leaf = open("leaf.bin", "rb").read()
inc = json.load(open("inclusion.json"))
head = json.load(open("tree-head.json"))
fn, sn, r = inc["leaf_index"], inc["tree_size"] - 1, H(b"\\0" + leaf)
for p in map(bytes.fromhex, inc["audit_path"]):
    assert sn > 0, "audit path too long"
    if fn % 2 or fn == sn:
        r = H(b"\\1" + p + r)
        while fn % 2 == 0 and fn:
            fn, sn = fn >> 1, sn >> 1
    else:
        r = H(b"\\1" + r + p)
    fn, sn = fn >> 1, sn >> 1
assert sn == 0 and r.hex() == head["root_hash"], "NOT in the tree"
assert inc["tree_size"] == head["tree_size"], "tree size differs"
print("leaf", inc["leaf_index"], "is in the tree head: OK")
```

## 5. Witnesses co-signed the tree head (C2SP signed note, Ed25519)

When the bundle holds `checkpoint.note`, the same tree head is also a C2SP `tlog-checkpoint`
note: its text (origin, tree size, base64 root hash) is signed by SAE's note key, then
independent witnesses (for instance the departmental archives) added a `cosignature/v1` line
each, after checking that this head extends every head they had co-signed before.
`witnesses.json` names the witnesses (vkeys) and the quorum SAE declares. Compare the vkeys with
the ones the witnesses publish: that is what makes the proof independent of SAE's server.

The note's text, and SAE's signature over it (the last 64 bytes of its line):

    awk '/^$/{exit} {print}' checkpoint.note > checkpoint.txt
    ORIGIN=$(head -n 1 checkpoint.txt)
    grep "^— $ORIGIN " checkpoint.note | head -n 1 | cut -d' ' -f3 | base64 -d \\
      | tail -c 64 > note.sig
    openssl pkeyutl -verify -pubin -inkey sae-note-key.pem -rawin \\
      -in checkpoint.txt -sigfile note.sig

must print `Signature Verified Successfully`. Then for each witness N (1, 2, …) of
`witnesses.json` with a `cosignature-N.msg` file, NAME being its `name`:

    grep "^— NAME " checkpoint.note | head -n 1 | cut -d' ' -f3 | base64 -d \\
      | tail -c 64 > cosignature-N.sig
    openssl pkeyutl -verify -pubin -inkey witness-N.pem -rawin \\
      -in cosignature-N.msg -sigfile cosignature-N.sig
    tail -n +3 cosignature-N.msg | cmp - checkpoint.txt && head -n 2 cosignature-N.msg

must print `Signature Verified Successfully`, nothing from `cmp` (the witness signed this very
head), and `cosignature/v1` with the witness's time (`time <seconds since 1970>`). Count the
witnesses that pass: at least the `quorum` of `witnesses.json`.

## 6. A later head extends this one (when the bundle holds `consistency.note`)

A bundle asked for with `?consistent_with=` also carries a later head of the same journal:
`consistency.note` (its checkpoint note, signed by SAE's note key and co-signed by the
witnesses) and `consistency.json`, the RFC 9162 consistency proof from this bundle's head
(`first`, `first_root`) to that later head (`second`, `second_root`). It proves that the later
head extends this one: nothing recorded up to this bundle's head was removed or changed since.
`verify.py` checks the proof, the note's signature and its cosignatures (the quorum of
`witnesses.json`); `sae journal consistency OLD.zip THIS.zip` checks that this later head
extends the head of an earlier bundle OLD of the same size. By hand:

The later note's text, and SAE's signature over it:

    awk '/^$/{exit} {print}' consistency.note > consistency.txt
    ORIGIN=$(head -n 1 consistency.txt)
    grep "^— $ORIGIN " consistency.note | head -n 1 | cut -d' ' -f3 | base64 -d \\
      | tail -c 64 > consistency.sig
    openssl pkeyutl -verify -pubin -inkey sae-note-key.pem -rawin \\
      -in consistency.txt -sigfile consistency.sig

must print `Signature Verified Successfully`. Then for each witness N (1, 2, …) of
`witnesses.json`, NAME being its `name`: its cosignature's bytes 5 to 12 are the witness's time
(seconds since 1970, big-endian), from which the message it signed is rebuilt:

    grep "^— NAME " consistency.note | head -n 1 | cut -d' ' -f3 | base64 -d > later-N.bin
    T=$(head -c 12 later-N.bin | tail -c 8 | od -An -tx1 | tr -d ' \\n'); \\
      printf 'cosignature/v1\\ntime %d\\n' "$((16#$T))" | cat - consistency.txt > later-N.msg
    tail -c 64 later-N.bin > later-N.sig
    openssl pkeyutl -verify -pubin -inkey witness-N.pem -rawin \\
      -in later-N.msg -sigfile later-N.sig

must print `Signature Verified Successfully` for at least the `quorum` of `witnesses.json`.
Last, the consistency proof: save these lines as `consistency.py` and run
`python3 consistency.py` (standard library only; RFC 9162 section 2.1.4.2):

```python
import base64, hashlib, json
H = lambda b: hashlib.sha256(b).digest()
c, head = json.load(open("consistency.json")), json.load(open("tree-head.json"))
later = open("consistency.txt").read().splitlines()
m, n, old, new = c["first"], c["second"], c["first_root"], c["second_root"]
assert (m, old) == (head["tree_size"], head["root_hash"]), "not this bundle's head"
assert (n, new) == (int(later[1]), base64.b64decode(later[2]).hex()), "not the later head"
path = [bytes.fromhex(p) for p in c["proof"]]
assert 0 < m <= n and (m == n) == (not path), "no proof between these sizes"
fr = sr = bytes.fromhex(old)
if m < n:
    if m & (m - 1):
        fr = sr = path.pop(0)  # else the old root is the proof's first hash
    fn, sn = m - 1, n - 1
    while fn % 2:
        fn, sn = fn >> 1, sn >> 1
    for p in path:
        assert sn > 0, "proof too long"
        if fn % 2 or fn == sn:
            fr, sr = H(b"\\1" + p + fr), H(b"\\1" + p + sr)
            while fn % 2 == 0 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = H(b"\\1" + sr + p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "proof too short"
assert fr.hex() == old and sr.hex() == new, "NOT an extension"
print("the head of", n, "leaves extends this bundle's head of", m, "leaves: OK")
```

## All at once

    python3 verify.py . --object OBJECT_FILE [--witness VKEY]…

runs every check above (it needs the `cryptography` package) and exits 0 when all pass; each
`--witness VKEY` (a witness you trust) must have co-signed the head.

Leaf format, checkpoint format and trust model: SAE's documentation, `docs/journal.md`.
"""


def verify_py_source() -> bytes:
    """The stand-alone verifier shipped as ``verify.py``."""
    return (Path(__file__).with_name("verify_standalone.py")).read_bytes()


@dataclass(frozen=True)
class ProofMaterial:
    """What a bundle is made of (gathered by :mod:`sae.journal.service`)."""

    object_info: dict[str, Any]
    """``object_id, unit_id, size, sha512, title, producer, leaf_index``."""
    leaf: bytes
    leaf_index: int
    tree_size: int
    audit_path: list[bytes]
    checkpoint: bytes
    signature: bytes
    public_key_pem: bytes
    tsr: bytes
    tsa_chain_pem: bytes
    witnessing: NoteMaterial | None = None
    """The head's checkpoint note and the witnesses (None: a head sealed before notes)."""
    later: LaterHead | None = None
    """A later head and the consistency proof to it (``?consistent_with=``), or None."""


@dataclass(frozen=True)
class LaterHead:
    """A later head's checkpoint note (with its cosignatures) and the RFC 9162 consistency
    proof from the bundle's head to it."""

    note: bytes
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]

    def files(self) -> dict[str, bytes]:
        """``consistency.note`` and ``consistency.json``."""
        return {
            LATER_NOTE_FILE: self.note,
            CONSISTENCY_FILE: _json(
                {
                    "first": self.first,
                    "second": self.second,
                    "first_root": self.first_root.hex(),
                    "second_root": self.second_root.hex(),
                    "proof": [h.hex() for h in self.proof],
                }
            ),
        }


@dataclass(frozen=True)
class NoteMaterial:
    """What a bundle carries about witnessing: the head's checkpoint note (the archive's
    signature and every cosignature line stored), the archive's note vkey, the witnesses'
    vkeys and the quorum the archive declares (0 without ``SAE_WITNESSES_FILE``)."""

    note: bytes
    log_vkey: str
    witnesses: list[tuple[str, str]]
    """``(name, vkey)`` of each witness, in ``SAE_WITNESSES_FILE`` order."""
    quorum: int


def _json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def note_files(witnessing: NoteMaterial) -> dict[str, bytes]:
    """The witnessing files: ``checkpoint.note``, ``witnesses.json``, the Ed25519 public keys
    as PEM and each cosignature's signed message, for ``openssl pkeyutl -verify -rawin``."""
    note = Note.parse(witnessing.note)
    log = Verifier.parse(witnessing.log_vkey)
    files = {
        NOTE_FILE: witnessing.note,
        WITNESSES_FILE: _json(
            {
                "origin": log.name,
                "log_vkey": witnessing.log_vkey,
                "quorum": witnessing.quorum,
                "witnesses": [{"name": n, "vkey": v} for n, v in witnessing.witnesses],
            }
        ),
        LOG_KEY_FILE: _ed25519_pem(log.public_bytes),
    }
    for number, (_name, vkey) in enumerate(witnessing.witnesses, start=1):
        verifier = Verifier.parse(vkey)
        files[f"witness-{number}.pem"] = _ed25519_pem(verifier.public_bytes)
        for signature in note.signatures:
            if verifier.matches(signature) and len(signature.signature) == 72:
                stamp = int.from_bytes(signature.signature[:8], "big")
                files[f"cosignature-{number}.msg"] = cosignature_message(note.text, stamp)
                break
    return files


def _ed25519_pem(public: bytes) -> bytes:
    key = Ed25519PublicKey.from_public_bytes(public)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def bundle_files(material: ProofMaterial) -> dict[str, bytes]:
    """The bundle's files, by name."""
    extra = note_files(material.witnessing) if material.witnessing is not None else {}
    if material.later is not None:
        if material.witnessing is None:
            raise ValueError("a later head needs the bundle's own checkpoint note")
        extra |= material.later.files()
    return extra | {
        "object.json": _json(material.object_info),
        "leaf.bin": material.leaf,
        "inclusion.json": _json(
            {
                "leaf_index": material.leaf_index,
                "tree_size": material.tree_size,
                "audit_path": [h.hex() for h in material.audit_path],
            }
        ),
        "tree-head.json": material.checkpoint,
        "tree-head.sig": material.signature,
        "sae-signing-key.pem": material.public_key_pem,
        "tree-head.tsr": material.tsr,
        "tsa-chain.pem": material.tsa_chain_pem,
        "VERIFY.md": VERIFY_MD.encode(),
        "verify.py": verify_py_source(),
    }


def write_zip(files: dict[str, bytes]) -> bytes:
    """Zip ``files`` deterministically, in bundle order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files, key=lambda n: (n not in BUNDLE_FILES, _order(n), n)):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


def _order(name: str) -> int:
    if name in BUNDLE_FILES:
        return BUNDLE_FILES.index(name)
    if name in NOTE_FILES:
        return len(BUNDLE_FILES) + NOTE_FILES.index(name)
    if name in CONSISTENCY_FILES:
        return len(BUNDLE_FILES) + len(NOTE_FILES) + CONSISTENCY_FILES.index(name)
    return len(BUNDLE_FILES) + len(NOTE_FILES) + len(CONSISTENCY_FILES)


def build_bundle(material: ProofMaterial) -> bytes:
    """The proof bundle (zip bytes)."""
    return write_zip(bundle_files(material))


def read_zip(data: bytes) -> dict[str, bytes]:
    """Read a bundle zip into ``{name: bytes}``; refuse duplicates and paths."""
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.filename in files or "/" in info.filename or "\\" in info.filename:
                raise ValueError(f"unexpected entry {info.filename!r}")
            files[info.filename] = zf.read(info)
    return files


@dataclass
class BundleReport:
    """The outcome of :func:`verify_bundle`: passed checks, and the first failure if any."""

    passed: list[tuple[str, str]] = field(default_factory=list)
    failure: tuple[str, str] | None = None

    @property
    def valid(self) -> bool:
        """True when every check passed."""
        return self.failure is None


def _canonical_pem(pem: bytes) -> bool:
    """True when ``pem`` is exactly one public key as SAE writes it (no stray bytes)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except Exception:  # any unreadable key is simply not canonical
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_bytes(serialization.Encoding.PEM, spki) == pem


def _leaf_described(leaf: dict[str, Any]) -> dict[str, Any]:
    """What an ingest leaf says about its object, beyond the digest (see docs/journal.md)."""
    data = leaf.get("data") if isinstance(leaf.get("data"), dict) else {}
    assert isinstance(data, dict)
    return {
        "unit_id": leaf.get("unit"),
        "size": data.get("size"),
        "title": data.get("title"),
        "producer": data.get("producer"),
    }


class _Fail(Exception):
    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


def verify_bundle(
    data: bytes,
    *,
    content: bytes | None = None,
    tsa_root_pem: bytes | None = None,
    witnesses: Sequence[str] = (),
) -> BundleReport:
    """Check a proof bundle (zip bytes), optionally against the object's ``content``.

    ``tsa_root_pem`` pins the TSA trust anchor (the root the auditor trusts); without it the
    bundle's own root is used and its fingerprint reported, to be compared by the auditor.
    ``witnesses`` are vkeys the auditor trusts: each must have co-signed the bundle's head
    (beyond the quorum the archive declares, which is always checked).
    """
    report = BundleReport()
    try:
        try:
            files = read_zip(data)
        except (ValueError, zipfile.BadZipFile) as exc:
            raise _Fail("files", f"not a readable bundle zip: {exc}") from None
        try:
            _verify_files(files, content, report)
            if tsa_root_pem is not None:
                _check_pinned_root(files, tsa_root_pem)
            _check_witnessing(files, witnesses, report)
            _check_later_head(files, witnesses, report)
        except _Fail:
            raise
        except Exception as exc:
            # A damaged file that slipped past the specific checks is still a failure, named.
            steps = (
                "files",
                "object",
                "merkle",
                "signature",
                "timestamp",
                "witnesses",
                "consistency",
            )
            step = steps[min(len(report.passed), len(steps) - 1)]
            raise _Fail(step, f"malformed bundle: {exc}") from None
    except _Fail as fail:
        report.failure = (fail.check, fail.message)
    return report


def _check_pinned_root(files: dict[str, bytes], tsa_root_pem: bytes) -> None:
    try:
        pinned = x509.load_pem_x509_certificates(tsa_root_pem)
    except ValueError as exc:
        raise _Fail("timestamp", f"the pinned TSA root is unreadable: {exc}") from None
    root = x509.load_pem_x509_certificates(files["tsa-chain.pem"])[-1]
    if root not in pinned:
        raise _Fail("timestamp", "the TSA chain does not end at the pinned root")


def _verify_files(files: dict[str, bytes], content: bytes | None, report: BundleReport) -> None:
    names = set(files)
    expected = set(BUNDLE_FILES) | (set(NOTE_FILES) if NOTE_FILE in names else set())
    if names & set(CONSISTENCY_FILES):
        # Both or neither, and only beside the head's own note (whose keys check the later one).
        expected |= set(CONSISTENCY_FILES) | set(NOTE_FILES)
    numbered = {n for n in names if NOTE_FILE in names and _NUMBERED.match(n)}
    if names - numbered != expected:
        missing = sorted(expected - names)
        extra = sorted(names - numbered - expected)
        raise _Fail("files", f"missing {missing}, unexpected {extra}")
    if files["VERIFY.md"] != VERIFY_MD.encode():
        raise _Fail("files", "VERIFY.md is not the text SAE ships")
    if files["verify.py"] != verify_py_source():
        raise _Fail("files", "verify.py is not the verifier SAE ships")
    report.passed.append(("files", "all files present; VERIFY.md and verify.py unaltered"))

    try:
        obj = json.loads(files["object.json"])
        leaf = json.loads(files["leaf.bin"])
        inc = json.loads(files["inclusion.json"])
        digest = str(obj["sha512"])
        object_id = str(obj["object_id"])
        index, size = int(inc["leaf_index"]), int(inc["tree_size"])
        path = [bytes.fromhex(h) for h in inc["audit_path"]]
        leaf_digests = leaf["sha512"]
        leaf_index = leaf["index"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _Fail("object", f"malformed object.json, leaf.bin or inclusion.json: {exc}") from None
    if content is not None and hashlib.sha512(content).hexdigest() != digest:
        raise _Fail("object", "the object's SHA-512 differs from object.json")
    if not isinstance(leaf_digests, dict) or leaf_digests.get(object_id) != digest:
        raise _Fail("object", "leaf.bin does not record this object's SHA-512")
    if not leaf_index == obj.get("leaf_index") == index:
        raise _Fail("object", "leaf index differs between leaf.bin, object.json, inclusion.json")
    if content is not None and len(content) != obj.get("size"):
        raise _Fail("object", "the object's size differs from object.json")
    for name, leaf_value in _leaf_described(leaf).items():
        if leaf_value is not None and obj.get(name) != leaf_value:
            raise _Fail("object", f"object.json's {name} differs from what leaf.bin records")
    report.passed.append(("object", f"object {object_id} recorded at leaf {index}"))

    try:
        head = Checkpoint.from_bytes(files["tree-head.json"])
    except CheckpointFormatError as exc:
        raise _Fail("merkle", f"tree-head.json: {exc}") from None
    if head.tree_size != size:
        raise _Fail("merkle", "inclusion.json's tree size is not the tree head's")
    if not merkle.verify_inclusion(
        index, size, merkle.leaf_hash(files["leaf.bin"]), path, head.root_hash
    ):
        raise _Fail("merkle", "the audit path does not lead to the tree head's root")
    report.passed.append(("merkle", f"leaf {index} is in the tree of {size} leaves"))

    if not _canonical_pem(files["sae-signing-key.pem"]):
        raise _Fail("signature", "sae-signing-key.pem is not one canonical PEM public key")
    if not verify_signature(
        files["sae-signing-key.pem"], files["tree-head.json"], files["tree-head.sig"]
    ):
        raise _Fail("signature", "tree-head.sig is not a signature of tree-head.json")
    report.passed.append(("signature", "tree head signed by sae-signing-key.pem"))

    try:
        chain = x509.load_pem_x509_certificates(files["tsa-chain.pem"])
    except ValueError as exc:
        raise _Fail("timestamp", f"tsa-chain.pem unreadable: {exc}") from None
    if (
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        != files["tsa-chain.pem"]
    ):
        raise _Fail("timestamp", "tsa-chain.pem is not in canonical PEM form")
    try:
        info = verify_response(
            files["tree-head.tsr"],
            digest=hashlib.sha256(files["tree-head.json"]).digest(),
            anchors=chain[-1:],
            extra_certs=chain,
        )
    except TimestampInvalid as exc:
        raise _Fail("timestamp", exc.detail) from None
    # The chain file must be exactly the path that verified, and hold every certificate the
    # token carries: nothing in the bundle is decoration that could be altered unnoticed.
    if info.chain != chain or any(c not in chain for c in info.token_certs):
        raise _Fail("timestamp", "tsa-chain.pem is not the token's certificate chain")
    try:
        chain[-1].verify_directly_issued_by(chain[-1])
    except (ValueError, TypeError, InvalidSignature):
        raise _Fail(
            "timestamp", "the last certificate of tsa-chain.pem is not a self-signed root"
        ) from None
    report.passed.append(
        (
            "timestamp",
            f"time-stamped {info.gen_time.isoformat()} by {info.signer.subject.rfc4514_string()}"
            f"; TSA root SHA-256 fingerprint "
            f"{chain[-1].fingerprint(hashes.SHA256()).hex(':').upper()}",
        )
    )


def _check_witnessing(
    files: dict[str, bytes], required: Sequence[str], report: BundleReport
) -> None:
    """The checkpoint note: the same head as tree-head.json, signed by the archive's note key,
    co-signed by at least the declared quorum of witnesses (and by every ``required`` vkey);
    the PEM keys and cosignature messages shipped for openssl are exactly those."""
    if NOTE_FILE not in files:
        if required:
            raise _Fail("witnesses", "the bundle carries no checkpoint note: nothing co-signed")
        return
    try:
        head = Checkpoint.from_bytes(files["tree-head.json"])
        note = Note.parse(files[NOTE_FILE])
        checkpoint = parse_checkpoint(note.text)
        doc = json.loads(files[WITNESSES_FILE])
        log = Verifier.parse(str(doc["log_vkey"]))
        declared = [Verifier.parse(str(w["vkey"])) for w in doc["witnesses"]]
        names = [str(w["name"]) for w in doc["witnesses"]]
        quorum = doc["quorum"]
    except (NoteError, CheckpointFormatError, ValueError, KeyError, TypeError) as exc:
        detail = exc.detail if isinstance(exc, NoteError) else str(exc)
        raise _Fail("witnesses", f"malformed checkpoint.note or witnesses.json: {detail}") from None
    if (checkpoint.origin, checkpoint.size, checkpoint.root_hash) != (
        head.origin,
        head.tree_size,
        head.root_hash,
    ):
        raise _Fail("witnesses", "checkpoint.note is not the head of tree-head.json")
    if log.key_type != ED25519 or log.name != head.origin or doc.get("origin") != head.origin:
        raise _Fail("witnesses", "witnesses.json's log_vkey is not an Ed25519 key of the origin")
    try:
        signed = note.verified_by([log])
    except NoteError:
        signed = []
    if not signed:
        raise _Fail("witnesses", "checkpoint.note is not signed by the archive's note key")
    if files[LOG_KEY_FILE] != _ed25519_pem(log.public_bytes):
        raise _Fail("witnesses", f"{LOG_KEY_FILE} is not the key of log_vkey")
    if [v.name for v in declared] != names or any(v.key_type != COSIGNATURE_V1 for v in declared):
        raise _Fail("witnesses", "witnesses.json: a vkey is not its witness's cosignature key")
    if not isinstance(quorum, int) or isinstance(quorum, bool) or not 0 <= quorum <= len(declared):
        raise _Fail("witnesses", f"witnesses.json: quorum {quorum!r} is out of range")
    shipped = {n for n in files if _NUMBERED.match(n)}
    cosigned: list[str] = []
    for number, verifier in enumerate(declared, start=1):
        if files.get(f"witness-{number}.pem") != _ed25519_pem(verifier.public_bytes):
            raise _Fail("witnesses", f"witness-{number}.pem is not the key of {verifier.name}")
        shipped.discard(f"witness-{number}.pem")
        stamp = _cosigned(note, verifier)
        if stamp is None:
            continue
        if files.get(f"cosignature-{number}.msg") != cosignature_message(note.text, stamp):
            raise _Fail("witnesses", f"cosignature-{number}.msg is not what {verifier.name} signed")
        shipped.discard(f"cosignature-{number}.msg")
        cosigned.append(verifier.name)
    if shipped:
        raise _Fail("witnesses", f"unexpected files {sorted(shipped)}")
    if len(cosigned) < quorum:
        raise _Fail(
            "witnesses",
            f"{len(cosigned)} of the {len(declared)} witnesses co-signed; the archive declares "
            f"a quorum of {quorum}",
        )
    for vkey in required:
        try:
            wanted = Verifier.parse(vkey)
        except NoteError as exc:
            raise _Fail("witnesses", f"--witness {vkey[:60]!r}: {exc.detail}") from None
        if _cosigned(note, wanted) is None:
            raise _Fail("witnesses", f"no cosignature by the required witness {wanted.name}")
        if wanted.name not in cosigned:
            cosigned.append(wanted.name)
    said = ", ".join(cosigned) if cosigned else "no witness"
    report.passed.append(
        (
            "witnesses",
            f"checkpoint.note signed by {log.name}, co-signed by {said} (quorum {quorum})",
        )
    )


def _cosigned(note: Note, verifier: Verifier) -> int | None:
    """The time of ``verifier``'s cosignature on ``note``; None when it has none. A line by
    that key that does not verify is a failure, not an absence."""
    lines = [s for s in note.signatures if verifier.matches(s)]
    if not lines:
        return None
    try:
        return verify_cosignature(verifier, note.text, lines[0].line)
    except NoteError:
        raise _Fail("witnesses", f"the cosignature of {verifier.name} does not verify") from None


def _check_later_head(
    files: dict[str, bytes], required: Sequence[str], report: BundleReport
) -> None:
    """``consistency.note`` is a later head of the same log, signed by the archive's note key
    and co-signed by the declared quorum (and every ``required`` vkey), and ``consistency.json``
    proves (RFC 9162) that it extends the bundle's head."""
    if LATER_NOTE_FILE not in files:
        return
    try:
        head = Checkpoint.from_bytes(files["tree-head.json"])
        note = Note.parse(files[LATER_NOTE_FILE])
        later = parse_checkpoint(note.text)
        witnesses = json.loads(files[WITNESSES_FILE])
        log = Verifier.parse(str(witnesses["log_vkey"]))
        declared = [Verifier.parse(str(w["vkey"])) for w in witnesses["witnesses"]]
        quorum = int(witnesses["quorum"])
        doc = json.loads(files[CONSISTENCY_FILE])
        first, second = doc["first"], doc["second"]
        first_root = bytes.fromhex(doc["first_root"])
        second_root = bytes.fromhex(doc["second_root"])
        proof = [bytes.fromhex(h) for h in doc["proof"]]
    except (NoteError, CheckpointFormatError, ValueError, KeyError, TypeError) as exc:
        detail = exc.detail if isinstance(exc, NoteError) else str(exc)
        raise _Fail(
            "consistency", f"malformed consistency.note or consistency.json: {detail}"
        ) from None
    if later.origin != head.origin:
        raise _Fail("consistency", f"consistency.note is a head of another log ({later.origin})")
    try:
        signed = note.verified_by([log])
    except NoteError:
        signed = []
    if not signed:
        raise _Fail("consistency", "consistency.note is not signed by the archive's note key")
    cosigned = [v.name for v in declared if _later_cosigned(note, v) is not None]
    if len(cosigned) < quorum:
        raise _Fail(
            "consistency",
            f"consistency.note: {len(cosigned)} of the {len(declared)} witnesses co-signed; "
            f"the archive declares a quorum of {quorum}",
        )
    for vkey in required:
        wanted = Verifier.parse(vkey)  # already parsed by _check_witnessing
        if _later_cosigned(note, wanted) is None:
            raise _Fail(
                "consistency", f"consistency.note: no cosignature by the required {wanted.name}"
            )
    if (first, first_root) != (head.tree_size, head.root_hash) or (second, second_root) != (
        later.size,
        later.root_hash,
    ):
        raise _Fail(
            "consistency",
            "consistency.json is not between the bundle's head and consistency.note's",
        )
    if not head.tree_size <= later.size:
        raise _Fail("consistency", "consistency.note is smaller than the bundle's head")
    if not merkle.verify_consistency(
        head.tree_size, later.size, head.root_hash, later.root_hash, proof
    ):
        raise _Fail(
            "consistency",
            f"the proof does not lead from the bundle's head ({head.tree_size} leaves) to "
            f"consistency.note's ({later.size}): not an extension of this head",
        )
    said = ", ".join(cosigned) if cosigned else "no witness"
    report.passed.append(
        (
            "consistency",
            f"the head of {later.size} leaves (co-signed by {said}) extends this one of "
            f"{head.tree_size}: RFC 9162 proof checked",
        )
    )


def _later_cosigned(note: Note, verifier: Verifier) -> int | None:
    try:
        return _cosigned(note, verifier)
    except _Fail:
        raise _Fail(
            "consistency", f"consistency.note: the cosignature of {verifier.name} does not verify"
        ) from None
