"""SAE runs with an S3 user holding only ``deploy/s3-policy.json``; without the governance bypass
and with a quarantine configured, the start is refused naming the missing permission."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sae.config import Settings
from sae.storage.errors import PermissionMissing
from sae.storage.offers import check_offers, load_offers
from tests.conftest import TEST_RULES_CSV, Api
from tests.deploy.s3_users import (
    POLICY,
    QUARANTINE_SID,
    REPO,
    SaeBucket,
    admin_client,
    least_privilege_bucket,
    offers_yaml,
    versions,
)
from tests.s3_server import S3Server
from tests.sipfactory import build_zip, simple_sip

BYPASS = "s3:BypassGovernanceRetention"


def _settings(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sites: list[SaeBucket],
    *,
    quarantine_days: int,
) -> Settings:
    text, env = offers_yaml(sites, quarantine_days=quarantine_days)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    offers_file = tmp_path / "offers.yaml"
    offers_file.write_text(text, encoding="utf-8")
    return settings.model_copy(update={"offers_file": offers_file})


def test_the_policy_grants_the_bypass_apart_and_every_action_is_documented() -> None:
    policy = json.loads(POLICY.read_text())
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"SaeBucket", "SaeObjects", QUARANTINE_SID}
    assert all(s["Effect"] == "Allow" for s in by_sid.values())
    # The bypass is in a statement of its own, to be removed where no quarantine is configured.
    assert by_sid[QUARANTINE_SID]["Action"] == [BYPASS]
    others = {a for sid, s in by_sid.items() if sid != QUARANTINE_SID for a in s["Action"]}
    assert BYPASS not in others
    assert not any("*" in action for action in others)  # no wildcard action
    # Bucket actions on the bucket, object actions on its objects, and nothing else.
    assert by_sid["SaeBucket"]["Resource"] == ["arn:aws:s3:::SAE_BUCKET"]
    for sid in ("SaeObjects", QUARANTINE_SID):
        assert by_sid[sid]["Resource"] == ["arn:aws:s3:::SAE_BUCKET/*"]
    # docs/deploy.md says why SAE needs each one.
    documented = set(re.findall(r"^\| `(s3:\w+)` \|", (REPO / "docs/deploy.md").read_text(), re.M))
    assert documented == others | {BYPASS}


@pytest.mark.s3
def test_sae_ingests_reads_audits_and_withdraws_with_the_policy_alone(
    ceph_rgw: S3Server, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from sae.app import create_app

    sites = [least_privilege_bucket(ceph_rgw), least_privilege_bucket(ceph_rgw)]
    restricted = _settings(settings, tmp_path, monkeypatch, sites, quarantine_days=1)
    with TestClient(create_app(restricted), raise_server_exceptions=False) as client:
        api = Api(client, restricted)
        api.load_rules(TEST_RULES_CSV)
        payload = b"Deliberation du conseil municipal\n" * 100
        reply = api.deposit(build_zip(simple_sip("MSG-LEAST-1", payload=payload)))
        assert reply.status_code == 201, reply.text
        object_id = reply.json()["objects"][0]["id"]
        for site in sites:  # a copy on each site, as the administrator sees the buckets
            assert f"objects/{object_id}" in versions(ceph_rgw, site.bucket)

        content = client.get(f"/api/v1/objects/{object_id}/content", headers=api.auth())
        assert content.status_code == 200
        assert content.content == payload

        auditor = api.token("auditor")
        started = client.post("/api/v1/audits", json={}, headers=api.auth(auditor))
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 60
        while True:
            audit = client.get(
                f"/api/v1/audits/{started.json()['id']}", headers=api.auth(auditor)
            ).json()
            if audit["status"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert audit["status"] == "done", audit
        assert audit["checked"] >= 2
        assert audit["problems"] == []

        # The quarantine's withdrawal lifts the GOVERNANCE lock: the bypass the policy grants.
        second = api.deposit(build_zip(simple_sip("MSG-LEAST-2")))
        assert second.status_code == 201, second.text
        withdrawn = client.post(
            f"/api/v1/transfers/{second.json()['transfer_id']}/withdrawal",
            json={"reason": "Versé par erreur"},
            headers=api.auth(api.token("archivist")),
        )
        assert withdrawn.status_code == 200, withdrawn.text
        gone = f"objects/{second.json()['objects'][0]['id']}"
        for site in sites:
            assert gone not in versions(ceph_rgw, site.bucket)


@pytest.mark.s3
def test_without_the_bypass_a_quarantine_refuses_the_start_naming_it(
    ceph_rgw: S3Server, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sites = [least_privilege_bucket(ceph_rgw), least_privilege_bucket(ceph_rgw, bypass="deny")]
    restricted = _settings(settings, tmp_path, monkeypatch, sites, quarantine_days=7)
    with pytest.raises(PermissionMissing) as refused:
        check_offers(load_offers(restricted))  # what the start runs
    assert refused.value.code == "storage.offers_permission"
    assert refused.value.offer == "site-2"
    assert refused.value.action == BYPASS
    # The probe is removed, and none is left on the site whose user holds the bypass either.
    for site in sites:
        assert versions(ceph_rgw, site.bucket) == []

    # What the operator sees: the start refused, the offer and the action named.
    started = subprocess.run(
        [sys.executable, "-m", "sae", "init"],
        env={
            **os.environ,
            "COLUMNS": "300",
            "SAE_DATA_DIR": str(tmp_path / "cli-data"),
            "SAE_DATABASE_URL": restricted.db_url,
            "SAE_OFFERS_FILE": str(restricted.offers_file),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = " ".join(started.stderr.split())
    assert started.returncode == 2, started.stderr
    assert "configuration refused: offer 'site-2': the S3 user is refused " + BYPASS in said
    assert "grant it (see deploy/s3-policy.json)" in said


@pytest.mark.s3
def test_without_a_quarantine_the_bypass_is_not_needed(
    ceph_rgw: S3Server, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sites = [least_privilege_bucket(ceph_rgw, bypass="deny") for _ in range(2)]
    restricted = _settings(settings, tmp_path, monkeypatch, sites, quarantine_days=0)
    assert check_offers(load_offers(restricted), require_available=True) == []


@pytest.mark.s3
def test_a_bucket_default_retention_skips_the_probe_rather_than_lock_it(
    ceph_rgw: S3Server,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sites = [least_privilege_bucket(ceph_rgw, bypass="deny") for _ in range(2)]
    admin_client(ceph_rgw).put_object_lock_configuration(
        Bucket=sites[0].bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    restricted = _settings(settings, tmp_path, monkeypatch, sites, quarantine_days=7)
    with pytest.raises(PermissionMissing) as refused:
        check_offers(load_offers(restricted))
    assert refused.value.offer == "site-2"  # site-1 was not probed: nothing written there
    assert versions(ceph_rgw, sites[0].bucket) == []
    assert "storage.permission_check_skipped offer=site-1" in caplog.text
