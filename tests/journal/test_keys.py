"""The journal's keys on first start: several processes starting at once agree on one set."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sae.journal.checkpoint import SigningKey
from sae.journal.errors import TsaUnavailable
from sae.journal.tsa import BuiltinTSA

PUBLIC = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _first_start(directory: str, start_at: float) -> tuple[bytes, bytes, bytes]:
    """What one server process loads at ``start_at``: its signing key and its built-in TSA
    (public parts)."""
    time.sleep(max(0.0, start_at - time.time()))
    data = Path(directory)
    signer = SigningKey.load_or_create(data / "keys")
    tsa = BuiltinTSA.load(data / "tsa")
    return (
        signer.public_pem,
        tsa.cert.public_bytes(serialization.Encoding.PEM),
        tsa.key.public_key().public_bytes(*PUBLIC),
    )


def test_processes_starting_together_share_one_key_and_one_tsa(tmp_path: Path) -> None:
    start_at = time.time() + 3  # the pool's processes are up by then: they start together
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        loaded = pool.starmap(_first_start, [(str(tmp_path), start_at)] * 4)
    assert len(set(loaded)) == 1, "the processes did not end up with the same keys"
    signing_pub, tsa_cert, tsa_pub = loaded[0]
    assert (tmp_path / "keys" / "journal-signing.pub.pem").read_bytes() == signing_pub
    cert = x509.load_pem_x509_certificate(tsa_cert)
    assert cert.public_key().public_bytes(*PUBLIC) == tsa_pub  # the key is the certificate's
    published = sorted(p.name for p in (tmp_path / "tsa").iterdir())
    assert published == ["root.pem", "tsa.key", "tsa.pem"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left
    assert [p.name for p in (tmp_path / "keys").iterdir() if p.name.startswith(".")] == []
    assert (tmp_path / "tsa" / "tsa.key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "keys" / "journal-signing.key").stat().st_mode & 0o077 == 0


def test_an_incomplete_tsa_directory_is_named_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "tsa").mkdir()
    (tmp_path / "tsa" / "root.pem").write_bytes(b"left by a crash")
    with pytest.raises(TsaUnavailable, match="incomplete built-in TSA"):
        BuiltinTSA.load(tmp_path / "tsa")
    assert (tmp_path / "tsa" / "root.pem").read_bytes() == b"left by a crash"
