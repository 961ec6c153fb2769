"""docker-compose.yml declares what docs/storage.md says (it cannot run here: no Docker)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sae.storage.offers import parse_offers
from sae.storage.s3 import S3Offer

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _documented_services() -> set[str]:
    text = (REPO / "docs" / "storage.md").read_text(encoding="utf-8")
    section = text.split("## docker compose", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE))


def test_services_are_those_documented() -> None:
    services = _compose()["services"]
    assert (
        set(services)
        == _documented_services()
        == {"sae", "postgres", "minio-a", "minio-b", "buckets"}
    )


def test_long_running_services_have_healthchecks_and_order() -> None:
    services = _compose()["services"]
    for name in ("sae", "postgres", "minio-a", "minio-b"):
        assert "healthcheck" in services[name], name
        assert services[name]["healthcheck"]["test"], name
    assert services["sae"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "buckets": {"condition": "service_completed_successfully"},
    }
    assert services["buckets"]["depends_on"] == {
        "minio-a": {"condition": "service_healthy"},
        "minio-b": {"condition": "service_healthy"},
    }


def test_buckets_are_created_with_object_lock_in_their_region() -> None:
    services = _compose()["services"]
    script = "\n".join(services["buckets"]["command"])
    offers = yaml.safe_load((REPO / "deploy" / "offers.compose.yaml").read_text())["offers"]
    for offer in offers:
        host = offer["endpoint"].split("//")[1].split(":")[0]
        region = services[host]["environment"]["MINIO_SITE_REGION"]
        assert offer["region"] == region
        assert re.search(
            rf"mc mb .*--with-lock --region {region} \w/{offer['bucket']}$", script, re.M
        ), offer["name"]


def test_offers_file_is_production_grade_and_loads() -> None:
    services = _compose()["services"]
    env = services["sae"]["environment"]
    assert env["SAE_OFFERS_FILE"] == "/srv/sae/deploy/offers.compose.yaml"
    secrets = {k: "x" for k in env if k.startswith("SAE_S3_")}
    offer_set = parse_offers(REPO / "deploy" / "offers.compose.yaml", secrets)
    assert offer_set.production is True
    copies = offer_set.copies()
    assert len(copies) == 2
    assert all(isinstance(o, S3Offer) and o.jurisdiction == "FR" for o in copies)
    assert len({o.site for o in copies}) == 2
    assert parse_offers(
        REPO / "deploy" / "offers.example.yaml",
        {"SAE_S3_CLOUD_ACCESS_KEY": "x", "SAE_S3_CLOUD_SECRET_KEY": "y"},
    ).production


def test_no_secret_in_the_file_and_ports_on_loopback() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET).*:", line) and "${" not in line:
            assert line.strip().startswith("#"), line
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
