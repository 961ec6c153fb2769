"""RFC 3161: the built-in TSA, the HTTP client against an independent TSA, and refusals."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import httpx
import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sae.journal.errors import TimestampInvalid, TsaUnavailable
from sae.journal.tsa import BuiltinTSA, HttpTSA, build_request, verify_response
from tests.conftest import openssl
from tests.journal.conftest import ExternalTSA

MESSAGE = b'{"origin":"test","tree_size":1}'
DIGEST = hashlib.sha256(MESSAGE).digest()


def openssl_verify(tmp: Path, tsr: bytes, data: bytes, ca: Path, untrusted: Path | None) -> bool:
    (tmp / "r.tsr").write_bytes(tsr)
    (tmp / "data.bin").write_bytes(data)
    cmd = [openssl(), "ts", "-verify", "-in", str(tmp / "r.tsr"), "-data", str(tmp / "data.bin")]
    cmd += ["-CAfile", str(ca)]
    if untrusted is not None:
        cmd += ["-untrusted", str(untrusted)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def test_builtin_token_verifies_with_openssl(builtin_tsa: BuiltinTSA, tmp_path: Path) -> None:
    token = builtin_tsa.timestamp(MESSAGE)
    root = tmp_path / "root.pem"
    root.write_bytes(builtin_tsa.anchors[0].public_bytes(serialization.Encoding.PEM))
    assert openssl_verify(tmp_path, token.tsr, MESSAGE, root, None)
    assert not openssl_verify(tmp_path, token.tsr, MESSAGE + b" ", root, None)
    # The chain shipped in bundles (TSA cert first, root last) is enough on its own.
    chain = tmp_path / "chain.pem"
    chain.write_bytes(token.chain_pem)
    assert openssl_verify(tmp_path, token.tsr, MESSAGE, chain, None)
    assert abs(token.gen_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    # The parts every token repeats are encoded once per TSA: the tokens that follow are
    # as good as the first, and each is its own.
    later = [builtin_tsa.timestamp(MESSAGE + bytes([i])) for i in range(3)]
    for i, again in enumerate(later):
        assert openssl_verify(tmp_path, again.tsr, MESSAGE + bytes([i]), root, None)
        assert not openssl_verify(tmp_path, again.tsr, MESSAGE, root, None)
    assert len({t.tsr for t in [token, *later]}) == 4


def test_builtin_token_checks_in_our_verifier(builtin_tsa: BuiltinTSA) -> None:
    token = builtin_tsa.timestamp(MESSAGE)
    info = verify_response(token.tsr, digest=DIGEST, anchors=builtin_tsa.anchors)
    assert info.serial_number == token.serial_number
    assert info.chain[-1] == builtin_tsa.anchors[0]


def test_builtin_answers_rejection_for_garbage(builtin_tsa: BuiltinTSA) -> None:
    reply = builtin_tsa.respond(b"not a request")
    with pytest.raises(TimestampInvalid) as exc:
        verify_response(reply, digest=DIGEST, anchors=builtin_tsa.anchors)
    assert exc.value.check == "status"


def test_external_tsa_token_verifies(external_tsa: ExternalTSA, tmp_path: Path) -> None:
    client = HttpTSA(external_tsa.url, external_tsa.anchors)
    token = client.timestamp(MESSAGE)
    assert openssl_verify(tmp_path, token.tsr, MESSAGE, external_tsa.root, external_tsa.chain)
    chain = x509.load_pem_x509_certificates(token.chain_pem)
    assert len(chain) == 3
    assert chain[-1] == external_tsa.anchors[0]
    # The assembled chain (TSA, intermediate, root) is what a bundle ships; openssl agrees.
    (tmp_path / "chain.pem").write_bytes(token.chain_pem)
    assert openssl_verify(tmp_path, token.tsr, MESSAGE, tmp_path / "chain.pem", None)


def test_external_reply_with_wrong_nonce_is_refused(external_tsa: ExternalTSA) -> None:
    reply = httpx.post(
        external_tsa.url,
        content=build_request(DIGEST, nonce=1234),
        headers={"Content-Type": "application/timestamp-query"},
    ).content
    assert verify_response(reply, digest=DIGEST, nonce=1234, anchors=external_tsa.anchors)
    with pytest.raises(TimestampInvalid) as exc:
        verify_response(reply, digest=DIGEST, nonce=1235, anchors=external_tsa.anchors)
    assert exc.value.check == "nonce"
    assert exc.value.code == "journal.timestamp_invalid"


def test_external_reply_with_wrong_imprint_is_refused(external_tsa: ExternalTSA) -> None:
    other = hashlib.sha256(b"something else").digest()
    reply = httpx.post(
        external_tsa.url,
        content=build_request(other, nonce=99),
        headers={"Content-Type": "application/timestamp-query"},
    ).content
    with pytest.raises(TimestampInvalid) as exc:
        verify_response(reply, digest=DIGEST, nonce=99, anchors=external_tsa.anchors)
    assert exc.value.check == "imprint"


def test_external_reply_chained_to_another_root_is_refused(
    external_tsa: ExternalTSA, builtin_tsa: BuiltinTSA
) -> None:
    client = HttpTSA(external_tsa.url, builtin_tsa.anchors)
    with pytest.raises(TimestampInvalid) as exc:
        client.timestamp(MESSAGE)
    assert exc.value.check == "chain"


def test_unreachable_tsa_is_unavailable() -> None:
    from tests.journal.conftest import free_port

    client = HttpTSA(f"http://127.0.0.1:{free_port()}/", [_self_signed()[0]], timeout=2)
    with pytest.raises(TsaUnavailable):
        client.timestamp(MESSAGE)


def _self_signed() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _tsa_with_eku(eku: list[x509.ObjectIdentifier] | None, critical: bool) -> BuiltinTSA:
    root, root_key = _self_signed()
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsa")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=critical)
    return BuiltinTSA(builder.sign(root_key, hashes.SHA256()), key, [root])


@pytest.mark.parametrize(
    ("eku", "critical"),
    [
        (None, False),
        ([ExtendedKeyUsageOID.TIME_STAMPING], False),
        ([ExtendedKeyUsageOID.SERVER_AUTH], True),
        ([ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING], True),
    ],
)
def test_signer_without_sole_critical_timestamping_eku_is_refused(
    eku: list[x509.ObjectIdentifier] | None, critical: bool
) -> None:
    tsa = _tsa_with_eku(eku, critical)
    reply = tsa.respond(build_request(DIGEST, nonce=5))
    with pytest.raises(TimestampInvalid) as exc:
        verify_response(reply, digest=DIGEST, nonce=5, anchors=tsa.anchors)
    assert exc.value.check == "eku"
    with pytest.raises(TimestampInvalid):
        tsa.timestamp(MESSAGE)


def test_proper_eku_accepted() -> None:
    tsa = _tsa_with_eku([ExtendedKeyUsageOID.TIME_STAMPING], True)
    assert tsa.timestamp(MESSAGE).tsr


def _resign_with_bad_ess(tsa: BuiltinTSA, tsr: bytes) -> bytes:
    """Keep a valid signature but make the ESS certificate hash name another certificate."""
    resp = tsp.TimeStampResp.load(tsr)
    sd = resp["time_stamp_token"]["content"]
    si = sd["signer_infos"][0]
    attrs = []
    for attr in si["signed_attrs"]:
        if attr["type"].native == "signing_certificate_v2":
            ess = attr["values"][0]
            ess["certs"][0]["cert_hash"] = hashlib.sha256(b"another certificate").digest()
            attr = cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]})
        attrs.append(cms.CMSAttribute.load(attr.dump(force=True)))
    attrs.sort(key=lambda a: a.dump())
    signed = cms.CMSAttributes(attrs)
    assert isinstance(tsa.key, ec.EllipticCurvePrivateKey)
    si["signed_attrs"] = signed
    si["signature"] = tsa.key.sign(signed.dump(), ec.ECDSA(hashes.SHA256()))
    return bytes(resp.dump(force=True))


def test_token_whose_ess_hash_does_not_match_signer_is_refused(
    builtin_tsa: BuiltinTSA, tmp_path: Path
) -> None:
    good = builtin_tsa.respond(build_request(DIGEST, nonce=7))
    bad = _resign_with_bad_ess(builtin_tsa, good)
    with pytest.raises(TimestampInvalid) as exc:
        verify_response(bad, digest=DIGEST, nonce=7, anchors=builtin_tsa.anchors)
    assert exc.value.check == "ess"
    root = tmp_path / "root.pem"
    root.write_bytes(builtin_tsa.anchors[0].public_bytes(serialization.Encoding.PEM))
    assert openssl_verify(tmp_path, good, MESSAGE, root, None)
    assert not openssl_verify(tmp_path, bad, MESSAGE, root, None)


def test_tampered_signature_is_refused(builtin_tsa: BuiltinTSA) -> None:
    good = bytearray(builtin_tsa.respond(build_request(DIGEST, nonce=8)))
    resp = tsp.TimeStampResp.load(bytes(good))
    sig = resp["time_stamp_token"]["content"]["signer_infos"][0]["signature"].native
    at = bytes(good).rindex(sig)
    good[at + 10] ^= 1
    with pytest.raises(TimestampInvalid) as exc:
        verify_response(bytes(good), digest=DIGEST, nonce=8, anchors=builtin_tsa.anchors)
    assert exc.value.check in ("signature", "format")


def test_ess_v1_sha1_binding_is_refused(builtin_tsa: BuiltinTSA) -> None:
    """RFC 5816's ESSCertIDv2 is required; a SHA-1 ESSCertID, even correct, is not enough."""
    good = builtin_tsa.respond(build_request(DIGEST, nonce=9))
    resp = tsp.TimeStampResp.load(good)
    si = resp["time_stamp_token"]["content"]["signer_infos"][0]
    cert_der = builtin_tsa.cert.public_bytes(serialization.Encoding.DER)
    attrs = [
        cms.CMSAttribute.load(a.dump(force=True))
        for a in si["signed_attrs"]
        if a["type"].native != "signing_certificate_v2"
    ]
    attrs.append(
        cms.CMSAttribute(
            {
                "type": "signing_certificate",
                "values": [
                    tsp.SigningCertificate(
                        {"certs": [{"cert_hash": hashlib.sha1(cert_der).digest()}]}
                    )
                ],
            }
        )
    )
    attrs.sort(key=lambda a: a.dump())
    signed = cms.CMSAttributes(attrs)
    assert isinstance(builtin_tsa.key, ec.EllipticCurvePrivateKey)
    si["signed_attrs"] = signed
    si["signature"] = builtin_tsa.key.sign(signed.dump(), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(TimestampInvalid) as exc:
        verify_response(
            bytes(resp.dump(force=True)), digest=DIGEST, nonce=9, anchors=builtin_tsa.anchors
        )
    assert exc.value.check == "ess"
