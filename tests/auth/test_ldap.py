"""LDAP sign-in against a real OpenLDAP slapd (``tests/ldap_server.py``): direct bind, search
then bind with Active Directory's filter, groups from memberOf or a group search, and what a
hostile or careless login must not achieve."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from sae.auth.errors import DirectoryUnavailable
from sae.auth.groups import NoMappedGroup, resolve_role
from sae.auth.ldap import LdapDirectory
from sae.config import Settings
from tests.conftest import require
from tests.ldap_server import Directory, slapd_fixture  # noqa: F401 - the fixture

PEOPLE = "ou=people,dc=mairie,dc=test"
GROUPS = "ou=groups,dc=mairie,dc=test"
MAPPING: dict[str, Any] = {
    f"cn=SAE-Archivistes,{GROUPS}": {"role": "archivist"},
    "sae-admins": {"role": "admin"},
    "depot-urbanisme": {"role": "depositor", "producers": ["URBA"]},
    "depot-etat-civil": {"role": "depositor", "producers": ["EC"]},
    "lecteurs": {"role": "reader"},
}


def direct(directory: Directory, **more: Any) -> LdapDirectory:
    values: dict[str, Any] = {
        "ldap_url": directory.url,
        "ldap_allow_plaintext": True,
        "ldap_bind_dn_template": f"uid={{login}},{PEOPLE}",
        "group_roles": MAPPING,
    }
    values.update(more)
    return LdapDirectory(Settings(**values))


def searching(directory: Directory, **more: Any) -> LdapDirectory:
    """Search then bind, as against Active Directory (sAMAccountName, memberOf)."""
    values: dict[str, Any] = {
        "ldap_url": directory.url,
        "ldap_allow_plaintext": True,
        "ldap_service_dn": "cn=sae-service,dc=mairie,dc=test",
        "ldap_service_password": "service-secret",
        "ldap_user_base": PEOPLE,
        "ldap_user_filter": "(sAMAccountName={login})",
        "group_roles": MAPPING,
    }
    values.update(more)
    return LdapDirectory(Settings(**values))


def test_direct_bind_signs_in_with_name_mail_and_groups(slapd: Directory) -> None:
    identity = direct(slapd).authenticate("amartin", "Archives-2026!")
    assert identity is not None
    assert identity.login == "amartin"
    assert identity.display_name == "Anne Martin"
    assert identity.email == "anne.martin@mairie.test"
    assert identity.source == "ldap"
    assert {g.lower() for g in identity.groups} == {
        f"cn=sae-archivistes,{GROUPS}",
        f"cn=lecteurs,{GROUPS}",
    }
    grant = resolve_role(identity.login, identity.groups, direct(slapd).settings.group_roles)
    assert grant.role == "archivist"
    assert grant.producers == ()


def test_search_then_bind_with_active_directory_filter(slapd: Directory) -> None:
    # sAMAccountName compares without case, as AD does: "amartin" finds "AMartin".
    identity = searching(slapd).authenticate("amartin", "Archives-2026!")
    assert identity is not None
    assert identity.login == "amartin"
    assert identity.display_name == "Anne Martin"
    grant = resolve_role(identity.login, identity.groups, MAPPING_MODELS())
    assert grant.role == "archivist"


def MAPPING_MODELS() -> Any:  # noqa: N802 - reads as the constant it stands for
    return Settings(group_roles=MAPPING).group_roles


def test_wrong_password_refused(slapd: Directory) -> None:
    assert direct(slapd).authenticate("amartin", "archives-2026!") is None
    assert searching(slapd).authenticate("amartin", "Urbanisme-2026!") is None
    assert searching(slapd).authenticate("nobody", "Archives-2026!") is None


def test_empty_password_refused_before_any_bind(slapd: Directory) -> None:
    # This server, like many, answers a bind with a DN and no password with success (an
    # anonymous bind): ldapwhoami shows it. SAE must refuse before asking.
    whoami = shutil.which("ldapwhoami")
    require(whoami, "ldapwhoami not installed (Debian package ldap-utils)")
    assert whoami is not None
    anonymous = subprocess.run(  # noqa: S603 - fixed arguments
        [whoami, "-x", "-H", slapd.url, "-D", f"uid=amartin,{PEOPLE}", "-w", ""],
        capture_output=True,
        text=True,
        check=False,
    )
    assert anonymous.returncode == 0, anonymous.stderr
    assert anonymous.stdout.strip() == "anonymous"
    assert direct(slapd).authenticate("amartin", "") is None
    assert searching(slapd).authenticate("amartin", "") is None


def test_user_in_no_mapped_group_is_refused(slapd: Directory) -> None:
    identity = direct(slapd).authenticate("cpetit", "Compta-2026!")
    assert identity is not None  # the directory knows her...
    assert [g.lower() for g in identity.groups] == [f"cn=comptabilite,{GROUPS}"]
    with pytest.raises(NoMappedGroup) as refused:  # ...but SAE does not let her in
        resolve_role(identity.login, identity.groups, MAPPING_MODELS())
    assert "aucun de vos groupes" in str(refused.value)


def test_highest_role_wins_and_producers_add_up(slapd: Directory) -> None:
    admin = direct(slapd).authenticate("dlefevre", "Admin-2026!")
    assert admin is not None
    assert admin.display_name == "Denis Lefèvre"
    assert resolve_role(admin.login, admin.groups, MAPPING_MODELS()).role == "admin"

    depositor = searching(slapd).authenticate("BDurand", "Urbanisme-2026!")
    assert depositor is not None
    assert depositor.login == "bdurand"
    assert depositor.display_name == "Bruno Durand"  # no displayName: the cn
    grant = resolve_role(depositor.login, depositor.groups, MAPPING_MODELS())
    assert grant.role == "depositor"  # above "lecteurs"' reader
    assert grant.producers == ("EC", "URBA")


def test_groups_by_search_when_the_directory_has_no_member_of(slapd: Directory) -> None:
    directory = searching(slapd, ldap_group_base=GROUPS)
    identity = directory.authenticate("bdurand", "Urbanisme-2026!")
    assert identity is not None
    assert {g.lower() for g in identity.groups} == {
        f"cn=depot-urbanisme,{GROUPS}",
        f"cn=depot-etat-civil,{GROUPS}",
        f"cn=lecteurs,{GROUPS}",
    }


@pytest.mark.parametrize(
    "login",
    [
        "*",
        "am*",
        "amartin)(uid=*",
        "*)(|(uid=*",
        "amartin)(|(objectClass=*",
        f"amartin,{PEOPLE}",
        "cn=admin,dc=mairie,dc=test",
        "amartin\x00",
    ],
)
def test_injection_attempts_are_harmless(slapd: Directory, login: str) -> None:
    # Each with amartin's password: a filter or DN widened by the login would let it through.
    assert searching(slapd).authenticate(login, "Archives-2026!") is None
    assert searching(slapd, ldap_group_base=GROUPS).authenticate(login, "Archives-2026!") is None
    assert direct(slapd).authenticate(login, "Archives-2026!") is None
    # Such logins never reach the directory (no account can have them); past that first line,
    # the escaping alone keeps them harmless.
    unguarded = "_search_then_bind", "_direct_bind"
    for directory, step in zip((searching(slapd), direct(slapd)), unguarded, strict=True):
        assert getattr(directory, step)(login, "Archives-2026!") is None


def test_the_escaping_is_what_keeps_a_wildcard_out(slapd: Directory) -> None:
    # The control for the test above: the same filter with the login NOT escaped finds amartin.
    from ldap3 import Connection

    conn = Connection(slapd.url, "cn=sae-service,dc=mairie,dc=test", "service-secret")
    assert conn.bind()
    try:
        conn.search(PEOPLE, "(sAMAccountName=am*)", attributes=["uid"])
        assert [e.entry_dn for e in conn.entries] == [f"uid=amartin,{PEOPLE}"]
    finally:
        conn.unbind()


def test_admin_login_with_root_password_is_not_the_root(slapd: Directory) -> None:
    # The template makes a DN under ou=people whatever the login says.
    assert direct(slapd).authenticate("admin", slapd.root_password) is None


def test_unreachable_directory_is_a_clear_503() -> None:
    from tests.ldap_server import _free_port

    directory = LdapDirectory(
        Settings(
            ldap_url=f"ldap://127.0.0.1:{_free_port()}",
            ldap_allow_plaintext=True,
            ldap_bind_dn_template=f"uid={{login}},{PEOPLE}",
            ldap_timeout_seconds=2,
            group_roles=MAPPING,
        )
    )
    with pytest.raises(DirectoryUnavailable) as down:
        directory.authenticate("amartin", "Archives-2026!")
    assert down.value.status == 503
    assert "ne répond pas" in str(down.value)


def test_service_account_refused_is_a_clear_503(slapd: Directory) -> None:
    with pytest.raises(DirectoryUnavailable, match="compte de service"):
        searching(slapd, ldap_service_password="wrong").authenticate("amartin", "Archives-2026!")


def test_start_tls_and_ldaps_with_the_directory_ca(slapd: Directory) -> None:
    for url, start_tls in ((slapd.url, True), (slapd.ldaps_url, False)):
        directory = direct(
            slapd,
            ldap_url=url,
            ldap_start_tls=start_tls,
            ldap_allow_plaintext=False,
            ldap_ca_file=slapd.ca_file,
        )
        identity = directory.authenticate("amartin", "Archives-2026!")
        assert identity is not None, url
        assert identity.display_name == "Anne Martin"


def test_a_certificate_not_from_the_configured_ca_is_refused(slapd: Directory) -> None:
    # Without SAE_LDAP_CA_FILE the system's CAs are used, and they did not issue the test
    # directory's certificate: the password is never sent.
    for url, start_tls in ((slapd.url, True), (slapd.ldaps_url, False)):
        directory = direct(
            slapd, ldap_url=url, ldap_start_tls=start_tls, ldap_allow_plaintext=False
        )
        with pytest.raises(DirectoryUnavailable):
            directory.authenticate("amartin", "Archives-2026!")


# ldap3 checks the name after wrapping the socket and, when it does not match, drops the TLS
# socket without closing it (Python closes it, with a ResourceWarning): not SAE's to close.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_certificate_for_another_name_is_refused(slapd: Directory) -> None:
    # The certificate names 127.0.0.1 only: reached as "localhost", with the right CA, the
    # directory is refused as an impostor would be.
    for url, start_tls in ((slapd.url, True), (slapd.ldaps_url, False)):
        directory = direct(
            slapd,
            ldap_url=url.replace("127.0.0.1", "localhost"),
            ldap_start_tls=start_tls,
            ldap_allow_plaintext=False,
            ldap_ca_file=slapd.ca_file,
        )
        with pytest.raises(DirectoryUnavailable):
            directory.authenticate("amartin", "Archives-2026!")
