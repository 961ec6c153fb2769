"""Security headers on every answer, and CORS closed unless configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sae.app import create_app
from sae.config import Settings, load_settings
from tests.conftest import Api

ORIGIN = "https://ged.mairie.example"


def check_headers(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] in ("no-referrer", "same-origin")
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp


def test_every_kind_of_answer_carries_the_headers(api: Api) -> None:
    for response in (
        api.client.get("/health"),
        api.client.get("/api/v1/units", headers=api.auth()),
        api.client.get("/api/v1/units"),  # a 401 problem
        api.client.get("/api/v1/nowhere", headers=api.auth()),  # a 404
        api.client.get("/console/connexion"),
        api.client.get("/console/static/console.css"),
        api.client.get("/openapi.json"),
        api.client.get("/docs"),
    ):
        check_headers(response)
    assert "script-src 'self'" in api.client.get("/docs").headers["content-security-policy"]
    init = api.client.get("/docs/swagger-init.js")
    assert init.status_code == 200
    assert "SwaggerUIBundle" in init.text
    assert "<script>" not in api.client.get("/docs").text  # no inline script


def test_cors_is_closed_by_default(api: Api) -> None:
    preflight = api.client.options(
        "/api/v1/units",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = api.client.get("/api/v1/units", headers={**api.auth(), "Origin": ORIGIN})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


@pytest.fixture
def open_to_ged(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    configured = load_settings(
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        seda_xsd_dir=settings.seda_xsd_dir,
        cors_origins=ORIGIN,
    )
    with TestClient(create_app(configured)) as client:
        yield client


def test_cors_opens_to_the_configured_origins_only(open_to_ged: TestClient) -> None:
    preflight = open_to_ged.options(
        "/api/v1/units",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-credentials" not in preflight.headers
    other = open_to_ged.options(
        "/api/v1/units",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    check_headers(preflight)


def test_a_wildcard_origin_is_refused(settings: Settings) -> None:
    from sae.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="SAE_CORS_ORIGINS"):
        load_settings(data_dir=settings.data_dir, cors_origins="*")
