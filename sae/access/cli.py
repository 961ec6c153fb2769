"""``sae derogation …``: dérogations (Code du patrimoine L213-3) from an operator's shell.

The archivist at the keyboard records a reader's request (a letter, a form at the reading
room), grants or refuses it, and lists them. Every command commits before printing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sae.cli_support import (
    archivist_at_keyboard,
    iso_date,
    make_console,
    opened_runtime,
    print_rows,
    refusals,
)

if TYPE_CHECKING:
    from sae.access.register import RegisterQuery

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
            rows = [
                (
                    d.id,
                    d.login,
                    d.state,
                    str(len(d.units)),
                    d.until.isoformat() if d.until else "",
                    d.reference or d.reason or "",
                    d.purpose,
                )
                for d in found
            ]
    print_rows(out, ("id", "lecteur", "état", "unités", "jusqu'au", "référence", "objet"), rows)


# --- the register of communications ------------------------------------------------------------

communications_app = typer.Typer(
    help="The register of communications: units read by readers and depositors, and on what "
    "basis (law, dérogation, producer).",
    no_args_is_help=True,
)

LoginOpt = Annotated[str | None, typer.Option("--login", help="Only this reader's (login).")]
UnitOpt = Annotated[str | None, typer.Option("--unit", help="Only this unit (id).")]
FromOpt = Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, UTC).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day (YYYY-MM-DD, UTC), inclusive.")]
BasisOpt = Annotated[str | None, typer.Option("--basis", help="law, derogation or producer.")]
KindOpt = Annotated[str | None, typer.Option("--kind", help="metadata, content or dip.")]


def _query(
    login: str | None,
    unit: str | None,
    date_from: str | None,
    date_to: str | None,
    basis: str | None,
    kind: str | None,
) -> RegisterQuery:
    from sae.access.register import RegisterQuery

    return RegisterQuery(
        login=login,
        unit_id=unit,
        date_from=iso_date(date_from),
        date_to=iso_date(date_to),
        basis=basis,
        kind=kind,
    )


@communications_app.command("list")
def communications_list(
    login: LoginOpt = None,
    unit: UnitOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    basis: BasisOpt = None,
    kind: KindOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many, the newest first.")] = 100,
) -> None:
    """List the register's entries, the newest first.

    Example: ``sae communications list --basis derogation --from 2026-01-01``
    """
    from sae.access import register

    with refusals(1, with_code=True), opened_runtime() as runtime:
        query = _query(login, unit, date_from, date_to, basis, kind)
        with runtime.sessions() as session:
            entries, _ = register.list_page(session, query, limit=limit)
            rows = [
                (
                    e.row.at.strftime("%Y-%m-%d %H:%M"),
                    e.row.login,
                    e.row.unit_id,
                    e.title or "",
                    register.KIND_FR.get(e.row.kind, e.row.kind),
                    register.BASIS_FR.get(e.row.basis, e.row.basis),
                    e.row.derogation_id or "",
                )
                for e in entries
            ]
    headers = ("date (UTC)", "lecteur", "unité", "titre", "nature", "fondement", "dérogation")
    print_rows(out, headers, rows)


@communications_app.command("export")
def communications_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.")],
    format: Annotated[str, typer.Option("--format", help="csv or pdf.")] = "csv",
    login: LoginOpt = None,
    unit: UnitOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    basis: BasisOpt = None,
    kind: KindOpt = None,
) -> None:
    """Export the register (filtered): CSV, or the French PDF for the annual report.

    Example: ``sae communications export --format pdf --from 2026-01-01 --to 2026-12-31 -o
    registre-2026.pdf``
    """
    from sae.access import register
    from sae.db import utcnow

    if format not in ("csv", "pdf"):
        console.print("[red]--format: csv or pdf[/red]")
        raise typer.Exit(2)
    with refusals(1, with_code=True), opened_runtime() as runtime:
        query = _query(login, unit, date_from, date_to, basis, kind)
        with runtime.sessions() as session:
            entries = list(register.all_entries(session, query))
        tmp = output.with_name(output.name + ".part")
        if format == "pdf":
            tmp.write_bytes(
                register.pdf(
                    entries,
                    query,
                    archives_service_name=register.service_name(),
                    created=utcnow(),
                )
            )
        else:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                fh.writelines(register.csv_lines(entries))
        tmp.replace(output)
    out.print(f"{len(entries)} communication(s) → {output}")
