"""Deposit → ATR → download, through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from datetime import date
from pathlib import Path

import pytest

import seda
from tests.conftest import Api
from tests.sipfactory import FileSpec, RuleSpec, UnitSpec, build_zip, simple_sip


def _validate_atr(xml: bytes, xsd_dir: Path) -> seda.ArchiveTransferReply:
    root = seda.safe_parse(xml)
    version = root.tag.split("}")[0].rsplit("v", 1)[-1]
    faults = seda.XsdValidator(xsd_dir).validate(root, version)
    assert faults == [], faults
    return seda.read_transfer_reply(xml)


def test_deposit_read_download(api: Api, xsd_dir: Path) -> None:
    spec = simple_sip(
        "MSG-OK-1",
        rules=[RuleSpec("AppraisalRule", "APP-5Y", date(2020, 1, 1), "Destroy")],
    )
    sip = build_zip(spec)
    response = api.deposit(sip)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "OK"
    assert len(body["units"]) == 2
    assert len(body["objects"]) == 1
    obj = body["objects"][0]
    expected = hashlib.sha512(spec.files[0].data).hexdigest()
    assert obj["sha512"] == expected

    atr = api.client.get(body["atr_url"], headers=api.auth())
    assert atr.status_code == 200
    reply = _validate_atr(atr.content, xsd_dir)
    assert reply.message_request_identifier == "MSG-OK-1"
    assert reply.reply_code == "OK"

    content = api.client.get(f"/api/v1/objects/{obj['id']}/content", headers=api.auth())
    assert content.status_code == 200
    assert content.content == spec.files[0].data
    assert hashlib.sha512(content.content).hexdigest() == expected
    assert content.headers["repr-digest"].startswith("sha-512=:")

    described = api.client.get(f"/api/v1/objects/{obj['id']}", headers=api.auth()).json()
    assert described["size"] == len(spec.files[0].data)
    assert described["mime_type"] == "application/pdf"
    assert [c["offer"] for c in described["copies"]] == api.runtime.offer_set.strategy

    child = next(u for u in body["units"] if u["sip_id"] == "AU-1")
    unit = api.client.get(f"/api/v1/units/{child['id']}", headers=api.auth()).json()
    assert unit["title"] == "Arrêté n°1 — rue de la Paix"
    # Inherited from the parent: 2020-01-01 + 5 years.
    assert unit["appraisal_end"] == "2025-01-01"
    assert unit["final_action"] == "Destroy"
    assert unit["rules"]["AppraisalRule"][0]["inherited"] is True
    assert "<Title>Arrêté n°1 — rue de la Paix</Title>" in unit["content_xml"]

    transfer = api.client.get(f"/api/v1/transfers/{body['transfer_id']}", headers=api.auth())
    assert transfer.json()["unit_count"] == 2
    assert transfer.json()["sip_sha512"] == hashlib.sha512(sip).hexdigest()


def test_atr_as_xml_on_request(api: Api, xsd_dir: Path) -> None:
    response = api.deposit(build_zip(simple_sip("MSG-XML")), xml=True)
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/xml")
    _validate_atr(response.content, xsd_dir)


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.3"])
def test_every_seda_version_is_accepted_and_answered_in_kind(
    api: Api, xsd_dir: Path, version: str
) -> None:
    response = api.deposit(build_zip(simple_sip(f"MSG-V{version}", version=version)), xml=True)
    assert response.status_code == 201, response.text
    assert f"seda:v{version}".encode() in response.content
    _validate_atr(response.content, xsd_dir)


def test_same_message_identifier_twice_is_a_conflict(api: Api) -> None:
    data = build_zip(simple_sip("MSG-DUP"))
    first = api.deposit(data)
    assert first.status_code == 201
    second = api.deposit(data)
    assert second.status_code == 409
    problem = second.json()
    assert problem["code"] == "ingest.duplicate_transfer"
    assert problem["first_transfer"] == first.json()["transfer_id"]
    units = api.client.get("/api/v1/units", headers=api.auth()).json()["items"]
    assert len(units) == 2  # nothing duplicated


def test_a_refused_transfer_can_be_sent_again_corrected(api: Api) -> None:
    bad = simple_sip("MSG-RETRY")
    bad.files[0].digest = "0" * 128
    assert api.deposit(build_zip(bad)).status_code == 422
    assert api.deposit(build_zip(simple_sip("MSG-RETRY"))).status_code == 201


def _errors(response: object) -> list[str]:
    body = response.json()  # type: ignore[attr-defined]
    assert body["status"] == "KO"
    return [e["code"] for e in body["errors"]]


def _nothing_stored(api: Api) -> None:
    units = api.client.get("/api/v1/units", headers=api.auth()).json()["items"]
    assert units == []
    for offer in api.runtime.offer_set.offers.values():
        assert list(offer.list_keys("objects/")) == []


def test_wrong_digest_is_refused_and_nothing_stays(api: Api, xsd_dir: Path) -> None:
    spec = simple_sip("MSG-BAD-DIGEST")
    spec.files.append(FileSpec(uri="Content/second.pdf", data=b"%PDF-1.4 second"))
    spec.units[0].children.append(UnitSpec(id="AU-2", title="Second", files=[1]))
    spec.files[1].digest = "ab" * 64
    response = api.deposit(build_zip(spec))
    assert response.status_code == 422
    assert _errors(response) == ["sip.digest_mismatch"]
    assert response.json()["errors"][0]["where"] == "BDO-1"
    _nothing_stored(api)
    atr = api.client.get(response.json()["atr_url"], headers=api.auth())
    reply = _validate_atr(atr.content, xsd_dir)
    assert reply.reply_code == "KO"
    transfer = api.client.get(
        f"/api/v1/transfers/{response.json()['transfer_id']}", headers=api.auth()
    ).json()
    assert transfer["status"] == "KO"
    assert transfer["errors"][0]["code"] == "sip.digest_mismatch"


def test_sha256_declared_digest_is_checked_with_its_own_algorithm(api: Api) -> None:
    spec = simple_sip("MSG-SHA256")
    spec.files[0].algorithm = "SHA-256"
    assert api.deposit(build_zip(spec)).status_code == 201
    bad = simple_sip("MSG-SHA256-BAD")
    bad.files[0].algorithm = "SHA-256"
    bad.files[0].digest = hashlib.sha256(b"other").hexdigest()
    assert _errors(api.deposit(build_zip(bad))) == ["sip.digest_mismatch"]


def test_empty_digest(api: Api) -> None:
    spec = simple_sip("MSG-EMPTY-DIGEST")
    spec.files[0].digest = ""
    response = api.deposit(build_zip(spec))
    assert response.status_code in (400, 422)
    codes = _errors(response)
    assert any("digest" in c for c in codes), codes
    _nothing_stored(api)


def test_missing_file(api: Api) -> None:
    spec = simple_sip("MSG-MISSING")
    spec.files[0].in_zip = False
    response = api.deposit(build_zip(spec))
    assert response.status_code == 422
    assert _errors(response) == ["sip.missing_file"]


def test_undeclared_file(api: Api) -> None:
    spec = simple_sip("MSG-UNDECLARED")
    spec.extra_entries["Content/stray.txt"] = b"not declared"
    response = api.deposit(build_zip(spec))
    assert response.status_code == 422
    assert _errors(response) == ["sip.undeclared_file"]
    assert response.json()["errors"][0]["where"] == "Content/stray.txt"


def test_declared_size_must_match(api: Api) -> None:
    spec = simple_sip("MSG-SIZE")
    spec.files[0].size = 3
    assert _errors(api.deposit(build_zip(spec))) == ["sip.size_mismatch"]


def test_unknown_rule_id_is_named(api: Api) -> None:
    spec = simple_sip(
        "MSG-RULE", rules=[RuleSpec("AppraisalRule", "APP-NOPE", date(2020, 1, 1), "Keep")]
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 422
    assert _errors(response) == ["rules.unknown_rule"]
    assert "APP-NOPE" in response.json()["errors"][0]["message"]


def test_cycle_is_refused(api: Api) -> None:
    spec = simple_sip("MSG-CYCLE")
    spec.units[0].children[0].refs = ["AU-root"]
    response = api.deposit(build_zip(spec))
    assert response.status_code == 422
    assert any("cycle" in c for c in _errors(response))
    _nothing_stored(api)


def test_malformed_xml(api: Api) -> None:
    spec = simple_sip("MSG-MALFORMED")
    response = api.deposit(
        build_zip(spec, manifest_bytes=b"<ArchiveTransfer><Oops></ArchiveTransfer>")
    )
    assert response.status_code == 400
    assert len(_errors(response)) == 1


def test_no_manifest_and_two_manifests(api: Api) -> None:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("Content/a.pdf", b"%PDF")
    response = api.deposit(out.getvalue())
    assert response.status_code == 400
    assert _errors(response) == ["sip.no_manifest"]

    spec = simple_sip("MSG-TWO")
    spec.extra_entries["manifest-copy.xml"] = b"<x/>"
    response = api.deposit(build_zip(spec))
    assert response.status_code == 400
    assert _errors(response) == ["sip.several_manifests"]


def test_not_a_zip_and_wrong_media_type(api: Api) -> None:
    response = api.deposit(b"this is not a zip")
    assert response.status_code == 400
    assert _errors(response) == ["sip.not_a_zip"]
    wrong = api.client.post(
        "/api/v1/transfers", content=b"x", headers={**api.auth(), "Content-Type": "text/plain"}
    )
    assert wrong.status_code == 415
    assert wrong.headers["content-type"].startswith("application/problem+json")


def test_unsupported_seda_version(api: Api) -> None:
    spec = simple_sip("MSG-V9")
    xml = build_zip(spec, manifest_bytes=None)
    from tests.sipfactory import manifest

    bad = manifest(spec).replace(b"seda:v2.2", b"seda:v9.99")
    response = api.deposit(build_zip(spec, manifest_bytes=bad))
    assert response.status_code in (400, 422)
    codes = _errors(response)
    assert len(codes) == 1, codes
    assert "version" in codes[0], codes
    assert xml  # the valid one is fine


def test_authentication_and_producer_scope(api: Api) -> None:
    data = build_zip(simple_sip("MSG-SCOPE", producer="ETAT-CIVIL"))
    assert api.client.post("/api/v1/transfers", content=data).status_code == 401
    assert api.deposit(data, token="sae_not-a-real-token").status_code == 401
    other = api.token("depositor", ["URBANISME"])
    refused = api.deposit(data, token=other)
    assert refused.status_code == 403
    assert refused.json()["code"] == "auth.producer_forbidden"
    reader = api.token("reader")
    assert api.deposit(data, token=reader).status_code == 403
    own = api.token("depositor", ["ETAT-CIVIL"])
    accepted = api.deposit(data, token=own)
    assert accepted.status_code == 201
    transfer_url = f"/api/v1/transfers/{accepted.json()['transfer_id']}"
    assert api.client.get(transfer_url, headers=api.auth(own)).status_code == 200
    assert api.client.get(transfer_url, headers=api.auth(other)).status_code == 404


def test_an_old_record_is_still_locked_for_a_while(api: Api) -> None:
    """A record whose DUA ran out before it was archived is locked at least 30 days."""
    from datetime import UTC, datetime, timedelta

    spec = simple_sip(
        "MSG-OLD", rules=[RuleSpec("AppraisalRule", "APP-5Y", date(1990, 1, 1), "Destroy")]
    )
    obj = api.deposit(build_zip(spec)).json()["objects"][0]
    copy = api.client.get(f"/api/v1/objects/{obj['id']}", headers=api.auth()).json()["copies"][0]
    head = api.runtime.offer_set.offers[copy["offer"]].head(copy["key"])
    assert head.retain_until >= datetime.now(UTC) + timedelta(days=29)


def test_search_due_before_and_holds(api: Api) -> None:
    due = simple_sip(
        "MSG-DUE", rules=[RuleSpec("AppraisalRule", "APP-5Y", date(2015, 1, 1), "Destroy")]
    )
    later = simple_sip(
        "MSG-LATER", rules=[RuleSpec("AppraisalRule", "APP-10Y", date(2024, 1, 1), "Destroy")]
    )
    due_units = {u["sip_id"]: u["id"] for u in api.deposit(build_zip(due)).json()["units"]}
    api.deposit(build_zip(later))
    found = api.client.get("/api/v1/units?due_before=2026-01-01", headers=api.auth()).json()
    assert sorted(u["id"] for u in found["items"]) == sorted(due_units.values())
    page = api.client.get("/api/v1/units?due_before=2026-01-01&limit=1", headers=api.auth())
    assert len(page.json()["items"]) == 1
    assert page.json()["next_cursor"] is not None
    hold = api.client.post(
        "/api/v1/holds",
        json={"unit_ids": [due_units["AU-root"]], "reason": "contentieux"},
        headers=api.auth(),
    )
    assert hold.status_code == 201, hold.text
    unit = api.client.get(f"/api/v1/units/{due_units['AU-1']}", headers=api.auth()).json()
    assert unit["held"] is True


def test_a_failing_offer_is_a_503_not_the_sips_fault(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae.ingest import service
    from sae.storage.errors import OfferUnavailable

    def broken(*args: object, **kwargs: object) -> None:
        raise OfferUnavailable("local", "disk on fire")

    monkeypatch.setattr(service, "store_copies", broken)
    response = api.deposit(build_zip(simple_sip("MSG-OFFER-DOWN")))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "60"
    assert _errors(response) == ["storage.write_failed"]
    monkeypatch.undo()
    assert api.deposit(build_zip(simple_sip("MSG-OFFER-DOWN"))).status_code == 201


@pytest.mark.parametrize("where", ["creating", "writing"])
def test_a_spool_that_cannot_take_the_sip_is_a_503_and_keeps_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The spool's disk full (or failing) while a SIP is received: 503 naming the cause, no
    file left in the spool, no transfer recorded; the same SIP goes through once it is fixed."""
    import errno
    import tempfile

    from sqlalchemy import select

    from sae.ingest import api as ingest_api
    from sae.ingest.models import Transfer

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "creating":
        monkeypatch.setattr(tempfile, "mkstemp", full)
    else:
        monkeypatch.setattr(ingest_api, "_write_block", full)
    sip = build_zip(simple_sip("MSG-SPOOL-FULL"))
    response = api.deposit(sip)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "service.spool_failed"
    assert "No space left on device" in body["detail"]
    assert list((api.settings.data_dir / "tmp").iterdir()) == []
    with api.runtime.sessions() as session:
        assert session.scalars(select(Transfer)).all() == []  # not even a refusal
    monkeypatch.undo()
    assert api.deposit(sip).status_code == 201


def test_copies_not_made_durable_refuse_the_transfer_and_nothing_stays(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae.storage.errors import OfferUnavailable
    from sae.storage.filesystem import FilesystemOffer

    def failing_sync(self: FilesystemOffer, batch: object) -> None:
        raise OfferUnavailable(self.name, "write-back error (Input/output error)")

    monkeypatch.setattr(FilesystemOffer, "_sync", failing_sync)
    spec = simple_sip("MSG-NOT-DURABLE")
    spec.files.append(FileSpec(uri="Content/second.pdf", data=b"%PDF-1.4 second"))
    spec.units[0].children.append(UnitSpec(id="AU-2", title="Second", files=[1]))
    response = api.deposit(build_zip(spec))
    assert response.status_code == 503
    assert _errors(response) == ["storage.write_failed"]
    assert "not made durable" in response.json()["errors"][0]["message"]
    _nothing_stored(api)
    monkeypatch.undo()
    assert api.deposit(build_zip(spec)).status_code == 201


@pytest.mark.parametrize(
    ("size", "piece"),
    [
        (0, 65_519),
        (1000, 65_519),
        (1024 * 1024, 65_519),
        (3 * 1024 * 1024 + 4321, 65_519),
        (9 * 1024 * 1024 + 7, 65_519),  # past fileio.TRAIL_AFTER: hashed by a trailing thread
        (300_001, 100),  # more pieces in a block than one writev takes
    ],
)
def test_the_sip_digest_of_an_upload_in_many_blocks(tmp_path: Path, size: int, piece: int) -> None:
    """The SIP is written block by block while a thread hashes what the file holds, trailing
    the upload: the file and the digest must hold every block whole and in order, the last
    partial one included."""
    import asyncio
    import os
    from types import SimpleNamespace

    from starlette.requests import Request

    from sae.fileio import SpoolFiles
    from sae.ingest.api import _spool

    body = os.urandom(size)
    pieces = [body[i : i + piece] for i in range(0, len(body), piece)]
    messages = [{"type": "http.request", "body": piece, "more_body": True} for piece in pieces] + [
        {"type": "http.request", "body": b"", "more_body": False}
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    (tmp_path / "tmp").mkdir()
    runtime = SimpleNamespace(
        settings=SimpleNamespace(max_sip_bytes=10**9, data_dir=tmp_path),
        sip_spool=SpoolFiles(tmp_path / "tmp", "sip-", ".zip"),
    )
    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    path, digest = asyncio.run(_spool(request, runtime))  # type: ignore[arg-type]
    assert path.read_bytes() == body
    assert digest.finish() == (hashlib.sha512(body).hexdigest(), size)


def test_a_declared_sha512_is_what_the_copies_must_read_back_as(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte is hashed once: the offers are told the declared SHA-512 and check it on the
    read-back (other algorithms are checked on the way in, and the offer hashes the bytes)."""
    from sae.ingest import service

    seen: list[str | None] = []
    real = service.store_copies

    def spy(*args: object, **kwargs: object) -> object:
        if str(args[1]).startswith("objects/"):  # not the transfer's description, after them
            seen.append(kwargs.get("expected_sha512"))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "store_copies", spy)
    spec = simple_sip("MSG-EXPECTED")
    spec.files.append(FileSpec(uri="Content/b.pdf", data=b"%PDF-1.4 b", algorithm="SHA-256"))
    spec.units[0].children.append(UnitSpec(id="AU-2", title="B", files=[1]))
    body = api.deposit(build_zip(spec)).json()
    assert body["status"] == "OK"
    sha512 = {o["sip_id"]: o["sha512"] for o in body["objects"]}
    # Two files are stored at once (SAE_INGEST_THREADS): the calls come in either order.
    assert sorted(seen, key=str) == sorted([sha512["BDO-0"], None], key=str)
    assert sha512["BDO-0"] == hashlib.sha512(spec.files[0].data).hexdigest()
    assert sha512["BDO-1"] == hashlib.sha512(b"%PDF-1.4 b").hexdigest()


def test_a_copy_that_does_not_read_back_as_declared_is_the_storage_fault(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file matches its declared SHA-512 but the disk gives back other bytes: not the
    depositor's fault (503, retry), and nothing stays."""
    from sae.storage import filesystem

    real = os.pread

    def rotten(fd: int, n: int, offset: int) -> bytes:
        data = real(fd, n, offset)
        return bytes([data[0] ^ 1]) + data[1:] if data and offset == 0 else data

    monkeypatch.setattr(filesystem.os, "pread", rotten)
    spec = simple_sip("MSG-ROTTEN")
    response = api.deposit(build_zip(spec))
    assert response.status_code == 503
    assert _errors(response) == ["storage.write_failed"]
    _nothing_stored(api)
    monkeypatch.undo()
    assert api.deposit(build_zip(spec)).status_code == 201


def test_every_file_that_differs_from_its_declared_sha512_is_reported(api: Api) -> None:
    spec = simple_sip("MSG-TWO-BAD")
    for i in (1, 2, 3):
        spec.files.append(FileSpec(uri=f"Content/{i}.pdf", data=f"%PDF-1.4 {i}".encode()))
        spec.units[0].children.append(UnitSpec(id=f"AU-{i + 1}", title=str(i), files=[i]))
    spec.files[1].digest = hashlib.sha512(b"not this").hexdigest()
    spec.files[3].digest = "cd" * 64
    response = api.deposit(build_zip(spec))
    assert response.status_code == 422
    assert [(e["code"], e["where"]) for e in response.json()["errors"]] == [
        ("sip.digest_mismatch", "BDO-1"),
        ("sip.digest_mismatch", "BDO-3"),
    ]
    _nothing_stored(api)


def test_a_spool_file_is_reused_and_cut_to_the_next_sip(api: Api) -> None:
    """A deposit's spool file is kept for the next one (no inode made and freed per deposit):
    the next SIP, shorter, is written over it and the file cut to it — the transfer records the
    digest of exactly the SIP sent, and no byte of the one before."""
    from sqlalchemy import select

    from sae.ingest.models import Transfer

    spool = api.settings.data_dir / "tmp"
    long_sip = build_zip(simple_sip("MSG-SPOOL-LONG", payload=b"%PDF-1.4\n" + os.urandom(300_000)))
    short_sip = build_zip(simple_sip("MSG-SPOOL-SHORT"))
    assert len(short_sip) < len(long_sip) // 10
    assert api.deposit(long_sip).status_code == 201
    (kept,) = spool.iterdir()
    inode = kept.stat().st_ino
    assert kept.stat().st_size == len(long_sip)
    assert api.deposit(short_sip).status_code == 201
    assert [(p, p.stat().st_ino) for p in spool.iterdir()] == [(kept, inode)]
    assert kept.stat().st_size == len(short_sip)
    with api.runtime.sessions() as session:
        query = select(Transfer.message_identifier, Transfer.sip_sha512)
        digests = dict(session.execute(query).all())
    assert digests == {
        "MSG-SPOOL-LONG": hashlib.sha512(long_sip).hexdigest(),
        "MSG-SPOOL-SHORT": hashlib.sha512(short_sip).hexdigest(),
    }
    # A refused SIP's file is kept too; the runtime's end removes what it kept.
    assert api.deposit(b"PK\x03\x04 not a zip").status_code == 400
    api.runtime.sip_spool.clear()
    assert list(spool.iterdir()) == []


def test_a_large_or_idle_spool_file_is_not_kept(tmp_path: Path) -> None:
    from sae.fileio import SpoolFiles

    spool = SpoolFiles(tmp_path, "sip-", ".zip")
    spool.KEEP_BYTES = 1000
    with spool.file() as (fd, path):
        os.write(fd, b"x" * 1001)
        os.close(fd)
    spool.release(path)
    assert not path.exists()  # too large: removed at once
    with spool.file() as (fd, small):
        os.write(fd, b"x" * 10)
        os.close(fd)
    spool.release(small)
    spool.IDLE_SECONDS = 0.0
    with spool.file() as (fd, path):  # idle too long: removed, a new file instead
        os.close(fd)
    assert path != small
    assert not small.exists()
