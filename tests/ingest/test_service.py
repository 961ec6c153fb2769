"""The ingest pipeline called in-process (``sae deposit`` run locally, the bulk runner): the
SIP's SHA-512 is hashed by a thread beside the storing, and recorded as when the HTTP API hashes
it while receiving."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from sae import fileio
from sae.auth.service import SYSTEM
from sae.ingest import service
from sae.ingest.errors import Refusal
from tests.conftest import Api
from tests.sipfactory import FileSpec, build_zip, simple_sip


def _ingest(api: Api, tmp_path: Path, sip: bytes) -> service.IngestOutcome:
    path = tmp_path / "sip.zip"
    path.write_bytes(sip)
    env = service.IngestEnv(settings=api.runtime.settings, offers=api.runtime.strategy_offers)
    with api.runtime.sessions() as session:
        outcome = service.ingest(session, env, SYSTEM, path)
        session.commit()
    return outcome


def _digest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sae-trailing-hash"]


def test_an_accepted_transfer_records_the_sips_sha512(api: Api, tmp_path: Path) -> None:
    sip = build_zip(simple_sip("MSG-INPROC-1", payload=b"%PDF-1.4 " + os.urandom(3_000_000)))
    outcome = _ingest(api, tmp_path, sip)
    assert outcome.accepted, outcome.transfer.errors
    assert outcome.transfer.sip_sha512 == hashlib.sha512(sip).hexdigest()
    assert _digest_threads() == []


def test_a_refused_transfer_records_the_sips_sha512_too(api: Api, tmp_path: Path) -> None:
    spec = simple_sip("MSG-INPROC-2")
    spec.files[0] = FileSpec(uri=spec.files[0].uri, data=spec.files[0].data, digest="0" * 128)
    sip = build_zip(spec)
    outcome = _ingest(api, tmp_path, sip)
    assert not outcome.accepted
    assert outcome.transfer.sip_sha512 == hashlib.sha512(sip).hexdigest()
    assert _digest_threads() == []


def test_a_failing_ingest_stops_hashing(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the offer blew up")

    real_sha512 = hashlib.sha512

    class SlowSha512:
        """A hash slow enough that the ingest fails long before the SIP is hashed."""

        def __init__(self) -> None:
            self._real = real_sha512()

        def update(self, data: bytes) -> None:
            time.sleep(0.2)
            self._real.update(data)

        def hexdigest(self) -> str:
            return self._real.hexdigest()

    monkeypatch.setattr(service, "store_objects", broken)
    monkeypatch.setattr(fileio.hashlib, "sha512", SlowSha512)
    # Past fileio.TRAIL_AFTER, so that a thread hashes it: 10 blocks, 2 s if it were not stopped.
    sip = build_zip(simple_sip("MSG-INPROC-3", payload=os.urandom(10_000_000)))
    with pytest.raises(RuntimeError, match="blew up"):
        _ingest(api, tmp_path, sip)
    assert _digest_threads() == []  # stopped and joined, not left hashing


def _zip_with_manifest(manifest: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.xml", manifest)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("sip", "kind"),
    [
        pytest.param(b"not a zip", Refusal.UNREADABLE, id="not-a-zip"),
        pytest.param(_zip_with_manifest(b"<ArchiveTransfer"), Refusal.UNREADABLE, id="not-xml"),
        pytest.param(_zip_with_manifest(b"<Other/>"), Refusal.INVALID, id="not-seda"),
    ],
)
def test_a_refusal_says_its_kind(api: Api, tmp_path: Path, sip: bytes, kind: Refusal) -> None:
    outcome = _ingest(api, tmp_path, sip)
    assert not outcome.accepted
    assert outcome.refusal is kind


def test_a_wrong_digest_is_an_invalid_sip(api: Api, tmp_path: Path) -> None:
    spec = simple_sip("MSG-INPROC-KIND")
    spec.files[0] = FileSpec(uri=spec.files[0].uri, data=spec.files[0].data, digest="0" * 128)
    outcome = _ingest(api, tmp_path, build_zip(spec))
    assert outcome.refusal is Refusal.INVALID


def test_an_accepted_transfer_has_no_refusal(api: Api, tmp_path: Path) -> None:
    outcome = _ingest(api, tmp_path, build_zip(simple_sip("MSG-INPROC-OK")))
    assert outcome.accepted
    assert outcome.refusal is None
