"""Sign-in against the commune's directory: an LDAP bind (OpenLDAP, Active Directory).

Two ways to find the person's entry, chosen by the settings (``docs/sso.md``):

- **direct bind**: ``SAE_LDAP_BIND_DN_TEMPLATE`` (``uid={login},ou=people,dc=…`` or, for Active
  Directory, ``{login}@mairie.local``) gives the DN to bind as; the entry is then read with the
  person's own rights;
- **search then bind**: a service account (``SAE_LDAP_SERVICE_DN``) searches
  ``SAE_LDAP_USER_BASE`` with ``SAE_LDAP_USER_FILTER`` (``(sAMAccountName={login})`` on AD), then
  SAE binds as the one entry found with the password typed.

The person's groups come from the entry's ``memberOf`` (AD, OpenLDAP's memberof overlay) or, with
``SAE_LDAP_GROUP_BASE``, from a search for the groups naming the entry as a member.

What a hostile login cannot do: the login is escaped as an RFC 4514 DN value in the template and
as an RFC 4515 filter value in the filters, so ``*)(uid=*`` is a login that matches nothing. An
empty password is refused before any bind: LDAP takes a simple bind with a DN and no password as
an *unauthenticated* bind (RFC 4513 §5.1.2) and many servers answer it with success.
"""

from __future__ import annotations

import logging
import ssl
import warnings
from collections.abc import Iterable
from typing import Any

from sae.auth.accounts import ExternalIdentity, fold_login
from sae.auth.errors import DirectoryUnavailable, InvalidAccount
from sae.auth.groups import NoMappedGroup, resolve_role
from sae.config import Settings

with warnings.catch_warnings():
    # ldap3 2.9.1 (its last release) imports pyasn1's tagMap, which pyasn1 >= 0.6.1 reports as
    # deprecated on import; the name still works. Silenced here only, not for the process.
    warnings.filterwarnings("ignore", "tagMap is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "typeMap is deprecated", DeprecationWarning)
    from ldap3 import BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn

log = logging.getLogger("sae.auth.ldap")

MAX_LOGIN = 256
MAX_PASSWORD = 1024
INVALID_CREDENTIALS = 49  # LDAP result code (RFC 4511 §4.1.9)


def acceptable_login(login: str) -> bool:
    """A login worth sending to the directory: one an SAE account can have (letters, digits,
    ``. _ @ + ' -``), so never a filter's ``*()`` or a DN's ``,=``: escaping stays the second
    line of defence."""
    if not 0 < len(login) <= MAX_LOGIN:
        return False
    try:
        fold_login(login)
    except InvalidAccount:
        return False
    return True


class LdapDirectory:
    """The commune's directory, asked for one person's password at a time.

    Implements the password sign-in's ``PasswordDirectory``: :meth:`authenticate` returns the
    person's identity when the directory accepts the password, None when it refuses it or does
    not know the login, and raises :class:`DirectoryUnavailable` when it cannot be asked.
    """

    def __init__(self, settings: Settings) -> None:
        if settings.ldap_url is None:
            raise ValueError("SAE_LDAP_URL is not set")
        self.settings = settings
        self._server = _server(settings)

    # --- the protocol ---------------------------------------------------------------------

    def authenticate(self, login: str, password: str) -> ExternalIdentity | None:
        """The identity of ``login`` when ``password`` is right; None otherwise."""
        login = login.strip()
        if not password or len(password) > MAX_PASSWORD or not acceptable_login(login):
            # Never bind with an empty password: that is an anonymous bind, a "success".
            return None
        try:
            if self.settings.ldap_service_dn is not None:
                return self._search_then_bind(login, password)
            return self._direct_bind(login, password)
        except LDAPException as exc:
            log.warning("auth.ldap_unavailable: %s: %s", type(exc).__name__, exc)
            raise DirectoryUnavailable(
                "L'annuaire de la commune ne répond pas ; réessayez dans quelques minutes."
            ) from None

    def access(self, identity: ExternalIdentity) -> tuple[str, tuple[str, ...]] | None:
        """The role and producers the person's groups grant (``SAE_GROUP_ROLES``), None when
        no group of theirs is mapped (the sign-in is then refused)."""
        try:
            grant = resolve_role(identity.login, identity.groups, self.settings.group_roles)
        except NoMappedGroup:
            log.info("auth.no_mapped_group: %r (%s)", identity.login, identity.source)
            return None
        return grant.role, grant.producers

    # --- the two ways -----------------------------------------------------------------------

    def _direct_bind(self, login: str, password: str) -> ExternalIdentity | None:
        s = self.settings
        assert s.ldap_bind_dn_template is not None
        bind_dn = s.ldap_bind_dn_template.replace("{login}", escape_rdn(login))
        conn = self._bound(bind_dn, password)
        if conn is None:
            return None
        try:
            if s.ldap_user_base:
                # The template may not be a DN (AD's login@domain): find the entry by filter.
                entry = self._find_user(conn, login)
            else:
                entry = self._read(conn, bind_dn)
            if entry is None:
                log.warning("auth.ldap_refused: %r bound but its entry cannot be read", login)
                return None
            dn, attrs = entry
            return self._identity(conn, login, dn, attrs)
        finally:
            conn.unbind()

    def _search_then_bind(self, login: str, password: str) -> ExternalIdentity | None:
        s = self.settings
        assert s.ldap_service_dn is not None
        assert s.ldap_service_password is not None
        service = self._bound(s.ldap_service_dn, s.ldap_service_password.get_secret_value())
        if service is None:
            raise DirectoryUnavailable(
                "Le compte de service de SAE est refusé par l'annuaire : "
                "vérifiez SAE_LDAP_SERVICE_DN et SAE_LDAP_SERVICE_PASSWORD."
            )
        try:
            entry = self._find_user(service, login)
            if entry is None:
                return None
            dn, attrs = entry
            person = self._bound(dn, password)
            if person is None:
                return None
            person.unbind()
            return self._identity(service, login, dn, attrs)
        finally:
            service.unbind()

    # --- LDAP steps ---------------------------------------------------------------------------

    def _bound(self, dn: str, password: str) -> Connection | None:
        """A connection bound as ``dn``, None when the directory refuses the credentials."""
        if not password:  # the same rule for the service account
            return None
        s = self.settings
        conn = Connection(
            self._server,
            user=dn,
            password=password,
            authentication=SIMPLE,
            auto_bind=False,
            read_only=True,
            raise_exceptions=False,
            receive_timeout=int(s.ldap_timeout_seconds) or 1,
            auto_referrals=False,
        )
        try:
            conn.open()
            if s.ldap_start_tls and not conn.start_tls():
                raise LDAPException(f"StartTLS refused: {conn.result.get('description')}")
        except LDAPException:
            # ldap3 leaves the socket of a failed connection open: close it here.
            socket = getattr(conn, "socket", None)
            if socket is not None:
                socket.close()
            raise
        if conn.bind():
            return conn
        code = conn.result.get("result")
        conn.unbind()
        if code == INVALID_CREDENTIALS:
            return None
        # Anything else (busy, unwilling to perform, a constraint of the directory)
        # is logged for the administrator and refused as a wrong password would be.
        log.warning("auth.ldap_bind_refused: %s %s", code, conn.result.get("description"))
        return None

    def _attributes(self) -> list[str]:
        s = self.settings
        wanted = [s.ldap_display_name_attribute, s.ldap_email_attribute, "cn"]
        if not s.ldap_group_base:
            wanted.append("memberOf")
        return wanted

    def _find_user(self, conn: Connection, login: str) -> tuple[str, dict[str, Any]] | None:
        s = self.settings
        assert s.ldap_user_base is not None
        search_filter = s.ldap_user_filter.replace("{login}", escape_filter_chars(login))
        conn.search(
            s.ldap_user_base,
            search_filter,
            search_scope=SUBTREE,
            attributes=self._attributes(),
            size_limit=2,
            time_limit=int(s.ldap_timeout_seconds) or 1,
        )
        found = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(found) != 1:
            if len(found) > 1:
                log.warning("auth.ldap_refused: %r matches several entries", login)
            return None
        return str(found[0]["dn"]), dict(found[0]["attributes"])

    def _read(self, conn: Connection, dn: str) -> tuple[str, dict[str, Any]] | None:
        conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=self._attributes())
        found = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if not found:
            return None
        return str(found[0]["dn"]), dict(found[0]["attributes"])

    def _groups(self, conn: Connection, login: str, dn: str, attrs: dict[str, Any]) -> list[str]:
        s = self.settings
        if not s.ldap_group_base:
            return _values(attrs.get("memberOf"))
        search_filter = s.ldap_group_filter.replace("{dn}", escape_filter_chars(dn)).replace(
            "{login}", escape_filter_chars(login)
        )
        conn.search(
            s.ldap_group_base,
            search_filter,
            search_scope=SUBTREE,
            attributes=["cn"],
            time_limit=int(s.ldap_timeout_seconds) or 1,
        )
        return [str(e["dn"]) for e in conn.response or [] if e.get("type") == "searchResEntry"]

    def _identity(
        self, conn: Connection, login: str, dn: str, attrs: dict[str, Any]
    ) -> ExternalIdentity:
        s = self.settings
        names = _values(attrs.get(s.ldap_display_name_attribute)) or _values(attrs.get("cn"))
        mails = _values(attrs.get(s.ldap_email_attribute))
        groups = self._groups(conn, login, dn, attrs)
        return ExternalIdentity(
            # Directories compare logins without case: one account per person, whatever the
            # case typed.
            login=fold_login(login),
            display_name=names[0] if names else login,
            email=mails[0] if mails else "",
            groups=tuple(groups),
            source="ldap",
        )


def _values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | bytes):
        value = [value]
    if not isinstance(value, Iterable):
        return [str(value)]
    out = []
    for item in value:
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        if text:
            out.append(text)
    return out


def _server(settings: Settings) -> Server:
    url = settings.ldap_url
    assert url is not None
    tls = None
    if url.startswith("ldaps://") or settings.ldap_start_tls:
        # No version: ldap3 then starts from ssl.create_default_context (TLS 1.2 or later,
        # the system's CAs unless SAE_LDAP_CA_FILE), and checks the certificate's name itself.
        tls = Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(settings.ldap_ca_file) if settings.ldap_ca_file else None,
        )
    return Server(
        url.rstrip("/"),
        use_ssl=url.startswith("ldaps://"),
        tls=tls,
        get_info=NONE,
        connect_timeout=int(settings.ldap_timeout_seconds) or 1,
    )
