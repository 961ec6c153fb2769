"""RFC 3161 time-stamping: a built-in authority, an HTTP client, and token verification.

Two :class:`TimestampAuthority` implementations share one contract:

- :class:`BuiltinTSA` signs tokens itself with keys and a self-signed chain (root CA + TSA
  certificate with the critical ``timeStamping`` EKU) created at init. It is ECDSA P-256, not
  Ed25519, because ``openssl ts -verify`` cannot check Ed25519 tokens. A built-in TSA proves
  nothing against SAE's own operator: it exists so that the embedded default works offline.
- :class:`HttpTSA` asks an external (qualified) authority over HTTP (RFC 3161 §3.4) and refuses
  any reply that does not check: nonce, imprint, CMS signature, ESS signing-certificate binding,
  EKU, chain to the configured trust anchors.

:func:`verify_response` is the one verifier both rely on and that bundles use.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import hashlib
import os
import secrets
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from sae.fileio import fsync_directory, write_new_file
from sae.journal.errors import TimestampInvalid, TsaUnavailable

# A private policy OID under the UUID arc (ITU-T X.667), so that no registration is needed.
BUILTIN_POLICY = "2.25.204104307412826375683219418046937014590"
TSQ_MEDIA_TYPE = "application/timestamp-query"
TSR_MEDIA_TYPE = "application/timestamp-reply"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class TimestampToken:
    """A granted time-stamp: the DER TimeStampResp, when it was made, and the TSA's chain."""

    tsr: bytes
    gen_time: dt.datetime
    serial_number: int
    chain_pem: bytes
    """The TSA certificate, its intermediates and the trust anchor (root) last."""


class TimestampAuthority(Protocol):
    """Something that time-stamps a message (RFC 3161, SHA-256 imprint)."""

    def timestamp(self, message: bytes) -> TimestampToken:
        """Time-stamp ``message``; the token is verified before it is returned."""
        ...


# --------------------------------------------------------------------------- requests


def build_request(digest: bytes, *, nonce: int | None, cert_req: bool = True) -> bytes:
    """A DER TimeStampReq for a SHA-256 ``digest``."""
    req: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
        "cert_req": cert_req,
    }
    if nonce is not None:
        req["nonce"] = nonce
    return bytes(tsp.TimeStampReq(req).dump())


def new_nonce() -> int:
    """A 64-bit random nonce (positive, as DER INTEGER)."""
    return secrets.randbits(63) | 1


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token says."""

    gen_time: dt.datetime
    serial_number: int
    policy: str
    signer: x509.Certificate
    chain: list[x509.Certificate]
    """From the signer to the trust anchor, inclusive."""
    token_certs: list[x509.Certificate]
    """The certificates the token itself carries."""


def _load_pem_list(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def _verify_sig(
    cert: x509.Certificate, signature: bytes, data: bytes, sig_algo: str, hash_name: str
) -> None:
    key = cert.public_key()
    hash_cls = _HASHES.get(hash_name)
    if hash_cls is None:
        raise TimestampInvalid("signature", f"unsupported digest {hash_name}")
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_cls()))
        elif isinstance(key, rsa.RSAPublicKey):
            if sig_algo == "rsassa_pss":
                pad: padding.AsymmetricPadding = padding.PSS(
                    mgf=padding.MGF1(hash_cls()), salt_length=padding.PSS.AUTO
                )
            else:
                pad = padding.PKCS1v15()
            key.verify(signature, data, pad, hash_cls())
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            raise TimestampInvalid("signature", f"unsupported key type {type(key).__name__}")
    except InvalidSignature:
        raise TimestampInvalid("signature", "the TSA signature does not verify") from None


def _check_eku(cert: x509.Certificate) -> None:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
    except x509.ExtensionNotFound:
        raise TimestampInvalid("eku", "the TSA certificate has no extendedKeyUsage") from None
    usages = list(ext.value)  # type: ignore[call-overload]
    # RFC 3161 §2.3: exactly one EKU, id-kp-timeStamping, and the extension MUST be critical.
    if not ext.critical or usages != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampInvalid(
            "eku", "the TSA certificate's extendedKeyUsage is not a critical, sole timeStamping"
        )


def _build_chain(
    signer: x509.Certificate,
    pool: list[x509.Certificate],
    anchors: list[x509.Certificate],
    at: dt.datetime,
) -> list[x509.Certificate]:
    chain = [signer]
    cert = signer
    for _ in range(8):
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise TimestampInvalid("chain", f"{cert.subject.rfc4514_string()} not valid at {at}")
        for anchor in anchors:
            if anchor.subject == cert.issuer and _issued_by(cert, anchor):
                if cert != anchor:
                    chain.append(anchor)
                return chain
        issuer = next(
            (c for c in pool if c.subject == cert.issuer and c != cert and _issued_by(cert, c)),
            None,
        )
        if issuer is None:
            raise TimestampInvalid(
                "chain", f"no trusted issuer for {cert.subject.rfc4514_string()}"
            )
        if not _is_ca(issuer):
            raise TimestampInvalid("chain", f"{issuer.subject.rfc4514_string()} is not a CA")
        chain.append(issuer)
        cert = issuer
    raise TimestampInvalid("chain", "certificate chain too long")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        return False
    return bool(bc.ca)  # type: ignore[attr-defined]


def verify_response(
    tsr: bytes,
    *,
    digest: bytes,
    anchors: list[x509.Certificate],
    nonce: int | None = None,
    extra_certs: list[x509.Certificate] | None = None,
) -> TimestampInfo:
    """Verify a DER TimeStampResp over the SHA-256 ``digest``; raise :class:`TimestampInvalid`.

    Checks, in order: status granted, SignedData over TSTInfo, imprint, nonce (when given), the
    signed attributes (content type, message digest, ESS signing-certificate v1/v2 binding to the
    signer), the CMS signature, the signer's EKU, and a chain to one of ``anchors``.
    """
    try:
        return _verify_response(tsr, digest, anchors, nonce, extra_certs)
    except TimestampInvalid:
        raise
    except Exception as exc:
        # Hostile or damaged input: asn1crypto parses lazily and cryptography raises its own
        # types, so a broken token may surface as almost any exception. It is still a refusal.
        raise TimestampInvalid("format", f"unreadable token: {type(exc).__name__}: {exc}") from None


def _verify_response(
    tsr: bytes,
    digest: bytes,
    anchors: list[x509.Certificate],
    nonce: int | None,
    extra_certs: list[x509.Certificate] | None,
) -> TimestampInfo:
    try:
        # Parsed by hand at the top: asn1crypto insists on a token, which a rejection lacks.
        parts = _der_children(tsr)
        status_info = tsp.PKIStatusInfo.load(parts[0])
        status = status_info["status"].native
        # grantedWithMods is refused: SAE asks for nothing a TSA could modify, and an unsigned
        # status that may vary would let a bundle be altered unnoticed.
        if status != "granted":
            text = status_info["status_string"].native
            raise TimestampInvalid("status", f"TSA answered {status}: {text}")
        if len(parts) != 2:
            raise TimestampInvalid("format", "granted reply without a token")
        token = cms.ContentInfo.load(parts[1])
        if token["content_type"].native != "signed_data":
            raise TimestampInvalid("format", "token is not CMS SignedData")
        sd = token["content"]
        eci = sd["encap_content_info"]
        if eci["content_type"].native != "tst_info":
            raise TimestampInvalid("format", "token does not encapsulate a TSTInfo")
        econtent = eci["content"].contents
        tst = tsp.TSTInfo.load(econtent)
        imprint = tst["message_imprint"]
        signers = list(sd["signer_infos"])
        certs_in_token = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in sd["certificates"]
            if c.name == "certificate"
        ]
    except TimestampInvalid:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampInvalid("format", f"unreadable token: {exc}") from None

    if imprint["hash_algorithm"]["algorithm"].native != "sha256" or (
        imprint["hashed_message"].native != digest
    ):
        raise TimestampInvalid("imprint", "the token's message imprint is not our digest")
    if nonce is not None and tst["nonce"].native != nonce:
        raise TimestampInvalid("nonce", "the token's nonce is not the one we sent")
    if len(signers) != 1:
        raise TimestampInvalid("format", f"{len(signers)} signers, expected 1")
    si = signers[0]
    _check_structure(sd, si)

    pool = certs_in_token + list(extra_certs or [])
    signer = _find_signer(si, pool)
    hash_name = si["digest_algorithm"]["algorithm"].native
    hash_cls = _HASHES.get(hash_name)
    if hash_cls is None:
        raise TimestampInvalid("signature", f"unsupported digest {hash_name}")

    attrs = si["signed_attrs"]
    # The signature covers the DER SET OF the attributes, not their [0] IMPLICIT encoding. Their
    # encoding is taken as received, before the checks below parse into them: asn1crypto would
    # then re-encode (and re-sort) the whole set, a few milliseconds a token, the bulk of
    # ``sae journal verify`` on a journal sealed after every transfer.
    signed_bytes = b"\x31" + attrs.dump()[1:]
    if not attrs:
        raise TimestampInvalid("format", "no signed attributes")
    by_type = {a["type"].native: a["values"] for a in attrs}
    if by_type.get("content_type") is None or by_type["content_type"][0].native != "tst_info":
        raise TimestampInvalid("format", "content-type attribute is not id-ct-TSTInfo")
    h = hashes.Hash(hash_cls())
    h.update(econtent)
    if by_type.get("message_digest") is None or (
        by_type["message_digest"][0].native != h.finalize()
    ):
        raise TimestampInvalid("signature", "message-digest attribute does not match TSTInfo")
    _check_ess(by_type, signer)

    _verify_sig(
        signer,
        si["signature"].native,
        signed_bytes,
        si["signature_algorithm"].signature_algo,
        hash_name,
    )
    _check_eku(signer)
    gen_time = tst["gen_time"].native
    chain = _build_chain(signer, pool, anchors, gen_time)
    return TimestampInfo(
        gen_time=gen_time,
        serial_number=int(tst["serial_number"].native),
        policy=str(tst["policy"].dotted),
        signer=signer,
        chain=chain,
        token_certs=certs_in_token,
    )


def _check_structure(sd: cms.SignedData, si: cms.SignerInfo) -> None:
    """RFC 5652 shape of a time-stamp token's unsigned envelope (versions, algorithms, CRLs).

    None of these fields is signed; holding them to the RFC means that a token altered there is
    refused instead of silently accepted.
    """
    sid_is_ski = si["sid"].name == "subject_key_identifier"
    if sd["version"].native != "v3" or si["version"].native != ("v3" if sid_is_ski else "v1"):
        raise TimestampInvalid("format", "unexpected SignedData or SignerInfo version")
    algos_in_sd = [a.dump() for a in sd["digest_algorithms"]]
    if algos_in_sd != [si["digest_algorithm"].dump()]:
        raise TimestampInvalid("format", "digestAlgorithms is not exactly the signer's digest")
    sig_algo = si["signature_algorithm"]
    if sig_algo["algorithm"].native not in ("rsassa_pkcs1v15", "rsassa_pss", "ecdsa") and (
        sig_algo.hash_algo != si["digest_algorithm"]["algorithm"].native
    ):
        raise TimestampInvalid("format", "signatureAlgorithm's digest is not the signer's digest")
    if sd["crls"].native:
        raise TimestampInvalid("format", "unexpected CRLs in the token")


def _der_children(data: bytes) -> list[bytes]:
    """Split a DER SEQUENCE into the encodings of its elements."""
    if not data or data[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    content, rest = _der_take(data)
    if rest:
        raise ValueError("trailing bytes after the DER SEQUENCE")
    out = []
    while content:
        start = content
        _, content = _der_take(content)
        out.append(start[: len(start) - len(content)])
    return out


def _der_take(data: bytes) -> tuple[bytes, bytes]:
    """Return (content of the first TLV, what follows it)."""
    if len(data) < 2:
        raise ValueError("truncated DER")
    first = data[1]
    pos = 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < pos + count:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if len(data) < pos + length:
        raise ValueError("truncated DER")
    return data[pos : pos + length], data[pos + length :]


def _find_signer(si: cms.SignerInfo, pool: list[x509.Certificate]) -> x509.Certificate:
    sid = si["sid"]
    for cert in pool:
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if (
                ias["serial_number"].native == cert.serial_number
                and ias["issuer"].dump() == ax509.Name.load(cert.issuer.public_bytes()).dump()
            ):
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == sid.chosen.native:  # type: ignore[attr-defined]
                return cert
    raise TimestampInvalid("chain", "the signer's certificate is neither in the token nor given")


def _check_ess(by_type: dict[str, cms.SetOfAny], signer: x509.Certificate) -> None:
    der = signer.public_bytes(serialization.Encoding.DER)
    if by_type.get("signing_certificate_v2") is not None:
        ids = by_type["signing_certificate_v2"][0]["certs"]
        first = ids[0]
        algo = first["hash_algorithm"]["algorithm"].native
        hash_cls = _HASHES.get(algo)
        if hash_cls is None:
            raise TimestampInvalid("ess", f"unsupported ESSCertIDv2 hash {algo}")
        h = hashes.Hash(hash_cls())
        h.update(der)
        expected = h.finalize()
    elif by_type.get("signing_certificate") is not None:
        # RFC 5816: ESSCertID v1 binds the certificate with SHA-1 only; SAE requires v2.
        raise TimestampInvalid("ess", "ESSCertID v1 (SHA-1) binding; ESSCertIDv2 is required")
    else:
        raise TimestampInvalid("ess", "no signing-certificate attribute")
    if first["cert_hash"].native != expected:
        raise TimestampInvalid("ess", "the ESS certificate hash does not match the signer")
    issuer_serial = first["issuer_serial"]
    if issuer_serial.native is not None and (
        issuer_serial["serial_number"].native != signer.serial_number
    ):
        raise TimestampInvalid("ess", "the ESS issuer-serial does not match the signer")


# --------------------------------------------------------------------------- built-in TSA


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SAE"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def create_builtin_tsa_files(directory: Path, *, label: str = "SAE") -> None:
    """Create the built-in TSA's keys and self-signed chain in ``directory`` (once).

    Files: ``root.pem`` (self-signed CA, the trust anchor), ``tsa.pem`` (TSA certificate,
    critical EKU timeStamping), ``tsa.key`` (mode 0600). The root key is not kept: the chain is
    never extended, and a key that does not exist cannot leak.
    """
    if (directory / "tsa.key").exists():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{label} built-in time-stamping root")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365 * 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} built-in time-stamping authority"))
        .issuer_name(root_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365 * 20))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    files = {
        "root.pem": root.public_bytes(serialization.Encoding.PEM),
        "tsa.pem": tsa.public_bytes(serialization.Encoding.PEM),
        "tsa.key": tsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    _publish_directory(directory, files)


def _publish_directory(directory: Path, files: dict[str, bytes]) -> None:
    """Make ``directory`` hold ``files`` (mode 0600), all at once, unless someone was first.

    The files are written and synced in a staging directory beside it, which is then renamed
    into place: several processes starting together (``SAE_WORKERS``) each build a chain, the
    first rename wins and the others keep the winner's, so a key never sits beside another
    process's certificate.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        for name, data in files.items():
            write_new_file(staging / name, data)
        try:
            os.rename(staging, directory)  # replaces an empty directory, never a full one
            fsync_directory(directory.parent)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if not all((directory / name).exists() for name in files):
                raise TsaUnavailable(
                    f"{directory} holds an incomplete built-in TSA; move it aside to create "
                    "a new one (heads already sealed keep their own chain)"
                ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename won


class BuiltinTSA:
    """SAE's own RFC 3161 signer (ECDSA P-256, SHA-256, ESSCertIDv2)."""

    def __init__(
        self,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        chain: list[x509.Certificate],
        *,
        policy: str = BUILTIN_POLICY,
    ) -> None:
        self.cert = cert
        self.key = key
        self.chain = chain
        """Issuers of ``cert`` up to the root (last)."""
        self.policy = policy

    @classmethod
    def load(cls, directory: Path, *, create: bool = True) -> BuiltinTSA:
        """Load (and on first use create) the built-in TSA kept in ``directory``."""
        if create:
            create_builtin_tsa_files(directory)
        from sae.journal.checkpoint import check_private_mode

        check_private_mode(directory / "tsa.key")  # a key others can read can back-date heads
        key = serialization.load_pem_private_key((directory / "tsa.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise TypeError("the built-in TSA key must be ECDSA or RSA (openssl ts needs it)")
        cert = x509.load_pem_x509_certificate((directory / "tsa.pem").read_bytes())
        return cls(cert, key, _load_pem_list((directory / "root.pem").read_bytes()))

    @property
    def anchors(self) -> list[x509.Certificate]:
        """The trust anchor(s): the self-signed root."""
        return self.chain[-1:]

    @property
    def chain_pem(self) -> bytes:
        """TSA certificate, intermediates, root last (PEM)."""
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in [self.cert, *self.chain]
        )

    def respond(self, request: bytes, *, now: dt.datetime | None = None) -> bytes:
        """Answer a DER TimeStampReq with a DER TimeStampResp (granted or rejection)."""
        try:
            req = tsp.TimeStampReq.load(request)
            algo = req["message_imprint"]["hash_algorithm"]["algorithm"].native
            hashed = req["message_imprint"]["hashed_message"].native
            nonce = req["nonce"].native
            cert_req = bool(req["cert_req"].native)
        except (ValueError, TypeError, KeyError):
            return _rejection("bad_data_format", "unreadable TimeStampReq")
        if algo not in _HASHES or len(hashed) != _HASHES[algo]().digest_size:
            return _rejection("bad_alg", f"unsupported imprint algorithm {algo}")
        gen_time = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        tst_fields: dict[str, object] = {
            "version": "v1",
            "policy": self.policy,
            "message_imprint": {"hash_algorithm": {"algorithm": algo}, "hashed_message": hashed},
            "serial_number": secrets.randbits(64),
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
            "ordering": False,
        }
        if nonce is not None:
            tst_fields["nonce"] = nonce
        tst = tsp.TSTInfo(tst_fields)
        econtent = tst.dump()
        return self._sign(econtent, tst, gen_time, cert_req)

    @functools.cached_property
    def _signer_parts(self) -> tuple[bytes, ax509.Name, int, bytes]:
        """What every token repeats, encoded once: the certificate (DER), its issuer and serial
        number, and the signing-certificate attribute (DER)."""
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        acert = ax509.Certificate.load(cert_der)
        ess = tsp.SigningCertificateV2(
            {
                # hash_algorithm left out: SHA-256 is its DER default and must not be encoded.
                "certs": [
                    {
                        "cert_hash": hashlib.sha256(cert_der).digest(),
                        "issuer_serial": {
                            "issuer": [ax509.GeneralName({"directory_name": acert.issuer})],
                            "serial_number": acert.serial_number,
                        },
                    }
                ]
            }
        )
        attribute = cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]})
        return cert_der, acert.issuer, acert.serial_number, attribute.dump()

    def _sign(self, econtent: bytes, tst: tsp.TSTInfo, at: dt.datetime, with_certs: bool) -> bytes:
        # Parts loaded from their DER and left untouched are written back as they were read;
        # building them again from Python values each time cost most of a token (~20 ms).
        cert_der, issuer, serial_number, ess_der = self._signer_parts
        attrs = [
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": at})]}),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(econtent).digest()]}
            ),
            cms.CMSAttribute.load(ess_der),
        ]
        # DER SET OF is sorted by encoding; OpenSSL re-encodes before checking the signature.
        attrs.sort(key=lambda a: a.dump())
        signed_attrs = cms.CMSAttributes(attrs)
        to_sign = signed_attrs.dump()
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            signature = self.key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
            sig_algo = "sha256_ecdsa"
        else:
            signature = self.key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
            sig_algo = "sha256_rsa"
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": {
                            "issuer": issuer,
                            "serial_number": serial_number,
                        }
                    }
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_algo}),
                "signature": signature,
            }
        )
        signed_data: dict[str, object] = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(econtent),
            },
            "signer_infos": [signer_info],
        }
        if with_certs:
            signed_data["certificates"] = [ax509.Certificate.load(cert_der)]
        resp = tsp.TimeStampResp(
            {
                "status": {"status": "granted"},
                "time_stamp_token": {
                    "content_type": "signed_data",
                    "content": cms.SignedData(signed_data),
                },
            }
        )
        return bytes(resp.dump())

    def timestamp(self, message: bytes) -> TimestampToken:
        """Time-stamp ``message`` (SHA-256 imprint) and verify the token."""
        digest = hashlib.sha256(message).digest()
        nonce = new_nonce()
        tsr = self.respond(build_request(digest, nonce=nonce))
        info = verify_response(tsr, digest=digest, nonce=nonce, anchors=self.anchors)
        return TimestampToken(tsr, info.gen_time, info.serial_number, self.chain_pem)


def _rejection(failure: str, text: str) -> bytes:
    status = tsp.PKIStatusInfo(
        {"status": "rejection", "status_string": [text], "fail_info": tsp.PKIFailureInfo({failure})}
    )
    # asn1crypto's TimeStampResp marks the token as mandatory; a rejection carries none
    # (RFC 3161 §2.4.2), so the SEQUENCE is written by hand around the status.
    return _der_sequence(status.dump())


def _der_sequence(content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return b"\x30" + bytes([n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(size)]) + size + content


# --------------------------------------------------------------------------- HTTP client


class HttpTSA:
    """An external RFC 3161 authority reached over HTTP; its replies are verified on receipt.

    Authentication, as the provider requires: HTTP Basic (``auth``), a bearer token
    (``bearer``), a TLS client certificate (``client_cert`` = (certificate file, key file)).
    ``policy``: the policy OID every token must carry (a token under another policy is refused
    with the check ``policy``). Secrets are held as given and never put in a message.
    """

    def __init__(
        self,
        url: str,
        anchors: list[x509.Certificate],
        *,
        extra_certs: list[x509.Certificate] | None = None,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        auth: tuple[str, str] | None = None,
        bearer: str | None = None,
        client_cert: tuple[Path, Path] | None = None,
        policy: str | None = None,
    ) -> None:
        if not anchors:
            raise ValueError("an external TSA needs at least one trust anchor (root certificate)")
        self.url = url
        self.anchors = anchors
        self.extra_certs = list(extra_certs or [])
        self.timeout = timeout
        self.policy = policy
        self._client = client
        self._auth = httpx.BasicAuth(*auth) if auth is not None else None
        self._headers = {"Content-Type": TSQ_MEDIA_TYPE}
        if bearer is not None:
            self._headers["Authorization"] = f"Bearer {bearer}"
        self._verify: ssl.SSLContext | bool = True
        if client_cert is not None:
            context = ssl.create_default_context()
            context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
            self._verify = context

    def timestamp(self, message: bytes) -> TimestampToken:
        """Time-stamp ``message`` at the external TSA and verify the reply."""
        digest = hashlib.sha256(message).digest()
        nonce = new_nonce()
        body = build_request(digest, nonce=nonce, cert_req=True)
        try:
            if self._client is not None:
                reply = self._post(self._client, body)
            else:
                with httpx.Client(timeout=self.timeout, verify=self._verify) as client:
                    reply = self._post(client, body)
        except httpx.HTTPError as exc:
            raise TsaUnavailable(f"TSA {self.url} did not answer: {exc}") from None
        info = verify_response(
            reply, digest=digest, nonce=nonce, anchors=self.anchors, extra_certs=self.extra_certs
        )
        if self.policy is not None and info.policy != self.policy:
            raise TimestampInvalid(
                "policy",
                f"the token was issued under policy {info.policy}, not {self.policy} "
                "(SAE_TSA_POLICY_OID)",
            )
        chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in info.chain)
        return TimestampToken(reply, info.gen_time, info.serial_number, chain_pem)

    def _post(self, client: httpx.Client, body: bytes) -> bytes:
        if self._auth is not None:
            r = client.post(self.url, content=body, headers=self._headers, auth=self._auth)
        else:
            r = client.post(self.url, content=body, headers=self._headers)
        if r.status_code in (401, 403):
            raise TsaUnavailable(
                f"TSA {self.url} refused SAE's credentials (HTTP {r.status_code}): check "
                "SAE_TSA_USERNAME/SAE_TSA_PASSWORD, SAE_TSA_BEARER_TOKEN or "
                "SAE_TSA_CLIENT_CERT/SAE_TSA_CLIENT_KEY",
                http_status=r.status_code,
            )
        if r.status_code != 200:
            raise TsaUnavailable(f"TSA {self.url} answered HTTP {r.status_code}")
        return r.content
