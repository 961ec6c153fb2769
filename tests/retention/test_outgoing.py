"""Permanent keeping with an outgoing SEDA transfer: purge only after the other archive's OK."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, date, datetime, timedelta

import seda
from sae.catalog.models import ArchiveUnit
from tests.conftest import XSD_DIR, Api, require
from tests.retention.helpers import Clock, dossier_sip, events


def _reply(message_request: str, code: str = "OK") -> bytes:
    return seda.write_archive_transfer_reply(seda.ArchiveTransferReply(
        version=seda.SedaVersion("2.2"),
        message_identifier="AD93-ATR-1",
        date=datetime(2021, 7, 1, 10, 0, tzinfo=UTC),
        message_request_identifier=message_request,
        reply_code=code,
        archival_agency_identifier="AD93",
        transferring_agency_identifier="SERVICE-ARCHIVES",
        code_list_versions={"ReplyCodeListVersion": "ReplyCodeListVersion0"},
    ))


def test_transfer_to_the_departmental_archives_then_purge(api: Api, clock: Clock) -> None:
    archivist = api.token("archivist")
    clock.set(date(2015, 3, 1))
    kept = {u["title"]: u["id"] for u in api.deposit(dossier_sip(
        "MSG-AD", final_action="Keep", pieces=2, title="Délibérations 2013")).json()["units"]}
    clock.set(date(2021, 6, 20))
    list_id = api.client.post("/api/v1/disposal-lists", headers=api.auth(archivist),
                              json={"final_action": "Keep"}).json()["id"]
    # Not before the list is executed.
    early = api.client.post(f"/api/v1/disposal-lists/{list_id}/outgoing-transfer",
                            headers=api.auth(archivist), json={"archival_agency": "AD93"})
    assert early.status_code == 409
    api.client.post(f"/api/v1/disposal-lists/{list_id}/approve", headers=api.auth(archivist),
                    json={"comment": "à verser aux AD"})
    assert api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                           headers=api.auth(archivist)).status_code == 200
    sent = api.client.post(f"/api/v1/disposal-lists/{list_id}/outgoing-transfer",
                           headers=api.auth(archivist), json={"archival_agency": "AD93"})
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["message_identifier"]
    sip = api.client.get(f"/api/v1/disposal-lists/{list_id}/outgoing-transfer",
                         headers=api.auth(archivist))
    assert sip.status_code == 200
    with zipfile.ZipFile(io.BytesIO(sip.content)) as zf:
        manifest = zf.read("manifest.xml")
        assert len([n for n in zf.namelist() if n.startswith("Content/")]) == 2
    require((XSD_DIR / "2.2" / "seda-2.2-main.xsd").is_file(), "official SEDA XSDs not found")
    report = seda.validate_transfer(manifest, xsd_dir=XSD_DIR)
    assert report.errors == []
    assert report.transfer is not None
    assert len(report.transfer.package.archive_units) == 3
    assert report.transfer.archival_agency_identifier == "AD93"

    # A reply to another message is refused; a KO purges nothing.
    wrong = api.client.post(f"/api/v1/disposal-lists/{list_id}/outgoing-transfer/reply",
                            headers={**api.auth(archivist), "Content-Type": "application/xml"},
                            content=_reply("SOMETHING-ELSE"))
    assert wrong.status_code == 422
    refused = api.client.post(f"/api/v1/disposal-lists/{list_id}/outgoing-transfer/reply",
                              headers={**api.auth(archivist), "Content-Type": "application/xml"},
                              content=_reply(message_id, "KO"))
    assert refused.status_code == 200, refused.text
    assert refused.json()["state"] == "refused"
    assert refused.json()["purged"] == []

    # OK, but the copies are locked (kept records are locked far in the future, once the
    # offers' one-day quarantine is over): listed, nothing purged.
    later = datetime.now(UTC) + timedelta(days=2)
    for offer in api.runtime.offer_set.offers.values():
        offer._clock = lambda: later  # type: ignore[attr-defined]
    ok = api.client.post(f"/api/v1/disposal-lists/{list_id}/outgoing-transfer/reply",
                         headers={**api.auth(archivist), "Content-Type": "application/xml"},
                         content=_reply(message_id))
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "acknowledged"
    assert ok.json()["purged"] == []
    assert ok.json()["locked"]
    assert events(api, "disposal.transfer_acknowledged")

    # Once the offers' locks have ended, the same reply purges.
    for offer in api.runtime.offer_set.offers.values():
        offer._clock = lambda: datetime(2106, 1, 1, tzinfo=UTC)  # type: ignore[attr-defined]
    again = api.client.post(f"/api/v1/disposal-lists/{list_id}/outgoing-transfer/reply",
                            headers={**api.auth(archivist), "Content-Type": "application/xml"},
                            content=_reply(message_id))
    assert again.status_code == 200, again.text
    assert len(again.json()["purged"]) == 2
    assert len(events(api, "disposal.object_transferred")) == 2
    with api.runtime.sessions() as session:
        statuses = {session.get(ArchiveUnit, uid).status for uid in kept.values()}  # type: ignore[union-attr]
    assert statuses == {"destroyed"}


def test_the_outgoing_sip_is_made_again_the_same_when_its_file_is_gone(
    api: Api, clock: Clock
) -> None:
    """The zip lives in the data directory, not on the offers: a catalogue rebuilt elsewhere
    (issue 17) has the transfer's state but not the file. Made again from the catalogue and
    the offers, later, it is the same bytes, the SHA-512 the journal says was sent."""
    archivist = api.auth(api.token("archivist"))
    clock.set(date(2015, 3, 1))
    api.deposit(dossier_sip("MSG-AGAIN", final_action="Keep", pieces=3, title="Registres"))
    clock.set(date(2021, 6, 20))
    list_id = api.client.post("/api/v1/disposal-lists", headers=archivist,
                              json={"final_action": "Keep"}).json()["id"]
    api.client.post(f"/api/v1/disposal-lists/{list_id}/approve", headers=archivist, json={})
    assert api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                           headers=archivist).status_code == 200
    sent = api.client.post(f"/api/v1/disposal-lists/{list_id}/outgoing-transfer",
                           headers=archivist, json={"archival_agency": "AD93"})
    assert sent.status_code == 201, sent.text
    url = f"/api/v1/disposal-lists/{list_id}/outgoing-transfer"
    first = api.client.get(url, headers=archivist)
    assert first.status_code == 200
    assert hashlib.sha512(first.content).hexdigest() == sent.json()["sip_sha512"]
    files = list((api.settings.data_dir / "outgoing").glob("*.zip"))
    assert len(files) == 1
    files[0].unlink()
    clock.set(date(2022, 1, 1))
    again = api.client.get(url, headers=archivist)
    assert again.status_code == 200, again.text
    assert again.content == first.content
    with zipfile.ZipFile(io.BytesIO(again.content)) as zf:
        # Dated by the transfer, not by the moment the zip is written.
        assert {info.date_time for info in zf.infolist()} == {(2021, 6, 20, 12, 0, 0)}
