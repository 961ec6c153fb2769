"""``sae directory ldap|oidc``: an administrator checks the directory sign-in from the shell,
against the real slapd and the real OIDC provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae.cli import app
from tests.ldap_server import Directory, slapd_fixture  # noqa: F401 - the fixture
from tests.oidc_server import oidc_provider

runner = CliRunner()
GROUPS = {
    "cn=SAE-Archivistes,ou=groups,dc=mairie,dc=test": {"role": "archivist"},
    "depot-urbanisme": {"role": "depositor", "producers": ["URBA"]},
}


@pytest.fixture
def ldap_env(slapd: Directory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SAE_GROUP_ROLES", json.dumps(GROUPS))
    monkeypatch.setenv("SAE_LDAP_URL", slapd.url)
    monkeypatch.setenv("SAE_LDAP_START_TLS", "true")
    monkeypatch.setenv("SAE_LDAP_CA_FILE", str(slapd.ca_file))
    monkeypatch.setenv("SAE_LDAP_BIND_DN_TEMPLATE", "uid={login},ou=people,dc=mairie,dc=test")


def test_ldap_check_prints_identity_groups_and_role(ldap_env: None) -> None:
    done = runner.invoke(
        app, ["directory", "ldap", "bdurand", "--password-stdin"], "Urbanisme-2026!\n"
    )
    assert done.exit_code == 0, done.output
    assert "Bruno Durand" in done.output
    assert "cn=depot-urbanisme,ou=groups,dc=mairie,dc=test" in done.output
    assert "depositor" in done.output
    assert "URBA" in done.output
    assert "Urbanisme-2026!" not in done.output


def test_ldap_check_refusals(ldap_env: None) -> None:
    wrong = runner.invoke(app, ["directory", "ldap", "bdurand", "--password-stdin"], "nope\n")
    assert wrong.exit_code == 1
    assert "wrong password" in wrong.output
    unmapped = runner.invoke(
        app, ["directory", "ldap", "cpetit", "--password-stdin"], "Compta-2026!\n"
    )
    assert unmapped.exit_code == 1
    assert "cn=comptabilite" in unmapped.output
    assert "none of these groups" in unmapped.output


def test_oidc_check_reads_the_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with oidc_provider(["http://127.0.0.1:9/console/login/oidc/callback"]) as provider:
        monkeypatch.setenv("SAE_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("SAE_GROUP_ROLES", json.dumps(GROUPS))
        monkeypatch.setenv("SAE_OIDC_ISSUER", provider.issuer)
        monkeypatch.setenv("SAE_OIDC_CLIENT_ID", provider.client_id)
        monkeypatch.setenv("SAE_OIDC_ALLOW_HTTP", "true")
        done = runner.invoke(app, ["directory", "oidc"])
    assert done.exit_code == 0, done.output
    assert f"issuer        {provider.issuer}" in done.output
    assert "keys          1" in done.output


def test_not_configured_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(tmp_path))
    assert runner.invoke(app, ["directory", "ldap", "x", "--password-stdin"], "y\n").exit_code == 2
    assert runner.invoke(app, ["directory", "oidc"]).exit_code == 2
