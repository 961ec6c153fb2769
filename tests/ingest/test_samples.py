"""Real SIPs made by other tools (../shared/seda-samples) get the verdict INDEX.csv predicts."""

from __future__ import annotations

import csv
import hashlib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, Api

SAMPLE_RULES_CSV = """RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement
ACC-00001,AccessRule,Communicabilité immédiate,,0,YEAR
ACC-00002,AccessRule,Secret des délibérations,,25,YEAR
ACC-00003,AccessRule,Secret défense,,50,YEAR
APP-00001,AppraisalRule,Dossier individuel,,80,YEAR
APP-00002,AppraisalRule,Offres non retenues,,5,YEAR
CLASS-00001,ClassificationRule,Réévaluation,,10,YEAR
DIS-00001,DisseminationRule,Diffusion état civil,,75,YEAR
DIS-00002,DisseminationRule,Diffusion décès,,25,YEAR
HOL-00001,HoldRule,Gel illimité,,,
HOL-00002,HoldRule,Gel sans durée,,,
HOL-00003,HoldRule,Gel 1 an,,1,YEAR
REU-00001,ReuseRule,Réutilisation 10 ans,,10,YEAR
STO-00001,StorageRule,DUC 1 an,,1,YEAR
"""

# Samples accepted as they are (schema-valid, every digest right, nothing else wrong).
ACCEPTED = [
    "seda2.1-itests-OK_SIP_2_GO.zip",
    "seda2.2-vitam-WARNING_SIP_mail_Seda2.2.zip",
    "seda2.3-vitam-WARNING_SIP_mail_Seda2.3.zip",
    "seda2.3-vitamdoc-cookbook1_SigningInformation_cas_simple_SIP.zip",
]

# Samples refused, each with its own first error code.
REFUSED = {
    "seda2.1-itests-KO_BORD_empreinte_KO.zip": "sip.digest_mismatch",
    "seda2.1-itests-KO_CYCLE.zip": "seda.unit_cycle",
    "seda2.1-itests-KO_DEUX-Manifest.zip": "sip.several_manifests",
    "seda2.1-itests-KO_BORD_xmlKO_sansobjet.zip": "xml.malformed",
    "sedaX-vitam-KO_SIP_INSUPPORTED_SEDA_VERSION.zip": "seda.unsupported_version",
    "sedaX-vitam-SIP_no_manifest.zip": "sip.no_manifest",
}


def _index() -> list[dict[str, str]]:
    with (SAMPLES / "INDEX.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_the_lists_above_follow_the_index(samples_dir: Path) -> None:
    rows = {r["file"]: r for r in _index()}
    for name in ACCEPTED:
        row = rows[name]
        assert row["official_xsd_result"] == "valid"
        assert row["digest_mismatch"] == "0"
        assert row["missing_files"] == "0"
        assert row["au_cycle"] == "False"
    schema_valid_zips = {
        name
        for name, row in rows.items()
        if name.endswith(".zip")
        and row["official_xsd_result"] == "valid"
        and row["digest_mismatch"] == "0"
        and row["au_cycle"] == "False"
        and "DEUX-Manifest" not in name
    }
    assert schema_valid_zips == set(ACCEPTED)


@pytest.fixture
def sample_api(api: Api) -> Api:
    api.load_rules(SAMPLE_RULES_CSV)
    return api


@pytest.mark.parametrize("name", ACCEPTED)
def test_valid_samples_are_accepted(sample_api: Api, samples_dir: Path, name: str) -> None:
    data = (samples_dir / name).read_bytes()
    response = sample_api.deposit(data)
    assert response.status_code == 201, response.text
    body = response.json()
    row = next(r for r in _index() if r["file"] == name)
    assert len(body["units"]) == int(row["archive_units"])
    assert len(body["objects"]) == int(row["binary_data_objects"]) + int(
        row["physical_data_objects"]
    )
    # Every object comes back byte-identical to the file in the SIP.
    with zipfile.ZipFile(samples_dir / name) as zf:
        digests = {hashlib.sha512(zf.read(i)).hexdigest() for i in zf.infolist()}
    for obj in body["objects"]:
        if obj["sha512"] is None:
            continue
        assert obj["sha512"] in digests
        content = sample_api.client.get(
            f"/api/v1/objects/{obj['id']}/content", headers=sample_api.auth()
        )
        assert hashlib.sha512(content.content).hexdigest() == obj["sha512"]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_invalid_samples_are_refused_with_their_own_code(
    sample_api: Api, samples_dir: Path, name: str
) -> None:
    response = sample_api.deposit((samples_dir / name).read_bytes())
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["status"] == "KO"
    codes = [e["code"] for e in body["errors"]]
    assert codes[0] == REFUSED[name], codes
    assert sample_api.client.get("/api/v1/units", headers=sample_api.auth()).json()["items"] == []


@pytest.mark.parametrize(
    "name",
    sorted(
        r["file"]
        for r in (_index() if (SAMPLES / "INDEX.csv").is_file() else [])
        if r["file"].endswith(".zip") and r["official_xsd_result"] == "invalid"
    ),
)
def test_schema_invalid_samples_are_refused_with_the_schema_fault(
    sample_api: Api, samples_dir: Path, name: str
) -> None:
    response = sample_api.deposit((samples_dir / name).read_bytes())
    assert response.status_code == 422, response.text
    codes = [e["code"] for e in response.json()["errors"]]
    assert any(c.startswith("xsd.") for c in codes), codes


def test_tolerated_vitam_extension_is_accepted_with_a_warning(
    sample_api: Api, samples_dir: Path, xsd_dir: Path
) -> None:
    import seda

    name = "seda2.2-vitam-OK_SEDA_2.2_SigningInformationAsExtension.zip"
    data = (samples_dir / name).read_bytes()
    refused = sample_api.deposit(data)
    assert refused.status_code == 422
    sample_api.runtime.settings.seda_tolerances = ["seda-2.3-elements-in-2.2"]
    accepted = sample_api.deposit(data, xml=True)
    assert accepted.status_code == 201, accepted.text
    reply = seda.read_transfer_reply(accepted.content)
    assert reply.reply_code == "WARNING"
    assert any(e.outcome == "WARNING" for e in reply.events)
    root = seda.safe_parse(accepted.content)
    assert seda.XsdValidator(xsd_dir).validate(root, "2.2") == []


def test_unknown_tolerance_is_refused_at_startup(tmp_path: Path) -> None:
    import pytest

    from sae.config import ConfigurationError, load_settings

    with pytest.raises(ConfigurationError, match="SAE_SEDA_TOLERANCES"):
        load_settings(data_dir=tmp_path, seda_tolerances=["accept-everything"])
