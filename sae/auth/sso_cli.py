"""``sae directory …``: check the sign-in with the commune's directory from the server's shell,
before telling staff to use it (docs/sso.md).

``sae directory ldap LOGIN`` asks the directory for LOGIN's password (prompted, or one line on
standard input) and prints what SAE would make of the person: name, e-mail, groups, and the role
and producers the mapping grants — or why they would be refused. Nothing is written.
``sae directory oidc`` fetches the provider's discovery document and keys and prints them.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from sae.auth.groups import NoMappedGroup, resolve_role
from sae.cli_support import make_console, refusals, settings_or_exit

directory_app = typer.Typer(
    help="Check the sign-in with the commune's directory (LDAP, OpenID Connect).",
    no_args_is_help=True,
)
out = make_console()
err = make_console(stderr=True)


@directory_app.command("ldap")
def ldap_check(
    login: Annotated[str, typer.Argument(help="The login to try, as staff would type it.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Sign LOGIN in against the directory and print the identity and the role it would get.

    Example: ``sae directory ldap jdupont`` (the password is asked, never shown or logged).
    Exit 0: the person could sign in; 1: refused (wrong password, no mapped group); 2: LDAP is
    not configured or the settings are refused.
    """
    settings = settings_or_exit()
    if settings.ldap_url is None:
        err.print("[red]SAE_LDAP_URL is not set: LDAP sign-in is off.[/red]")
        raise typer.Exit(2)
    from sae.auth.ldap import LdapDirectory

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    with refusals(exit_code=2, with_code=True):
        identity = LdapDirectory(settings).authenticate(login, password)
    if identity is None:
        err.print("[red]Refused: unknown login or wrong password (or an empty one).[/red]")
        raise typer.Exit(1)
    out.print(f"login         {escape(identity.login)}")
    out.print(f"name          {escape(identity.display_name)}")
    out.print(f"e-mail        {escape(identity.email) or '-'}")
    for group in identity.groups or ("(none)",):
        out.print(f"group         {escape(group)}")
    try:
        grant = resolve_role(identity.login, identity.groups, settings.group_roles)
    except NoMappedGroup:
        err.print("[red]Refused: none of these groups is in SAE_GROUP_ROLES.[/red]")
        raise typer.Exit(1) from None
    out.print(f"role          {grant.role}")
    out.print(f"producers     {', '.join(grant.producers) or '-'}")
    out.print(f"granted by    {escape(', '.join(grant.groups))}")


@directory_app.command("oidc")
def oidc_check() -> None:
    """Fetch the OpenID Connect provider's discovery document and keys, and print them.

    Example: ``sae directory oidc``. Exit 0: the provider answers as SAE needs; 2: it does not,
    or OIDC is not configured.
    """
    settings = settings_or_exit()
    if settings.oidc_issuer is None:
        err.print("[red]SAE_OIDC_ISSUER is not set: OpenID Connect sign-in is off.[/red]")
        raise typer.Exit(2)
    import secrets

    from sae.auth.oidc import OidcClient

    client = OidcClient(settings, secrets.token_bytes(32))  # a key for this check only
    with refusals(exit_code=2, with_code=True):
        meta = client.metadata()
        keys = client.keys()
    out.print(f"issuer        {escape(meta.issuer)}")
    out.print(f"authorization {escape(meta.authorization_endpoint)}")
    out.print(f"token         {escape(meta.token_endpoint)}")
    out.print(f"userinfo      {escape(meta.userinfo_endpoint or '-')}")
    out.print(f"keys          {len(keys.keys)} ({escape(meta.jwks_uri)})")
    redirect = settings.oidc_redirect_url or "(built from each request)"
    out.print(f"redirect URI  {escape(redirect)}")
