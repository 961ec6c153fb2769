#!/usr/bin/env python3
"""Stand-alone verifier of an SAE proof bundle (shipped in every bundle as ``verify.py``).

Needs only Python 3.9+ and the ``cryptography`` package (42 or later); it does not trust, call
or import SAE.

    python3 verify.py BUNDLE.zip [--object FILE]     (or a directory holding the bundle's files)

Checks: the object's SHA-512 (when ``--object`` is given) equals ``object.json``; ``leaf.bin``
records that SHA-512 for that object at that leaf index; the RFC 9162 audit path leads from the
leaf to the root in ``tree-head.json``; SAE's signature on ``tree-head.json``; the RFC 3161
token: status granted, imprint = SHA-256(tree-head.json), CMS signature, ESS signing-certificate
binding, timeStamping EKU, and the chain in ``tsa-chain.pem`` up to its self-signed root (whose
fingerprint is printed: compare it with the one your TSA publishes). When the bundle carries
``checkpoint.note`` (C2SP signed note): it is the same head, signed by the archive's note key
(``witnesses.json``'s ``log_vkey``), and co-signed (``cosignature/v1``) by at least the quorum
of witnesses ``witnesses.json`` declares; each ``--witness VKEY`` given must have co-signed it
too. When the bundle also carries ``consistency.note`` and ``consistency.json`` (asked for with
``?consistent_with=``): that later head is signed by the same note key and co-signed by the same
quorum (and every ``--witness``), and the RFC 9162 consistency proof leads from the bundle's head
to it. Exit 0 valid, 1 invalid.

    python3 verify.py BUNDLE.zip --witness 'archives.departement.fr/witness+1a2b3c4d+BA…'
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import sys
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

FILES = (
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


class Invalid(Exception):
    """One check failed; the message says which and why."""


def _oid(dotted: str) -> bytes:
    """DER content octets of an OBJECT IDENTIFIER."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


DIGESTS: dict[bytes, Any] = {
    _oid("2.16.840.1.101.3.4.2.1"): hashes.SHA256,
    _oid("2.16.840.1.101.3.4.2.2"): hashes.SHA384,
    _oid("2.16.840.1.101.3.4.2.3"): hashes.SHA512,
}
SIGNATURE_DIGESTS: dict[bytes, Any] = {
    _oid("1.2.840.10045.4.3.2"): hashes.SHA256,  # ecdsa-with-SHA256
    _oid("1.2.840.10045.4.3.3"): hashes.SHA384,
    _oid("1.2.840.10045.4.3.4"): hashes.SHA512,
    _oid("1.2.840.113549.1.1.11"): hashes.SHA256,  # sha256WithRSAEncryption
    _oid("1.2.840.113549.1.1.12"): hashes.SHA384,
    _oid("1.2.840.113549.1.1.13"): hashes.SHA512,
}
RSA_ENCRYPTION = _oid("1.2.840.113549.1.1.1")
SHA256_OID = _oid("2.16.840.1.101.3.4.2.1")
SIGNED_DATA = _oid("1.2.840.113549.1.7.2")
TST_INFO = _oid("1.2.840.113549.1.9.16.1.4")
CONTENT_TYPE = _oid("1.2.840.113549.1.9.3")
MESSAGE_DIGEST = _oid("1.2.840.113549.1.9.4")
SIGNING_CERT = _oid("1.2.840.113549.1.9.16.2.12")
SIGNING_CERT_V2 = _oid("1.2.840.113549.1.9.16.2.47")

Node = tuple[int, bytes, bytes]  # (tag, content, whole encoding)


def _items(data: bytes) -> list[Node]:
    """The TLVs that make up ``data`` (DER, definite lengths only)."""
    out: list[Node] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated DER")
        tag, length, p = data[pos], data[pos + 1], pos + 2
        if length & 0x80:
            n = length & 0x7F
            if not 0 < n <= 4:
                raise ValueError("unsupported DER length")
            length, p = int.from_bytes(data[p : p + n], "big"), p + n
        if p + length > len(data):
            raise ValueError("truncated DER")
        out.append((tag, data[p : p + length], data[pos : p + length]))
        pos = p + length
    return out


def _hash(algo: Any, data: bytes) -> bytes:
    h = hashes.Hash(algo())
    h.update(data)
    return h.finalize()


def load_files(path: Path) -> dict[str, bytes]:
    """Read a bundle from a zip file or a directory."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def check_object(files: dict[str, bytes], content: bytes | None) -> str:
    """object.json, leaf.bin and (optionally) the object's bytes agree."""
    obj = json.loads(files["object.json"])
    leaf = json.loads(files["leaf.bin"])
    inc = json.loads(files["inclusion.json"])
    digest = obj["sha512"]
    if content is not None and hashlib.sha512(content).hexdigest() != digest:
        raise Invalid("object: the file's SHA-512 differs from object.json")
    if leaf.get("sha512", {}).get(obj["object_id"]) != digest:
        raise Invalid("leaf: leaf.bin does not record this object's SHA-512")
    if not leaf["index"] == obj["leaf_index"] == inc["leaf_index"]:
        raise Invalid("leaf: leaf index differs between leaf.bin, object.json, inclusion.json")
    if content is not None and len(content) != obj["size"]:
        raise Invalid("object: the file's size differs from object.json")
    data = leaf.get("data") or {}
    described = {
        "unit_id": leaf.get("unit"),
        "size": data.get("size"),
        "title": data.get("title"),
        "producer": data.get("producer"),
    }
    for name, value in described.items():
        if value is not None and obj.get(name) != value:
            raise Invalid(f"leaf: object.json's {name} differs from what leaf.bin records")
    return f"object {obj['object_id']} sha512 {digest[:16]}... recorded at leaf {leaf['index']}"


def check_merkle(files: dict[str, bytes]) -> str:
    """RFC 9162 §2.1.3.2: the audit path leads from the leaf to the signed root."""
    inc = json.loads(files["inclusion.json"])
    head = json.loads(files["tree-head.json"])
    index, size = inc["leaf_index"], inc["tree_size"]
    if size != head["tree_size"] or not 0 <= index < size:
        raise Invalid("merkle: inclusion.json does not match the tree head's size")
    fn, sn = index, size - 1
    r = hashlib.sha256(b"\x00" + files["leaf.bin"]).digest()
    for p in (bytes.fromhex(x) for x in inc["audit_path"]):
        if sn == 0:
            raise Invalid("merkle: audit path too long")
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r.hex() != head["root_hash"]:
        raise Invalid("merkle: the audit path does not lead to the tree head's root")
    return f"leaf {index} is in the tree of {size} leaves, root {head['root_hash'][:16]}..."


def check_signature(files: dict[str, bytes]) -> str:
    """SAE's ECDSA signature over the exact bytes of tree-head.json."""
    pem = files["sae-signing-key.pem"]
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Invalid("signature: sae-signing-key.pem is not an ECDSA key")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_bytes(serialization.Encoding.PEM, spki) != pem:
        raise Invalid("signature: sae-signing-key.pem is not in canonical PEM form")
    try:
        key.verify(files["tree-head.sig"], files["tree-head.json"], ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Invalid("signature: tree-head.sig is not SAE's signature of tree-head.json") from None
    return "tree-head.json is signed by sae-signing-key.pem"


def check_timestamp(files: dict[str, bytes]) -> str:
    """The RFC 3161 token time-stamps tree-head.json and chains to tsa-chain.pem's root."""
    try:
        return _check_timestamp(files)
    except Invalid:
        raise
    except Exception as exc:  # damaged input may raise anything; it is still invalid
        raise Invalid(f"timestamp: unreadable token ({type(exc).__name__}: {exc})") from None


def _tagged(data: bytes, *tags: int, exact: bool = True) -> list[Node]:
    """The TLVs in ``data``, whose tags must be ``tags`` (all of them when ``exact``)."""
    nodes = _items(data)
    if (exact and len(nodes) != len(tags)) or len(nodes) < len(tags):
        raise Invalid("timestamp: malformed token (unexpected number of DER elements)")
    if any(node[0] != tag for node, tag in zip(nodes, tags)):  # noqa: B905 (Python 3.9)
        raise Invalid("timestamp: malformed token (unexpected DER tag)")
    return nodes


SEQ, SET, INT, OID, OCTETS, GENTIME, CTX0, CTX1 = 0x30, 0x31, 0x02, 0x06, 0x04, 0x18, 0xA0, 0xA1


def _check_timestamp(files: dict[str, bytes]) -> str:
    (resp,) = _tagged(files["tree-head.tsr"], SEQ)
    status, token = _tagged(resp[1], SEQ, SEQ)
    if _tagged(status[1], INT, exact=False)[0][1] != b"\x00":
        raise Invalid("timestamp: the TSA did not grant the token")
    oid, wrapped = _tagged(token[1], OID, CTX0)
    if oid[1] != SIGNED_DATA:
        raise Invalid("timestamp: not a CMS SignedData")
    (sd_node,) = _tagged(wrapped[1], SEQ)
    sd = _items(sd_node[1])
    middle = tuple(node[0] for node in sd[3:-1])
    if middle not in ((), (CTX0,)):
        raise Invalid("timestamp: unexpected CRLs or fields in the SignedData")
    sd = _tagged(sd_node[1], INT, SET, SEQ, *middle, SET)
    eci = _tagged(sd[2][1], OID, CTX0)
    if eci[0][1] != TST_INFO:
        raise Invalid("timestamp: the token does not hold a TSTInfo")
    econtent = _tagged(eci[1][1], OCTETS)[0][1]  # the OCTET STRING's content: the DER TSTInfo
    tst = _tagged(_tagged(econtent, SEQ)[0][1], INT, OID, SEQ, INT, GENTIME, exact=False)
    algo, hashed = _tagged(tst[2][1], SEQ, OCTETS)
    if _tagged(algo[1], OID, exact=False)[0][1] != SHA256_OID:
        raise Invalid("timestamp: imprint is not SHA-256")
    if hashed[1] != hashlib.sha256(files["tree-head.json"]).digest():
        raise Invalid("timestamp: the token's imprint is not SHA-256(tree-head.json)")
    gen_time = dt.datetime.strptime(tst[4][1].decode().split(".")[0].rstrip("Z"), "%Y%m%d%H%M%S")
    gen_time = gen_time.replace(tzinfo=dt.timezone.utc)  # noqa: UP017 (Python 3.9)

    signer_infos = _tagged(sd[-1][1], SEQ)
    si = _tagged(
        signer_infos[0][1], INT, SEQ if signer_infos[0][1][0:1] != b"\x80" else 0x80, exact=False
    )
    sid_is_ski = si[1][0] == 0x80
    si = _tagged(signer_infos[0][1], INT, si[1][0], SEQ, CTX0, SEQ, OCTETS, exact=False)
    if len(si) > 7 or (len(si) == 7 and si[6][0] != CTX1):
        raise Invalid("timestamp: malformed SignerInfo")
    # The envelope is not signed: hold it to RFC 5652 so that no byte of it can change unseen.
    if sd[0][1] != b"\x03" or si[0][1] != (b"\x03" if sid_is_ski else b"\x01"):
        raise Invalid("timestamp: unexpected SignedData or SignerInfo version")
    if sd[1][1] != si[2][2]:
        raise Invalid("timestamp: digestAlgorithms does not match the signer")
    sig_oid = _tagged(si[4][1], OID, exact=False)[0][1]
    sig_digest = SIGNATURE_DIGESTS.get(sig_oid, "any" if sig_oid == RSA_ENCRYPTION else None)
    if sig_digest != "any" and sig_digest is not DIGESTS.get(_items(si[2][1])[0][1]):
        raise Invalid("timestamp: signatureAlgorithm does not match the signer's digest")
    digest_algo = DIGESTS[_items(si[2][1])[0][1]]
    attrs_node = si[3]
    signature = si[5][1]
    attrs = {}
    for attr in _tagged(attrs_node[1], *[SEQ] * len(_items(attrs_node[1]))):
        a_oid, values = _tagged(attr[1], OID, SET)
        if a_oid[1] in attrs:
            raise Invalid("timestamp: a signed attribute appears twice")
        attrs[a_oid[1]] = _items(values[1])[0]
    if attrs[CONTENT_TYPE][1] != TST_INFO:
        raise Invalid("timestamp: content-type attribute is not TSTInfo")
    if attrs[MESSAGE_DIGEST][1] != _hash(digest_algo, econtent):
        raise Invalid("timestamp: message-digest attribute does not match the TSTInfo")

    chain = x509.load_pem_x509_certificates(files["tsa-chain.pem"])
    chain_der = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    if (
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        != files["tsa-chain.pem"]
    ):
        raise Invalid("timestamp: tsa-chain.pem is not in canonical PEM form")
    carried = sd[3][1] if sd[3][0] == 0xA0 else b""
    if any(cert[2] not in chain_der for cert in _items(carried)):
        raise Invalid("timestamp: the token carries a certificate that tsa-chain.pem lacks")
    signer = chain[0]
    der = signer.public_bytes(serialization.Encoding.DER)
    if SIGNING_CERT_V2 in attrs:
        first = _items(_items(_items(attrs[SIGNING_CERT_V2][1])[0][1])[0][1])
        ess_algo = DIGESTS[_items(first[0][1])[0][1]] if first[0][0] == 0x30 else hashes.SHA256
        cert_hash = first[1][1] if first[0][0] == 0x30 else first[0][1]
        expected = _hash(ess_algo, der)
    elif SIGNING_CERT in attrs:
        raise Invalid("timestamp: ESSCertID v1 (SHA-1) binding; ESSCertIDv2 is required")
    else:
        raise Invalid("timestamp: no ESS signing-certificate attribute")
    if cert_hash != expected:
        raise Invalid("timestamp: ESS certificate hash does not match the TSA certificate")
    if sid_is_ski:
        ski = signer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        sid_ok = si[1][1] == ski.value.digest
    else:
        sid_issuer, serial = _tagged(si[1][1], SEQ, INT)
        sid_ok = sid_issuer[2] == signer.issuer.public_bytes() and (
            int.from_bytes(serial[1], "big", signed=True) == signer.serial_number
        )
    if not sid_ok:
        raise Invalid("timestamp: the SignerInfo does not name the TSA certificate")

    signed = b"\x31" + attrs_node[2][1:]
    key = signer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed, ec.ECDSA(digest_algo()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, PKCS1v15(), digest_algo())
        else:
            raise Invalid("timestamp: unsupported TSA key type")
    except InvalidSignature:
        raise Invalid("timestamp: the TSA's signature does not verify") from None

    eku = signer.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:  # type: ignore[call-overload]
        raise Invalid("timestamp: the TSA certificate lacks the critical timeStamping EKU")
    for cert, issuer in zip(chain, chain[1:] + chain[-1:]):  # noqa: B905 (Python 3.9)
        if not cert.not_valid_before_utc <= gen_time <= cert.not_valid_after_utc:
            raise Invalid(f"timestamp: {cert.subject.rfc4514_string()} not valid at {gen_time}")
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise Invalid(
                f"timestamp: tsa-chain.pem is broken at {cert.subject.rfc4514_string()}"
            ) from None
    root = chain[-1]
    fingerprint = root.fingerprint(hashes.SHA256()).hex(":").upper()
    return (
        f"time-stamped {gen_time.isoformat()} by {signer.subject.rfc4514_string()}; "
        f"root {root.subject.rfc4514_string()} SHA-256 fingerprint {fingerprint}"
    )


NOTE_FILES = ("checkpoint.note", "witnesses.json", "sae-note-key.pem")
NUMBERED = re.compile(r"^(witness-[1-9][0-9]{0,2}\.pem|cosignature-[1-9][0-9]{0,2}\.msg)$")
DASH = "\u2014 "  # a signature line starts with an em dash and a space


class Vkey:
    """A C2SP vkey ``<name>+<key id hex>+base64(type || Ed25519 public key)``."""

    def __init__(self, vkey: str) -> None:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise Invalid(f"witnesses: {vkey[:60]!r} is not a vkey")
        self.name, id_hex, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"witnesses: the vkey of {self.name} is not base64") from None
        if len(raw) != 33 or raw[0] not in (1, 4):
            raise Invalid(f"witnesses: the vkey of {self.name} is not an Ed25519 key")
        self.type, self.public = raw[0], raw[1:]
        self.key_id = hashlib.sha256(self.name.encode() + b"\n" + raw).digest()[:4]
        if self.key_id.hex() != id_hex:
            raise Invalid(f"witnesses: the vkey of {self.name} has a wrong key id")

    def pem(self) -> bytes:
        return Ed25519PublicKey.from_public_bytes(self.public).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def signature(self, note: list[tuple[str, bytes]]) -> bytes | None:
        """The signature bytes (after the key id) of this key's first line; None if none."""
        for name, raw in note:
            if name == self.name and raw[:4] == self.key_id:
                return raw[4:]
        return None

    def check(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def read_note(data: bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """A signed note's text (up to its last blank line) and its ``(name, bytes)`` lines."""
    message = data.decode("utf-8")
    split = message.rfind("\n\n")
    if split < 0 or not message.endswith("\n"):
        raise Invalid("witnesses: checkpoint.note is not a signed note")
    lines = []
    for line in message[split + 2 : -1].split("\n"):
        name, _, encoded = line[len(DASH) :].partition(" ")
        if not line.startswith(DASH) or not name:
            raise Invalid("witnesses: checkpoint.note has a malformed signature line")
        lines.append((name, base64.b64decode(encoded, validate=True)))
    return message[: split + 1], lines


def check_witnesses(files: dict[str, bytes], required: list[str]) -> str:
    """checkpoint.note is tree-head.json's head, signed by the archive's note key and
    co-signed by the declared quorum (and every ``required`` vkey); the shipped PEM keys and
    cosignature messages are exactly those (what the openssl steps of VERIFY.md use)."""
    if "checkpoint.note" not in files:
        if required:
            raise Invalid("witnesses: the bundle carries no checkpoint note")
        return "no checkpoint note (a head sealed before notes existed)"
    head = json.loads(files["tree-head.json"])
    text, lines = read_note(files["checkpoint.note"])
    expected = f"{head['origin']}\n{head['tree_size']}\n"
    expected += base64.b64encode(bytes.fromhex(head["root_hash"])).decode() + "\n"
    if text != expected:
        raise Invalid("witnesses: checkpoint.note is not the head of tree-head.json")
    doc = json.loads(files["witnesses.json"])
    log = Vkey(doc["log_vkey"])
    signature = log.signature(lines)
    if log.type != 1 or log.name != head["origin"] or doc["origin"] != head["origin"]:
        raise Invalid("witnesses: log_vkey is not an Ed25519 note key of the origin")
    if signature is None or not log.check(text.encode(), signature):
        raise Invalid("witnesses: checkpoint.note is not signed by the archive's note key")
    if files["sae-note-key.pem"] != log.pem():
        raise Invalid("witnesses: sae-note-key.pem is not the key of log_vkey")
    shipped = {n for n in files if NUMBERED.match(n)}
    cosigned: list[str] = []

    def cosigned_at(key: Vkey) -> int | None:
        raw = key.signature(lines)
        if raw is None:
            return None
        stamp = int.from_bytes(raw[:8], "big")
        message = f"cosignature/v1\ntime {stamp}\n{text}".encode()
        if key.type != 4 or len(raw) != 72 or not key.check(message, raw[8:]):
            raise Invalid(f"witnesses: the cosignature of {key.name} does not verify")
        return stamp

    for number, entry in enumerate(doc["witnesses"], start=1):
        key = Vkey(entry["vkey"])
        if key.name != entry["name"] or key.type != 4:
            raise Invalid(f"witnesses: {entry['name']}'s vkey is not its cosignature key")
        if files.get(f"witness-{number}.pem") != key.pem():
            raise Invalid(f"witnesses: witness-{number}.pem is not the key of {key.name}")
        shipped.discard(f"witness-{number}.pem")
        stamp = cosigned_at(key)
        if stamp is None:
            continue
        message = f"cosignature/v1\ntime {stamp}\n{text}".encode()
        if files.get(f"cosignature-{number}.msg") != message:
            raise Invalid(f"witnesses: cosignature-{number}.msg is not what {key.name} signed")
        shipped.discard(f"cosignature-{number}.msg")
        cosigned.append(key.name)
    if shipped:
        raise Invalid(f"witnesses: unexpected files {sorted(shipped)}")
    quorum = doc["quorum"]
    if not isinstance(quorum, int) or len(cosigned) < quorum:
        raise Invalid(
            f"witnesses: {len(cosigned)} of {len(doc['witnesses'])} witnesses co-signed; the "
            f"archive declares a quorum of {quorum}"
        )
    for vkey in required:
        key = Vkey(vkey)
        if cosigned_at(key) is None:
            raise Invalid(f"witnesses: no cosignature by the required witness {key.name}")
        if key.name not in cosigned:
            cosigned.append(key.name)
    said = ", ".join(cosigned) or "no witness"
    return f"checkpoint.note signed by {log.name}, co-signed by {said} (quorum {quorum})"


CONSISTENCY_FILES = ("consistency.note", "consistency.json")


def consistent(first: int, second: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: ``proof`` leads from the root ``old`` of ``first`` leaves to the root
    ``new`` of ``second`` leaves."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and old == new
    if not proof:
        return False
    if first & (first - 1) == 0:  # a power of two: the old root is the proof's first node
        proof = [old, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = hashlib.sha256(b"\x01" + c + fr).digest()
            sr = hashlib.sha256(b"\x01" + c + sr).digest()
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = hashlib.sha256(b"\x01" + sr + c).digest()
        fn, sn = fn >> 1, sn >> 1
    return fr == old and sr == new and sn == 0


def check_consistency(files: dict[str, bytes], required: list[str]) -> str:
    """consistency.note is a later head of the same log, signed by the archive's note key and
    co-signed by the declared quorum (and every ``required`` vkey); consistency.json proves that
    it extends the bundle's head."""
    if "consistency.note" not in files:
        return "no later head (the bundle was not asked for with ?consistent_with=)"
    head = json.loads(files["tree-head.json"])
    try:
        text, lines = read_note(files["consistency.note"])
    except Invalid as exc:
        raise Invalid(
            str(exc).replace("witnesses: checkpoint", "consistency: consistency")
        ) from None
    origin, size, root64 = text.split("\n")[:3]
    later_size, later_root = int(size), base64.b64decode(root64, validate=True)
    if origin != head["origin"] or size != str(later_size):
        raise Invalid("consistency: consistency.note is not a checkpoint of this log")
    doc = json.loads(files["witnesses.json"])
    log = Vkey(doc["log_vkey"])
    signature = log.signature(lines)
    if signature is None or not log.check(text.encode(), signature):
        raise Invalid("consistency: consistency.note is not signed by the archive's note key")

    def cosigned(key: Vkey) -> bool:
        raw = key.signature(lines)
        if raw is None:
            return False
        message = f"cosignature/v1\ntime {int.from_bytes(raw[:8], 'big')}\n{text}".encode()
        if key.type != 4 or len(raw) != 72 or not key.check(message, raw[8:]):
            raise Invalid(f"consistency: the cosignature of {key.name} does not verify")
        return True

    names = [key.name for key in (Vkey(w["vkey"]) for w in doc["witnesses"]) if cosigned(key)]
    if len(names) < doc["quorum"]:
        raise Invalid(
            f"consistency: consistency.note is co-signed by {len(names)} of "
            f"{len(doc['witnesses'])} witnesses; the archive declares a quorum of {doc['quorum']}"
        )
    for vkey in required:
        if not cosigned(Vkey(vkey)):
            raise Invalid(f"consistency: consistency.note is not co-signed by {Vkey(vkey).name}")
    proof = json.loads(files["consistency.json"])
    first, root = head["tree_size"], bytes.fromhex(head["root_hash"])
    if (proof["first"], proof["first_root"], proof["second"], proof["second_root"]) != (
        first,
        root.hex(),
        later_size,
        later_root.hex(),
    ):
        raise Invalid("consistency: consistency.json is not between this head and the later one")
    hashes = [bytes.fromhex(h) for h in proof["proof"]]
    if not consistent(first, later_size, root, later_root, hashes):
        raise Invalid(
            f"consistency: the proof does not lead from this head ({first} leaves) to the later "
            f"one ({later_size}): not an extension of this head"
        )
    said = ", ".join(names) or "no witness"
    return f"the head of {later_size} leaves (co-signed by {said}) extends this one of {first}"


def verify(
    files: dict[str, bytes], content: bytes | None = None, witnesses: list[str] | None = None
) -> list[tuple[str, str]]:
    """Run every check; return ``(check, message)`` pairs or raise :class:`Invalid`."""
    needed = FILES + (NOTE_FILES if "checkpoint.note" in files else ())
    if any(name in files for name in CONSISTENCY_FILES):
        needed += NOTE_FILES + CONSISTENCY_FILES
    missing = [name for name in needed if name not in files]
    if missing:
        raise Invalid(f"files: missing {', '.join(missing)}")
    results = []
    checks: list[tuple[str, Callable[[], str]]] = [
        ("object", partial(check_object, files, content)),
        ("merkle", partial(check_merkle, files)),
        ("signature", partial(check_signature, files)),
        ("timestamp", partial(check_timestamp, files)),
        ("witnesses", partial(check_witnesses, files, list(witnesses or []))),
        ("consistency", partial(check_consistency, files, list(witnesses or []))),
    ]
    for name, check in checks:
        try:
            results.append((name, check()))
        except Invalid:
            raise
        except Exception as exc:  # damaged input may raise anything; it is still invalid
            raise Invalid(f"{name}: malformed bundle ({type(exc).__name__}: {exc})") from None
    return results


def main(argv: list[str]) -> int:
    """Command line: ``verify.py [BUNDLE.zip|DIR] [--object FILE] [--witness VKEY]…``; exit 0
    valid, 1 invalid."""
    args = list(argv)
    content = None
    witnesses = []
    while "--witness" in args:
        i = args.index("--witness")
        witnesses.append(args[i + 1])
        del args[i : i + 2]
    if "--object" in args:
        i = args.index("--object")
        content = Path(args[i + 1]).read_bytes()
        del args[i : i + 2]
    path = Path(args[0]) if args else Path(__file__).resolve().parent
    try:
        for name, message in verify(load_files(path), content, witnesses):
            sys.stdout.write(f"OK   {name}: {message}\n")
    except Invalid as exc:
        sys.stdout.write(f"FAIL {exc}\n")
        return 1
    except (OSError, zipfile.BadZipFile) as exc:
        sys.stdout.write(f"FAIL files: cannot read the bundle ({exc})\n")
        return 1
    sys.stdout.write("VALID\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
