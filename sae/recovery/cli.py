"""``sae drill``: the restore drill from the command line (the domain is :mod:`sae.recovery`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sae.cli_support import archivist_at_keyboard, make_console, opened_runtime, refusals

out = make_console()
err = make_console(stderr=True)

_VERDICTS = {"identical": "green", "different": "red", "inconclusive": "yellow"}


def drill_command(
    offer: Annotated[
        list[str] | None,
        typer.Option("--offer", help="Offer to rebuild from (repeatable; default: the strategy)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Restore drill: rebuild the catalogue from each offer into a scratch database, compare it
    with the live one, archive the dated report (JSON and PDF) and journal the outcome.

    Exit 0 only when every offer rebuilt an identical catalogue (1: different, 2: inconclusive
    because the archive changed during the drill, or SAE refused to start).

    Example: sae drill
    """
    from sae.recovery.drill import IDENTICAL, INCONCLUSIVE, rebuild_into, record_drill, run_drill

    with refusals(2), opened_runtime() as runtime:
        report = run_drill(
            runtime.sessions,
            runtime.settings,
            runtime.offer_set,
            rebuild_into,
            offers=offer or None,
            progress=lambda message: err.print(f"[dim]{escape(message)}…[/dim]"),
        )
        record_drill(
            runtime.sessions,
            runtime.settings,
            runtime.offer_set,
            report,
            actor=archivist_at_keyboard("sae drill").actor,
        )
    if as_json:
        out.print_json(report.to_json().decode())
    else:
        table = Table("offer", "result", "seconds", "units", "objects", "events", "differences")
        for item in report.offers:
            counts = item.comparison.counts_rebuilt if item.comparison else {}
            result = "identical" if item.identical else ("failed" if item.error else "different")
            differences = (
                len(item.comparison.differences) + item.comparison.unnamed if item.comparison else 0
            )
            table.add_row(
                Text(item.offer),
                Text(result, style="green" if item.identical else "red"),
                f"{item.seconds:.1f}",
                str(counts.get("archive_units", "-")),
                str(counts.get("data_objects", "-")),
                str(counts.get("events", "-")),
                str(differences),
            )
        out.print(table)
        for item in report.offers:
            if item.error:
                out.print(Text(f"{item.offer}: {item.error}", style="red"))
            for d in item.comparison.differences if item.comparison else []:
                out.print(
                    Text(f"{item.offer}: {d.kind} {d.subject} {d.key}: {d.live} ≠ {d.rebuilt}")
                )
        out.print(
            Text(f"drill {report.outcome}", style=_VERDICTS.get(report.outcome, "red")),
            Text(f"— report archived as units {', '.join(report.record_units)}"),
        )
    if report.outcome == IDENTICAL:
        return
    raise typer.Exit(2 if report.outcome == INCONCLUSIVE else 1)
