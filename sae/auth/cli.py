"""``sae user …`` and ``sae token …``: accounts and tokens, from the server's shell.

Whoever runs these commands holds the server (its database and its data directory): they act as
an administrator, named in the journal by the local user (``cli-<user>``).
"""

from __future__ import annotations

import getpass
import re
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer

from sae.auth.service import Principal
from sae.cli_support import make_console, opened_runtime, print_rows, refusals

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
user_app = typer.Typer(help="Accounts: people and services.", no_args_is_help=True)
console = make_console(stderr=True)
out = make_console()

_DURATION = re.compile(r"^(\d{1,5})([dh])$")


def admin_at_keyboard(command: str) -> Principal:
    """The operator running ``command`` on the server: the journal names the local user."""
    user = getpass.getuser()
    return Principal(token_id=f"cli-{user}", role="admin", label=f"sae {command} ({user})")


def parse_expiry(value: str | None) -> datetime | None:
    """``90d``, ``12h`` or a date (``2027-06-30``: the token works until that day, included)."""
    if value is None or value == "":
        return None
    match = _DURATION.match(value.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        return datetime.now(UTC) + (
            timedelta(days=amount) if unit == "d" else timedelta(hours=amount)
        )
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        console.print(f"[red]--expires: 90d, 12h or a date YYYY-MM-DD, not {value!r}[/red]")
        raise typer.Exit(2) from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


# --- users ------------------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    login: Annotated[str, typer.Argument(help="The login (case-insensitive).")],
    role: Annotated[str, typer.Option(help="admin, archivist, auditor, depositor or reader.")],
    producer: Annotated[
        list[str] | None,
        typer.Option(help="Producing service (OriginatingAgencyIdentifier); repeatable."),
    ] = None,
    name: Annotated[str, typer.Option(help="Display name (« Jean Dupont »).")] = "",
    email: Annotated[str, typer.Option(help="E-mail address.")] = "",
    service: Annotated[
        bool, typer.Option("--service", help="A service account (tokens only, no sign-in).")
    ] = False,
    password: Annotated[
        bool, typer.Option("--password", help="Ask for a password (console sign-in).")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a local account.

    Example: ``sae user add jdupont --role archivist --name "Jean Dupont" --password``
    """
    from sae.auth import accounts
    from sae.db import transaction

    if role == "depositor" and not producer:
        console.print("[red]a depositor needs at least one --producer[/red]")
        raise typer.Exit(2)
    secret = _read_password(password_stdin) if (password or password_stdin) else None
    with refusals(2), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        user = accounts.create_user(
            session,
            login=login,
            role=role,
            producers=list(producer or []),
            kind="service" if service else "person",
            password=secret,
            display_name=name,
            email=email,
            actor=admin_at_keyboard("user add"),
        )
    console.print(f"account {user.login} created ({user.id}): role {user.role}")


@user_app.command("list")
def user_list() -> None:
    """List the accounts."""
    from sae.auth import accounts

    with opened_runtime() as runtime, runtime.sessions() as session:
        users = accounts.list_users(session)
    rows = []
    for u in users:
        rows.append(
            (
                u.login,
                u.display_name,
                u.kind,
                u.role,
                ", ".join(u.producers) or "-",
                u.source,
                _when(u.last_login_at),
                "disabled" if u.disabled_at else "active",
            )
        )
    print_rows(
        out, ("login", "name", "kind", "role", "producers", "source", "last sign-in", "state"), rows
    )


@user_app.command("disable")
def user_disable(login: Annotated[str, typer.Argument(help="Login or id.")]) -> None:
    """Disable an account: no sign-in, none of its tokens accepted."""
    from sae.auth import accounts
    from sae.db import transaction

    with refusals(1), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        user = accounts.user_by_id_or_login(session, login)
        accounts.disable_user(session, user, actor=admin_at_keyboard("user disable"))
    console.print(f"account {user.login} disabled")


@user_app.command("enable")
def user_enable(login: Annotated[str, typer.Argument(help="Login or id.")]) -> None:
    """Enable a disabled account again."""
    from sae.auth import accounts
    from sae.db import transaction

    with refusals(1), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        user = accounts.user_by_id_or_login(session, login)
        accounts.enable_user(session, user, actor=admin_at_keyboard("user enable"))
    console.print(f"account {user.login} enabled")


@user_app.command("password")
def user_password(
    login: Annotated[str, typer.Argument(help="Login or id.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a local account's password (a forgotten one).

    Example: ``sae user password jdupont``
    """
    from sae.auth import accounts
    from sae.db import transaction

    secret = _read_password(password_stdin)
    with refusals(1), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        user = accounts.user_by_id_or_login(session, login)
        accounts.set_password(session, user, secret, actor=admin_at_keyboard("user password"))
    console.print(f"password of {user.login} set")


# --- tokens -----------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    user: Annotated[
        str | None, typer.Option(help="The account (login or id) the token belongs to.")
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(help="Without --user: a new service account of this role for the token."),
    ] = None,
    producer: Annotated[
        list[str] | None,
        typer.Option(help="With --role: producing service (OriginatingAgencyIdentifier)."),
    ] = None,
    label: Annotated[str, typer.Option(help="Who or what the token is for.")] = "",
    expires: Annotated[
        str | None, typer.Option(help="90d, 12h or YYYY-MM-DD (default: until revoked).")
    ] = None,
) -> None:
    """Create an API token; the token alone is printed on the last line.

    Examples: ``sae token create --user jdupont --expires 90d --label "script"``;
    ``sae token create --role depositor --producer URBANISME --label "GED urbanisme"`` (a
    service account of its own).
    """
    from sae.auth import accounts
    from sae.auth.service import create_token
    from sae.db import transaction

    if (user is None) == (role is None):
        console.print("[red]give --user (an existing account) or --role (a new service)[/red]")
        raise typer.Exit(2)
    if role == "depositor" and not producer:
        console.print("[red]a depositor token needs at least one --producer[/red]")
        raise typer.Exit(2)
    if user is not None and producer:
        console.print("[red]--producer goes with --role; an account has its own producers[/red]")
        raise typer.Exit(2)
    expires_at = parse_expiry(expires)
    actor = admin_at_keyboard("token create")
    with refusals(2), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        if user is not None:
            owner = accounts.user_by_id_or_login(session, user)
            token, secret = accounts.create_token(
                session, user=owner, expires_at=expires_at, label=label, actor=actor
            )
        else:
            assert role is not None
            token, secret = create_token(
                session,
                role=role,
                producers=list(producer or []),
                label=label,
                actor=actor,
                expires_at=expires_at,
            )
            owner = accounts.get_user(session, token.user_id)
    console.print(
        f"token {token.id} created for {owner.login}: role {owner.role}, producers "
        f"{owner.producers or '-'}, expires {_when(expires_at)}"
    )
    sys.stdout.write(secret + "\n")


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option(help="Only this account's (login or id).")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Show revoked tokens too.")] = False,
) -> None:
    """List the tokens, their account, expiry and last use (never a secret)."""
    from sae.auth import accounts

    with refusals(1), opened_runtime() as runtime, runtime.sessions() as session:
        user_id = accounts.user_by_id_or_login(session, user).id if user else None
        rows = accounts.list_tokens(session, user_id=user_id, include_revoked=revoked)
    lines = []
    for token, owner in rows:
        lines.append(
            (
                token.id,
                owner.login,
                owner.role,
                token.label,
                _when(token.created_at),
                _when(token.expires_at),
                _when(token.last_used_at),
                "revoked" if token.revoked_at else "active",
            )
        )
    print_rows(
        out, ("id", "account", "role", "label", "created", "expires", "last use", "state"), lines
    )


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token (refused from now on)."""
    from sae.auth.service import revoke_token
    from sae.db import transaction

    with refusals(1), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        revoke_token(session, token_id, actor=admin_at_keyboard("token revoke"))
    console.print(f"token {token_id} revoked")


@token_app.command("reset-admin")
def token_reset_admin() -> None:
    """A lost admin token: revoke the first-start account's tokens, write a new admin.token.

    Run on the server, as the user SAE runs as: the new token is written to
    ``$SAE_DATA_DIR/admin.token`` (mode 0600), as on a first start; the account ``admin`` is
    enabled again and made admin again if it was changed.
    """
    from sae.auth import accounts
    from sae.auth.service import write_admin_token
    from sae.db import transaction

    with refusals(1), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            revoked = accounts.reset_first_start_tokens(
                session, actor=admin_at_keyboard("token reset-admin")
            )
            _, secret = accounts.first_start_token(session)
        path = write_admin_token(runtime.settings.data_dir, secret)
    console.print(f"{revoked} token(s) of the account admin revoked")
    console.print(f"new admin token written to {path} (mode 0600)")
