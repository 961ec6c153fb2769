"""A SIP against its ingest contract and archival profile, through the deposit API (SQLite and
PostgreSQL): outside a clause → KO, the clause named in French, nothing stored."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

import seda
from tests.conftest import Api
from tests.contracts.helpers import TEST_PROFILE, add_contract, add_profile
from tests.sipfactory import FileSpec, RuleSpec, SipSpec, build_zip, manifest, simple_sip


def _nothing_stored(api: Api) -> None:
    units = api.client.get("/api/v1/units", headers=api.auth()).json()["items"]
    assert units == []
    for offer in api.runtime.offer_set.offers.values():
        assert list(offer.list_keys("objects/")) == []


def _png() -> bytes:
    """A real 1x1 PNG (what libmagic calls image/png)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def _refused(
    api: Api, spec: SipSpec, *, sip: bytes | None = None, empty: bool = True
) -> list[dict[str, Any]]:
    response = api.deposit(sip if sip is not None else build_zip(spec))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == "KO"
    if empty:
        _nothing_stored(api)
    # The ATR says the same, one Event per fault, KO.
    atr = api.client.get(body["atr_url"], headers=api.auth())
    root = seda.safe_parse(atr.content)
    version = root.tag.split("}")[0].rsplit("v", 1)[-1]
    assert seda.XsdValidator(seda.BUNDLED_XSD_DIR).validate(root, version) == []  # valid SEDA
    reply = seda.read_transfer_reply(atr.content)
    assert reply.reply_code == "KO"
    assert [e.detail for e in reply.events] == [e["message"] for e in body["errors"]]
    errors: list[dict[str, Any]] = body["errors"]
    return errors


def _sip(message_id: str, rule: str = "APP-5Y", **kwargs: Any) -> SipSpec:
    return simple_sip(
        message_id, rules=[RuleSpec("AppraisalRule", rule, final_action="Keep")], **kwargs
    )


def test_inside_the_contract_is_accepted(api: Api) -> None:
    add_profile(api, "PROFIL-TEST", TEST_PROFILE)
    add_contract(
        api,
        record_types=["APP-5Y"],
        rules=["APP-5Y"],
        formats=["application/pdf", "fmt/18"],
        max_object_bytes=10_000,
        max_transfer_bytes=20_000,
        profiles=["PROFIL-TEST"],
    )
    spec = _sip("MSG-C-OK")
    spec.profile = "PROFIL-TEST"
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text


def test_outside_by_record_type(api: Api) -> None:
    add_contract(api, record_types=["APP-10Y"])
    errors = _refused(api, _sip("MSG-C-TYPE", "APP-5Y"))
    assert [e["code"] for e in errors] == ["contract.record_type"]
    assert "clause « types de documents »" in errors[0]["message"]
    assert "APP-5Y" in errors[0]["message"]
    assert errors[0]["where"] == "AU-root"


def test_outside_by_rule(api: Api) -> None:
    add_contract(api, rules=["APP-10Y", "ACC-00001"])
    spec = simple_sip(
        "MSG-C-RULE",
        rules=[
            RuleSpec("AppraisalRule", "APP-10Y", final_action="Destroy"),
            RuleSpec("AccessRule", "ACC-25Y"),
        ],
    )
    errors = _refused(api, spec)
    assert [e["code"] for e in errors] == ["contract.rule"]
    assert "clause « règles de gestion »" in errors[0]["message"]
    assert "ACC-25Y" in errors[0]["message"]


def test_outside_by_format(api: Api) -> None:
    add_contract(api, formats=["application/pdf"])
    spec = _sip("MSG-C-FMT", payload=b"du texte, pas un PDF\n" * 10, uri="Content/note.pdf")
    errors = _refused(api, spec)
    assert [e["code"] for e in errors] == ["contract.format"]
    assert "clause « formats acceptés »" in errors[0]["message"]
    assert "format text/" in errors[0]["message"]
    assert errors[0]["where"] == "BDO-0"


def test_outside_by_size(api: Api) -> None:
    add_contract(api, max_object_bytes=20, max_transfer_bytes=30)
    errors = _refused(api, _sip("MSG-C-SIZE"))
    assert [e["code"] for e in errors] == ["contract.object_size", "contract.transfer_size"]
    assert "clause « taille maximale par objet »" in errors[0]["message"]
    assert "clause « taille maximale par versement »" in errors[1]["message"]


def test_outside_by_profile(api: Api) -> None:
    add_profile(api, "PROFIL-TEST", TEST_PROFILE)
    add_profile(api, "PROFIL-AUTRE", TEST_PROFILE)
    add_contract(api, profiles=["PROFIL-TEST"])
    # No profile named, while the contract lists some.
    errors = _refused(api, _sip("MSG-C-P1"))
    assert [e["code"] for e in errors] == ["contract.profile"]
    assert "clause « profils d'archivage »" in errors[0]["message"]
    # A profile the contract does not allow.
    spec = _sip("MSG-C-P2")
    spec.profile = "PROFIL-AUTRE"
    errors = _refused(api, spec)
    assert [e["code"] for e in errors] == ["contract.profile"]
    assert "PROFIL-AUTRE" in errors[0]["message"]
    # The allowed profile, not met: the line of the manifest is named.
    spec = _sip("MSG-C-P3")
    spec.profile = "PROFIL-TEST"
    sip = build_zip(spec, manifest_bytes=manifest(spec).replace(b"SIP de test", b"Autre chose"))
    errors = _refused(api, spec, sip=sip)
    assert [e["code"] for e in errors] == ["profile.not_met"]
    assert errors[0]["where"] == "line 3"
    assert "profil d'archivage PROFIL-TEST non respecté" in errors[0]["message"]
    assert "Comment" in errors[0]["message"]


def test_a_profile_is_applied_without_a_contract_too(api: Api) -> None:
    add_profile(api, "PROFIL-TEST", TEST_PROFILE)
    spec = _sip("MSG-NC-P")
    spec.agreement = None
    spec.profile = "PROFIL-TEST"
    sip = build_zip(spec, manifest_bytes=manifest(spec).replace(b"SIP de test", b"Autre"))
    assert [e["code"] for e in _refused(api, spec, sip=sip)] == ["profile.not_met"]
    spec.message_id = "MSG-NC-P2"
    assert api.deposit(build_zip(spec)).status_code == 201
    # An unknown profile without a contract: accepted, with a warning saying it was not checked.
    spec.message_id = "MSG-NC-P3"
    spec.profile = "PROFIL-INCONNU"
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201
    assert [w["code"] for w in response.json()["warnings"]] == ["profile.unknown"]


def test_agreement_unknown_inactive_or_of_another_producer(api: Api) -> None:
    add_contract(api)
    add_contract(api, id="CONV-EC", name="État civil", producers=["ETAT-CIVIL"])
    spec = _sip("MSG-A-1")
    spec.agreement = "CONV-INCONNUE"
    assert [e["code"] for e in _refused(api, spec)] == ["contract.unknown"]
    spec.agreement = "CONV-EC"
    errors = _refused(api, spec)
    assert [e["code"] for e in errors] == ["contract.other_producer"]
    assert "URBANISME" in errors[0]["message"]
    # A producer that has a contract may not deposit without naming one.
    spec.agreement = None
    errors = _refused(api, spec)
    assert [e["code"] for e in errors] == ["contract.missing"]
    assert "CONV-2026-01" in errors[0]["message"]
    # Disabled: refused; enabled again: accepted.
    disabled = api.client.post("/api/v1/contracts/CONV-2026-01/disable", headers=api.auth())
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "inactive"
    spec.agreement = "CONV-2026-01"
    assert [e["code"] for e in _refused(api, spec)] == ["contract.inactive"]
    # Its only contract disabled, the producer cannot deposit without one either.
    spec.agreement = None
    assert [e["code"] for e in _refused(api, spec)] == ["contract.missing"]
    spec.agreement = "CONV-2026-01"
    api.client.post("/api/v1/contracts/CONV-2026-01/enable", headers=api.auth())
    assert api.deposit(build_zip(spec)).status_code == 201


def test_out_of_its_period(api: Api) -> None:
    add_contract(api, valid_from="2000-01-01", valid_until="2001-12-31")
    errors = _refused(api, _sip("MSG-PERIOD"))
    assert [e["code"] for e in errors] == ["contract.period"]
    assert "échu le 31/12/2001" in errors[0]["message"]


def test_without_contracts_a_commune_deposits(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # No contract at all: the agreement the SIP names is not checked (the embedded default).
    assert api.deposit(build_zip(_sip("MSG-FREE-1"))).status_code == 201
    # SAE_CONTRACTS_REQUIRED=1: a contract is required, even before any exists.
    monkeypatch.setenv("SAE_CONTRACTS_REQUIRED", "1")
    assert [e["code"] for e in _refused(api, _sip("MSG-FREE-2"), empty=False)] == [
        "contract.unknown"
    ]
    spec = _sip("MSG-FREE-3")
    spec.agreement = None
    assert [e["code"] for e in _refused(api, spec, empty=False)] == ["contract.missing"]


def test_mandatory_checks_that_did_not_run(api: Api) -> None:
    add_contract(api, antivirus_required=True, ocr_required=True)
    spec = _sip("MSG-MANDATORY", payload=_png(), uri="Content/scan.png")
    errors = _refused(api, spec)
    assert [e["code"] for e in errors] == ["contract.ocr_required", "contract.antivirus_required"]
    assert "clause « OCR obligatoire »" in errors[0]["message"]
    assert "clause « antivirus obligatoire »" in errors[1]["message"]


def test_a_puid_clause_is_judged_on_the_pronom_identification(api: Api) -> None:
    """A contract that lists only PRONOM formats: the PUID is known once storing has read the
    file (``sae.ingest.identify``), so the clause is checked then — a PNG (fmt/11) is
    accepted, a PDF refused naming its PUID, its copies discarded."""
    add_contract(api, formats=["fmt/11", "fmt/12", "fmt/13"])
    png = _sip("MSG-PUID-PNG", payload=_png(), uri="Content/s.png")
    png.files[0].mime = "image/png"
    accepted = api.deposit(build_zip(png))
    assert accepted.status_code == 201, accepted.text
    spec = _sip("MSG-PUID-PDF", payload=b"%PDF-1.4\n%%EOF\n", uri="Content/s.pdf")
    response = api.deposit(build_zip(spec))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["code"] for e in errors] == ["contract.format"]
    assert "PRONOM fmt/" in errors[0]["message"]
    assert "clause « formats acceptés »" in errors[0]["message"]
    # Only the PNG's copy is on the offers: the PDF's was discarded.
    for offer in api.runtime.offer_set.offers.values():
        assert len(list(offer.list_keys("objects/"))) == 1


def test_every_fault_at_once(api: Api, tmp_path: Path) -> None:
    add_contract(api, record_types=["APP-10Y"], formats=["image/png"], max_object_bytes=5)
    spec = _sip("MSG-ALL")
    spec.files.append(FileSpec(uri="Content/deux.pdf", data=b"%PDF-1.4 deux"))
    spec.units[0].children[0].files.append(1)
    codes = [e["code"] for e in _refused(api, spec)]
    assert codes == [
        "contract.record_type",
        "contract.format",
        "contract.object_size",
        "contract.format",
        "contract.object_size",
    ]


def test_the_archives_services_own_records_need_no_contract(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disposal circuit archives its visa and certificates through the ingest: no contract
    covers them, even when every deposit needs one."""
    from sae.auth.service import SYSTEM
    from sae.retention.records import archive_record

    monkeypatch.setenv("SAE_CONTRACTS_REQUIRED", "1")
    add_contract(api, producers=["SERVICE-ARCHIVES"], formats=["image/png"])
    with api.runtime.sessions() as session:
        record = archive_record(
            session,
            settings=api.runtime.settings,
            offers=api.runtime.strategy_offers,
            principal=SYSTEM,
            archives_service="SERVICE-ARCHIVES",
            message_id="VISA-TEST-1",
            title="Visa",
            description="Visa des Archives départementales",
            filename="visa.pdf",
            data=b"%PDF-1.4\n% visa\n%%EOF\n",
            mime="application/pdf",
        )
        session.commit()
    assert record.transfer_id
