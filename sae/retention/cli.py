"""``sae retention …``: the disposal circuit and holds from an operator's shell.

Every command opens the runtime from the ``SAE_*`` environment, acts as the archivist at the
keyboard (the journal names the local user) and commits before printing its result.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import track
from sqlalchemy import select

from sae.auth.service import Principal
from sae.cli_support import (
    archivist_at_keyboard,
    iso_date,
    make_console,
    opened_runtime,
    print_rows,
    refusals,
)

retention_app = typer.Typer(
    help="Retention: disposal lists (bordereaux), visa, execution, permanent keeping, holds.",
    no_args_is_help=True,
)
console = make_console(stderr=True)
out = make_console()


def _principal() -> Principal:
    return archivist_at_keyboard("sae retention")


@retention_app.command("run")
def run(
    due_before: Annotated[str | None, typer.Option(help="ISO date; default today.")] = None,
    producer: Annotated[str | None, typer.Option(help="Only this producing service.")] = None,
    final_action: Annotated[str, typer.Option(help="Destroy, Keep, or both (default).")] = "both",
) -> None:
    """Build draft lists of the due units, one per producing service and final action.

    Example: ``sae retention run --due-before 2027-01-01``
    """
    from sae.db import transaction
    from sae.retention import disposal

    actions = ("Destroy", "Keep") if final_action == "both" else (final_action,)
    if any(a not in disposal.FINAL_ACTIONS for a in actions):
        console.print("[red]--final-action must be Destroy, Keep or both[/red]")
        raise typer.Exit(2)
    day = iso_date(due_before)
    actor = _principal().actor
    made = []
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            for d in disposal.build_due_lists(
                session, actor=actor, final_actions=actions, producer=producer, due_before=day
            ):
                count = len(disposal.lines_of(session, d.id))
                made.append((d.reference, d.id, d.final_action, d.producer or "", count))
    if not made:
        console.print("nothing is due")
        return
    print_rows(
        out,
        ("bordereau", "id", "sort", "service producteur", "unités"),
        [(ref, list_id, action, name, str(count)) for ref, list_id, action, name, count in made],
    )


@retention_app.command("lists")
def lists(
    state: Annotated[str | None, typer.Option(help="Only lists in this state.")] = None,
) -> None:
    """Show the disposal lists.

    Example: ``sae retention lists --state approved``
    """
    from sae.retention import disposal

    with opened_runtime() as runtime:
        with runtime.sessions() as session:
            rows = [
                (
                    d.reference,
                    d.id,
                    d.final_action,
                    d.state,
                    d.producer or "*",
                    str(len(disposal.lines_of(session, d.id))),
                    d.created_at.date().isoformat(),
                )
                for d in disposal.list_lists(session, state=state)
            ]
    print_rows(out, ("bordereau", "id", "sort", "état", "service", "unités", "créé le"), rows)


def _decide(list_id: str, comment: str, step: str) -> None:
    from sae.db import transaction
    from sae.retention import disposal

    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            d = disposal.get_list(session, list_id, for_update=True)
            if step == "approve":
                disposal.approve(
                    session,
                    d,
                    actor=_principal().actor,
                    comment=comment,
                    four_eyes=runtime.settings.disposal_four_eyes,
                )
            else:
                getattr(disposal, step)(session, d, actor=_principal().actor, comment=comment)
            console.print(f"{d.reference}: {d.state}")


@retention_app.command("submit")
def submit(list_id: str, comment: Annotated[str, typer.Option()] = "") -> None:
    """Send a draft list to the producing service for review.

    Example: ``sae retention submit 3f0c… --comment "pour relecture"``
    """
    _decide(list_id, comment, "submit")


@retention_app.command("approve")
def approve(list_id: str, comment: Annotated[str, typer.Option()] = "") -> None:
    """Approve a list as the archivist (its units' rules and holds are fingerprinted).

    Example: ``sae retention approve 3f0c… --comment "conforme au tableau de gestion"``
    """
    _decide(list_id, comment, "approve")


@retention_app.command("reject")
def reject(list_id: str, comment: Annotated[str, typer.Option(help="The reason.")]) -> None:
    """Reject a list, with a reason.

    Example: ``sae retention reject 3f0c… --comment "DUA mal appliquée"``
    """
    _decide(list_id, comment, "reject")


@retention_app.command("visa")
def visa(
    list_id: str,
    document: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="The signed visa (PDF).")
    ],
    reference: Annotated[str, typer.Option(help="Reference of the AD's decision.")],
    decision_date: Annotated[str, typer.Option(help="ISO date of the decision.")],
    exclude: Annotated[list[str] | None, typer.Option(help="Unit refused by the visa.")] = None,
) -> None:
    """Record the departmental archives' visa (the document is archived as a record).

    Example: ``sae retention visa 3f0c… --document visa.pdf --reference AD93-2027-12
    --decision-date 2027-02-01``
    """
    from sae.db import transaction
    from sae.retention.visa import record_visa_with_document

    data = document.read_bytes()
    day = iso_date(decision_date)
    assert day is not None
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            d = record_visa_with_document(
                session,
                settings=runtime.settings,
                offers=runtime.strategy_offers,
                actor=_principal().actor,
                list_id=list_id,
                reference=reference,
                decision_date=day,
                excluded=exclude or [],
                document=data,
            )
            console.print(f"{d.reference}: {d.state}")


@retention_app.command("execute")
def execute(list_id: str) -> None:
    """Execute an approved (and, for destruction, visa'd) list; resumes an interrupted one.

    Example: ``sae retention execute 3f0c…``
    """
    from sae.retention import execution

    with refusals(1, with_code=True), opened_runtime() as runtime:
        context = execution.ExecutionContext(
            sessions=runtime.sessions,
            settings=runtime.settings,
            offers=runtime.offer_set.offers,
            strategy=runtime.strategy_offers,
        )
        d = execution.execute_list(context, list_id, _principal())
    console.print(f"{d.reference}: {d.state}")


@retention_app.command("bordereau")
def bordereau(
    list_id: str,
    output: Annotated[Path, typer.Option(help="Where to write it.")],
    format: Annotated[str, typer.Option(help="pdf or csv.")] = "pdf",
) -> None:
    """Write the bordereau of a list (PDF or CSV).

    Example: ``sae retention bordereau 3f0c… --output bordereau.pdf``
    """
    from sae.retention import disposal, documents
    from sae.retention.config import retention_settings

    with refusals(1, with_code=True), opened_runtime() as runtime:
        with runtime.sessions() as session:
            d = disposal.get_list(session, list_id)
            if format == "csv":
                output.write_text(disposal.bordereau_csv(session, d), encoding="utf-8")
            else:
                cfg = retention_settings()
                output.write_bytes(
                    documents.bordereau_pdf(
                        d,
                        disposal.lines_of(session, d.id),
                        documents.Parties(
                            cfg.archives_service, cfg.archives_service_name, cfg.control_authority
                        ),
                    )
                )
    console.print(f"written {output}")


@retention_app.command("hold")
def hold(
    unit: Annotated[list[str], typer.Argument(help="Archive unit ids.")],
    reason: Annotated[str, typer.Option(help="Why (contentieux, contrôle…).")],
    until: Annotated[str | None, typer.Option(help="Last day of the hold (ISO).")] = None,
) -> None:
    """Put units (and their descendants) under a legal hold; prints the hold id.

    Example: ``sae retention hold 7d1e… --reason "Contentieux TA Montreuil 2027-0042"``
    """
    from sae.db import transaction
    from sae.retention import holds

    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            placed = holds.place_hold(
                session,
                unit,
                reason=reason,
                owner=_principal().actor,
                until=iso_date(until),
                actor=_principal().actor,
                offers=runtime.offer_set.offers,
            )
            hold_id = placed.id
    sys.stdout.write(hold_id + "\n")


@retention_app.command("unhold")
def unhold(hold_id: str) -> None:
    """Lift a hold.

    Example: ``sae retention unhold 5a2b…``
    """
    from sae.db import transaction
    from sae.retention import holds

    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            holds.lift_hold(
                session, hold_id, actor=_principal().actor, offers=runtime.offer_set.offers
            )
    console.print(f"hold {hold_id} lifted")


@retention_app.command("import-shipped")
def import_shipped() -> None:
    """Replace the referential with the shipped ones (communal schedule, access delays, holds).

    Example: ``sae retention import-shipped``
    """
    from sae.retention import referential
    from sae.retention.errors import DurationBelowMinimum

    with refusals(1, with_code=True), opened_runtime() as runtime:
        specs = referential.shipped_specs()
        session = runtime.sessions()
        try:
            summary = referential.import_rules(
                session, specs, actor=_principal(), offers=runtime.offer_set.offers
            )
            session.commit()
        except DurationBelowMinimum:
            session.commit()  # the alert outlives the refusal
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
    console.print(
        f"referential imported: {summary['total']} rules ({summary['added']} added, "
        f"{summary['changed']} changed, {summary['removed']} removed; "
        f"{summary['recomputed_units']} units recomputed)"
    )


@retention_app.command("recompute")
def recompute(
    batch: Annotated[int, typer.Option(help="Units per transaction.")] = 5_000,
) -> None:
    """Recompute the end dates of every unit (after a restore, or to check the index).

    Example: ``sae retention recompute``
    """
    from sae.catalog.models import ArchiveUnit
    from sae.db import transaction
    from sae.retention import dates

    with opened_runtime() as runtime:
        with runtime.sessions() as session:
            ids = list(session.scalars(select(ArchiveUnit.id).order_by(ArchiveUnit.id)))
        chunks = [ids[i : i + batch] for i in range(0, len(ids), batch)]
        for chunk in track(chunks, description="recomputing", console=console):
            with transaction(runtime.sessions) as session:
                dates.refresh_units(session, chunk)
    console.print(f"{len(ids)} units recomputed")
