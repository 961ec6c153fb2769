"""``sae pastell-account``: the accounts Pastell's as@lae connectors log in with."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sae.cli_support import make_console, opened_runtime, refusals

pastell_app = typer.Typer(
    help="Accounts of Pastell's as@lae connectors (docs/pastell.md).", no_args_is_help=True
)
console = make_console(stderr=True)


@pastell_app.command("create")
def account_create(
    login: Annotated[str, typer.Option(help="The login typed in Pastell's connector.")],
    producer: Annotated[
        list[str],
        typer.Option(help="Producing service the account deposits for; repeatable."),
    ],
    label: Annotated[str, typer.Option(help="Who the account is for (the commune).")] = "",
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from standard input instead of generating a random one.",
        ),
    ] = False,
) -> None:
    """Create a Pastell account; the password to type in Pastell is printed on the last line
    (a random one unless --password-stdin). SAE stores only argon2id of its SHA-256, the value
    the connector sends.

    Example: ``sae pastell-account create --login commune-exemple --producer COMMUNE-EXEMPLE``
    """
    from sae.db import transaction
    from sae.pastell.service import create_account

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    if password_stdin and len(password or "") < 12:
        console.print("[red]le mot de passe doit faire au moins 12 caractères[/red]")
        raise typer.Exit(2)
    with refusals(2), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        account, secret = create_account(
            session, login=login, producers=list(producer), password=password, label=label
        )
        producers = ", ".join(account.producers)
    console.print(f"compte Pastell {login} créé : dépose pour {producers}")
    if not password_stdin:
        sys.stdout.write(secret + "\n")
