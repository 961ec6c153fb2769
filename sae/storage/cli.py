"""``sae audit`` and ``sae fsck`` (registered on the main Typer app by ``sae.cli``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import func, select

from sae.catalog.models import GONE, DataObject
from sae.cli_support import make_console, opened_runtime, refusals
from sae.db import transaction
from sae.runtime import Runtime
from sae.storage.audit import AuditProgress, create_audit, get_audit, run_audit
from sae.storage.fill import FillProgress, fill_offers, plan_fill
from sae.storage.fsck import UNRESOLVED, Finding, fill_findings, reconcile
from sae.storage.models import ObjectCopy
from sae.storage.quarantine import end_quarantines

err = make_console(stderr=True)
out = make_console()


def audit_command(
    offer: Annotated[
        list[str] | None, typer.Option("--offer", help="Offer to audit (repeatable; default all).")
    ] = None,
    sample_rate: Annotated[
        float, typer.Option(min=0.0001, max=1.0, help="Share of objects to check, e.g. 0.1.")
    ] = 1.0,
    repair: Annotated[
        bool, typer.Option("--repair/--no-repair", help="Rewrite damaged copies from healthy ones.")
    ] = True,
    resume: Annotated[
        str | None, typer.Option(help="Resume (take over) the audit with this id.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-read every copy on every offer, compare SHA-512 with the catalog, repair, journal.

    Exit 0 when every checked copy is (now) intact, 1 when a problem remains or the audit
    failed, 2 on a configuration error.

    Example: sae audit --offer site-a --sample-rate 0.1
    """
    with opened_runtime() as runtime:
        # As the server's background auditor does every minute: a quarantine that has run its
        # course ends here too, for installations that audit from cron without `sae serve`.
        sealed = end_quarantines(runtime.sessions, runtime.offer_set)
        if resume is None:
            with transaction(runtime.sessions) as session:
                audit_id = create_audit(
                    session,
                    runtime.offer_set,
                    offers=offer or None,
                    sample_rate=sample_rate,
                    repair=repair,
                    requested_by="cli:audit",
                ).id
        else:
            audit_id = resume
        with transaction(runtime.sessions) as session:
            query = (
                select(func.count(ObjectCopy.id))
                .join(DataObject, DataObject.id == ObjectCopy.object_id)
                .where(DataObject.status.not_in(GONE))
            )
            if offer:
                query = query.where(ObjectCopy.offer.in_(offer))
            total = int(session.scalar(query) or 0)
        with Progress(
            TextColumn("audit"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task("audit", total=max(total, 1))

            def advance(state: AuditProgress) -> None:
                bar.update(task, completed=state.checked)

            claimed = run_audit(runtime.sessions, runtime.offer_set, audit_id, progress=advance)
        if claimed is None:
            err.print(
                f"[red]audit {audit_id} is not waiting (done, failed, or in progress "
                "elsewhere)[/red]"
            )
            raise typer.Exit(1)
        with transaction(runtime.sessions) as session:
            audit, problems = get_audit(session, audit_id)
            report = {
                "id": audit.id,
                "status": audit.status,
                "checked": audit.checked,
                "unreachable": audit.unreachable,
                "error": audit.error,
                "quarantines_ended": sealed,
                "problems": [
                    {
                        "object_id": p.object_id,
                        "offer": p.offer,
                        "kind": p.kind,
                        "repaired": p.repaired,
                        "key": p.key,
                        "detail": p.detail,
                    }
                    for p in problems
                ],
            }
    if as_json:
        out.print_json(json.dumps(report))
    else:
        _print_audit(report)
    unresolved = [p for p in problems if not p.repaired]
    if audit.status != "done" or unresolved or audit.unreachable:
        raise typer.Exit(1)


def _print_audit(report: dict[str, object]) -> None:
    out.print(
        f"audit {report['id']}: {report['status']}, {report['checked']} copies checked, "
        f"{report['unreachable']} unreachable"
    )
    if report.get("quarantines_ended"):
        out.print(f"{report['quarantines_ended']} quarantine(s) ended: copies now in COMPLIANCE")
    if report.get("error"):
        out.print(Text(str(report["error"]), style="red"))
    problems = report["problems"]
    assert isinstance(problems, list)
    if problems:
        table = Table("object", "offer", "kind", "repaired", "detail")
        for p in problems:
            # Data as Text: an offer's detail or key may hold "[" that markup would eat.
            table.add_row(
                Text(p["object_id"]),
                Text(p["offer"]),
                Text(p["kind"]),
                "yes" if p["repaired"] else "[red]no[/red]",
                Text(p["detail"] or ""),
            )
        out.print(table)


def fsck_command(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fill the strategy's offers that lack copies; remove orphans whose lock allows.",
        ),
    ] = False,
    offer: Annotated[
        list[str] | None, typer.Option("--offer", help="Offer to check (repeatable; default all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print findings as JSON.")] = False,
) -> None:
    """Reconcile the catalog with the offers: orphans on offers, catalog copies missing.

    Orphans (left by a crash between storage and catalog) are listed, and removed with
    ``--repair`` when their lock allows. With ``--repair``, first, every object, transfer
    description and journal segment an offer of the strategy lacks (a site added later, a
    copy lost) is copied from a healthy copy on another offer, checked against its recorded
    SHA-512, locked and recorded as the others, and journaled. Exit 0 when all is consistent,
    1 when something remains (a copy no offer has healthy).

    Example: sae fsck --repair
    """
    with refusals(2), opened_runtime() as runtime:
        findings = _fill(runtime, offer, as_json) if repair else []
        with transaction(runtime.sessions) as session:
            findings += reconcile(session, runtime.offer_set, offers=offer or None, repair=repair)
    if as_json:
        out.print_json(json.dumps([f.__dict__ for f in findings]))
    elif not findings:
        out.print("catalog and offers agree")
    else:
        table = Table("offer", "key", "kind", "detail")
        for f in findings:
            style = "red" if f.kind in UNRESOLVED else "green"
            table.add_row(Text(f.offer), Text(f.key), Text(f.kind, style=style), Text(f.detail))
        out.print(table)
    if any(f.kind in UNRESOLVED for f in findings):
        raise typer.Exit(1)


def _fill(runtime: Runtime, offer: list[str] | None, quiet: bool) -> list[Finding]:
    """Fill the strategy's offers, with a progress bar (copies, bytes, rate) on stderr."""
    gaps = plan_fill(runtime.sessions, runtime.offer_set, offers=offer or None)
    if not gaps:
        return []
    with Progress(
        TextColumn("remplissage"),
        BarColumn(),
        TextColumn("{task.fields[copies]} copies"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task(
            "fill", total=max(sum(g.size for g in gaps), 1), copies=f"0/{len(gaps)}"
        )

        def advance(state: FillProgress) -> None:
            bar.update(task, completed=state.bytes_done, copies=f"{state.done}/{state.total}")

        outcomes = fill_offers(runtime.sessions, runtime.offer_set, gaps, progress=advance)
    return fill_findings(outcomes)
