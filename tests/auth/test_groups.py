"""Group → role mapping (``SAE_GROUP_ROLES``) and the sign-in settings refused at start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sae.auth.groups import GroupRole, NoMappedGroup, resolve_role
from sae.config import ConfigurationError, Settings, load_settings

MAPPING = {
    "CN=SAE-Archivistes, OU=Groupes, DC=mairie, DC=local": GroupRole(role="archivist"),
    "sae-admins": GroupRole(role="admin"),
    "depot-urbanisme": GroupRole(role="depositor", producers=("URBA",)),
    "depot-etat-civil": GroupRole(role="depositor", producers=("EC",)),
    "lecteurs": GroupRole(role="reader"),
}


def test_dn_keys_match_dns_whatever_the_case_and_spaces() -> None:
    grant = resolve_role("a", ["cn=sae-archivistes,ou=groupes,dc=mairie,dc=local"], MAPPING)
    assert grant.role == "archivist"


def test_a_dn_key_does_not_match_the_same_name_elsewhere() -> None:
    # Anyone allowed to create a group "SAE-Archivistes" in another OU gets nothing from it.
    with pytest.raises(NoMappedGroup):
        resolve_role("a", ["CN=SAE-Archivistes,OU=Invites,DC=mairie,DC=local"], MAPPING)
    with pytest.raises(NoMappedGroup):
        resolve_role("a", ["SAE-Archivistes"], MAPPING)


def test_name_keys_match_names_and_the_cn_of_dns() -> None:
    assert resolve_role("a", ["Lecteurs"], MAPPING).role == "reader"
    assert resolve_role("a", ["cn=lecteurs,ou=groups,dc=x"], MAPPING).role == "reader"
    assert resolve_role("a", ["ou=lecteurs,dc=x"], MAPPING).role == "reader"


def test_highest_role_wins_with_its_producers_only() -> None:
    grant = resolve_role("a", ["lecteurs", "depot-urbanisme", "depot-etat-civil"], MAPPING)
    assert (grant.role, grant.producers) == ("depositor", ("EC", "URBA"))
    assert grant.groups == ("depot-etat-civil", "depot-urbanisme")
    top = resolve_role("a", ["depot-urbanisme", "sae-admins", "lecteurs"], MAPPING)
    assert (top.role, top.producers) == ("admin", ())


def test_no_mapped_group_is_refused_in_french() -> None:
    with pytest.raises(NoMappedGroup) as refused:
        resolve_role("cpetit", ["comptabilite", "tout-le-personnel"], MAPPING)
    assert "aucun de vos groupes ne donne accès" in str(refused.value)
    with pytest.raises(NoMappedGroup):
        resolve_role("cpetit", [], MAPPING)


def test_mapping_from_the_environment_and_a_yaml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "SAE_GROUP_ROLES", json.dumps({"sae-admins": {"role": "admin"}, "lecteurs": "reader"})
    )
    with pytest.raises(ConfigurationError, match="SAE_GROUP_ROLES"):
        load_settings()
    monkeypatch.setenv(
        "SAE_GROUP_ROLES",
        json.dumps({"sae-admins": {"role": "admin"}, "lecteurs": {"role": "reader"}}),
    )
    extra = tmp_path / "groupes.yaml"
    extra.write_text(
        "depot-urbanisme: {role: depositor, producers: [URBA]}\n"
        "'CN=SAE-Archivistes,OU=Groupes,DC=mairie,DC=local': {role: archivist}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SAE_GROUP_ROLES_FILE", str(extra))
    settings = load_settings()
    assert set(settings.group_roles) == {
        "sae-admins",
        "lecteurs",
        "depot-urbanisme",
        "CN=SAE-Archivistes,OU=Groupes,DC=mairie,DC=local",
    }
    assert settings.group_roles["depot-urbanisme"].producers == ("URBA",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"group_roles": {"x": {"role": "chef"}}}, "unknown role"),
        ({"group_roles": {"x": {"role": "depositor"}}}, "needs its producing services"),
        ({"group_roles": {"x": {"role": "archivist", "producers": ["A"]}}}, "must be empty"),
        (
            {"group_roles": {"cn=A,dc=x": {"role": "reader"}, "CN=a, DC=x": {"role": "admin"}}},
            "are the same group",
        ),
        ({"ldap_url": "ldaps://ad.mairie.local"}, "need SAE_GROUP_ROLES"),
        ({"oidc_issuer": "https://idp.example", "oidc_client_id": "sae"}, "need SAE_GROUP_ROLES"),
    ],
)
def test_bad_mapping_refused_at_start(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**values)


LDAP_OK: dict[str, Any] = {
    "group_roles": {"lecteurs": {"role": "reader"}},
    "ldap_url": "ldaps://ad.mairie.local",
    "ldap_bind_dn_template": "{login}@mairie.local",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ldap_url": "ldap://ad.mairie.local"}, "send passwords in clear"),
        ({"ldap_url": "http://ad.mairie.local"}, "must be ldap://"),
        ({"ldap_start_tls": True}, "not ldaps://"),
        ({"ldap_bind_dn_template": "uid=x,dc=mairie"}, "must contain {login}"),
        ({"ldap_bind_dn_template": None}, "exactly one of"),
        ({"ldap_service_dn": "cn=sae,dc=mairie"}, "exactly one of"),
        (
            {"ldap_bind_dn_template": None, "ldap_service_dn": "cn=sae,dc=mairie"},
            "needs SAE_LDAP_SERVICE_PASSWORD",
        ),
        (
            {
                "ldap_bind_dn_template": None,
                "ldap_service_dn": "cn=sae,dc=mairie",
                "ldap_service_password": "x",
            },
            "needs SAE_LDAP_USER_BASE",
        ),
    ],
)
def test_bad_ldap_settings_refused_at_start(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**{**LDAP_OK, **change})


def test_ldap_settings_accepted() -> None:
    settings = load_settings(**LDAP_OK)
    assert settings.ldap_url == "ldaps://ad.mairie.local"
    starttls = load_settings(**{**LDAP_OK, "ldap_url": "ldap://ad:389", "ldap_start_tls": True})
    assert starttls.ldap_start_tls is True


OIDC_OK: dict[str, Any] = {
    "group_roles": {"lecteurs": {"role": "reader"}},
    "oidc_issuer": "https://idp.mairie.example/realms/mairie",
    "oidc_client_id": "sae",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"oidc_issuer": "http://idp.mairie.example"}, "https://"),
        ({"oidc_client_id": None}, "needs SAE_OIDC_CLIENT_ID"),
        ({"oidc_scopes": "profile email"}, "must include openid"),
        ({"oidc_algorithms": "RS256,HS256"}, "refused algorithm"),
        ({"oidc_algorithms": "none"}, "refused algorithm"),
    ],
)
def test_bad_oidc_settings_refused_at_start(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**{**OIDC_OK, **change})


def test_oidc_algorithms_from_a_comma_list() -> None:
    settings = Settings(**{**OIDC_OK, "oidc_algorithms": "ES256, RS256"})
    assert settings.oidc_algorithms == ["ES256", "RS256"]


def test_directory_secrets_never_reach_the_log(tmp_path: Path) -> None:
    import io
    import logging

    from sae.logs import configure_logging

    settings = load_settings(
        data_dir=tmp_path,
        log_format="text",
        group_roles={"lecteurs": {"role": "reader"}},
        ldap_url="ldaps://ad.mairie.local",
        ldap_service_dn="cn=sae,dc=mairie",
        ldap_service_password="ldap-service-secret-42",
        ldap_user_base="dc=mairie",
        oidc_issuer="https://idp.mairie.example",
        oidc_client_id="sae",
        oidc_client_secret="oidc-client-secret-42",
    )
    stream = io.StringIO()
    handler = configure_logging(settings, stream=stream)
    try:
        logging.getLogger("tests.sso").warning(
            "bind with ldap-service-secret-42 and oidc-client-secret-42 failed"
        )
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "bind with" in text
    assert "ldap-service-secret-42" not in text
    assert "oidc-client-secret-42" not in text
