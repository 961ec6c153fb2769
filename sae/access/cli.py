"""``sae derogation …``: dérogations (Code du patrimoine L213-3) from an operator's shell.

The archivist at the keyboard records a reader's request (a letter, a form at the reading
room), grants or refuses it, and lists them. Every command commits before printing.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sae.cli_support import archivist_at_keyboard, iso_date, make_console, opened_runtime, refusals

derogation_app = typer.Typer(
    help="Dérogations (L213-3): readers' requests to consult units before their delay ends.",
    no_args_is_help=True,
)
console = make_console(stderr=True)
out = make_console()


@derogation_app.command("request")
def request(
    login: Annotated[str, typer.Option(help="The reader's account (login).")],
    unit: Annotated[list[str], typer.Option(help="A unit id (repeat for several).")],
    purpose: Annotated[str, typer.Option(help="What the consultation is for.")],
) -> None:
    """Record a reader's request.

    Example: ``sae derogation request --login jdupont --unit 3f0c… --purpose "thèse"``
    """
    from sae.access import derogations
    from sae.auth.accounts import find_user
    from sae.db import transaction
    from sae.errors import NotFound

    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            user = find_user(session, login)
            if user is None:
                raise NotFound(f"no account {login!r}")
            d = derogations.request(
                session,
                archivist_at_keyboard("sae derogation"),
                unit_ids=unit,
                purpose=purpose,
                reader=(user.id, user.login),
            )
            out.print(f"{d.id}: {d.state}")


@derogation_app.command("grant")
def grant(
    derogation_id: str,
    until: Annotated[str, typer.Option(help="Last day open (YYYY-MM-DD), inclusive.")],
    reference: Annotated[str, typer.Option(help="The authorisation's reference.")],
) -> None:
    """Grant a request: its units are open to its reader through ``--until``.

    Example: ``sae derogation grant 3f0c… --until 2027-06-30 --reference SIAF-2027-12``
    """
    from sae.access import derogations
    from sae.db import transaction

    day = iso_date(until)
    assert day is not None
    principal = archivist_at_keyboard("sae derogation")
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            d = derogations.get(session, principal, derogation_id)
            derogations.grant(session, d, actor=principal.actor, until=day, reference=reference)
            out.print(f"{d.id}: {d.state} until {day.isoformat()}")


@derogation_app.command("refuse")
def refuse(
    derogation_id: str, reason: Annotated[str, typer.Option(help="Why it is refused.")]
) -> None:
    """Refuse a request, with the reason.

    Example: ``sae derogation refuse 3f0c… --reason "atteinte à la vie privée"``
    """
    from sae.access import derogations
    from sae.db import transaction

    principal = archivist_at_keyboard("sae derogation")
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            d = derogations.get(session, principal, derogation_id)
            derogations.refuse(session, d, actor=principal.actor, reason=reason)
            out.print(f"{d.id}: {d.state}")


@derogation_app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help="requested, granted or refused.")] = None,
    login: Annotated[str | None, typer.Option(help="Only this reader's.")] = None,
) -> None:
    """List dérogations, the newest first.

    Example: ``sae derogation list --state requested``
    """
    from sae.access import derogations

    principal = archivist_at_keyboard("sae derogation")
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with runtime.sessions() as session:
            found = derogations.list_derogations(session, principal, state=state, login=login)
            table = Table("id", "lecteur", "état", "unités", "jusqu'au", "référence", "objet")
            for d in found:
                table.add_row(
                    d.id,
                    d.login,
                    d.state,
                    str(len(d.units)),
                    d.until.isoformat() if d.until else "",
                    d.reference or d.reason or "",
                    d.purpose,
                )
    out.print(table)
