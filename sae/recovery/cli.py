"""``sae rebuild``, ``sae drill``, ``sae backup`` and ``sae restore``: recovery from the command
line (the domain is :mod:`sae.recovery`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sae.cli_support import (
    archivist_at_keyboard,
    make_console,
    opened_runtime,
    refusals,
    settings_or_exit,
)

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


def rebuild_command(
    offer: Annotated[
        str, typer.Option("--from", help="The offer to rebuild from (a name of the offers file).")
    ],
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="The empty catalogue to rebuild into (SQLAlchemy URL; default the configured "
            "one, SAE_DATABASE_URL).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Rebuild the catalogue database from one offer alone, verified against the signed
    journal; run again with the same arguments to resume an interrupted rebuild.

    Exit 0 when rebuilt; 1 when the offer's journal or a transfer's description does not
    verify (the segment or description is named); 2 when the target is not empty or the
    configuration is refused.

    Example: ``sae rebuild --from site-a --database sqlite:////srv/sae/rebuilt.db``
    """
    import time

    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sae.recovery.errors import RebuildStopped
    from sae.recovery.rebuild import RebuildProgress, rebuild, report_json

    settings = settings_or_exit()
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("rebuild", total=None, counts="")

        def advance(state: RebuildProgress) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(
                task,
                description=f"rebuild ({state.phase})",
                completed=state.leaves,
                total=state.expected_leaves,
                counts=(
                    f"{state.segments} segments, {state.leaves} leaves, "
                    f"{state.transfers} transfers, {state.units} units "
                    f"({state.units / elapsed:.0f} units/s)"
                ),
            )

        try:
            with refusals(2, with_code=True):
                try:
                    report = rebuild(settings, offer, database, progress=advance)
                except RebuildStopped as exc:
                    err.print(f"[red]rebuild stopped: {escape(exc.detail)}[/red]")
                    err.print(
                        "what was verified before is committed; once the offer is repaired, "
                        "the same command resumes"
                    )
                    raise typer.Exit(1) from None
        finally:
            bar.stop()
    if as_json:
        sys.stdout.write(report_json(report) + "\n")
        return
    err.print(
        f"catalogue rebuilt from offer {escape(report.offer)} into {escape(report.database)}: "
        f"{report.segments} segments verified"
        + (
            f" (and {report.segments_before} before the interruption)"
            if report.segments_before
            else ""
        )
        + f", {report.leaves} leaves, {report.seconds:.1f} s "
        f"({report.units_per_second:.0f} units/s)"
    )
    for name, count in report.counts.items():
        err.print(f"  {name}: {count}")
    if report.recovered:
        err.print(
            f"[yellow]{len(report.recovered)} transfer(s) acknowledged after the last published "
            "journal segment recovered from their descriptions (journaled "
            "rebuild.transfer_recovered)[/yellow]"
        )
    for note in report.notes:
        err.print(f"[yellow]{escape(note)}[/yellow]")
    if report.head_size is not None:
        err.print(f"new tree head sealed at {report.head_size} leaves")
    err.print(
        "[bold yellow]Tokens are not rebuilt: "
        + (
            f"a new admin token was written to {report.admin_token_path} (mode 0600)."
            if report.admin_token_path is not None
            else "an admin token already existed."
        )
        + " Create the other tokens again (sae token create).[/bold yellow]"
    )


def backup_command(
    dest: Annotated[Path, typer.Argument(help="Directory the dated backup is written under.")],
    keys_only: Annotated[
        bool,
        typer.Option(
            "--keys-only",
            help="Only the keys, TSA material and offers file (a PostgreSQL catalogue is "
            "saved by pg_dump: docs/recovery.md).",
        ),
    ] = False,
) -> None:
    """Back up the embedded catalogue, the journal keys, the TSA material and the offers file.

    Taken while SAE runs (SQLite's online backup, one snapshot; deposits go on). Written to a
    new directory DEST/sae-backup-<UTC time>/ with MANIFEST.json and SHA512SUMS
    (``sha512sum -c SHA512SUMS``). THE BACKUP HOLDS PRIVATE KEYS: keep it as you keep them.

    Example: ``sae backup /mnt/sauvegardes/sae``
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from sae.db import transaction
    from sae.recovery.backup import record_backup, take_backup

    settings = settings_or_exit()
    with refusals(1):
        with Progress(
            TextColumn("catalogue"), BarColumn(), DownloadColumn(), console=err, transient=True
        ) as bar:
            task = bar.add_task("copy", total=None)

            def step(done: int, total: int) -> None:
                bar.update(task, completed=done * 4096, total=total * 4096)

            result = take_backup(settings, dest, keys_only=keys_only, progress=step)
    with refusals(1), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        record_backup(session, result, actor=archivist_at_keyboard("sae backup").actor)
    out = make_console()
    database = result.manifest["database"]
    if database is not None:
        out.print(
            f"catalogue copied: journal of {database['tree_size']} leaves "
            f"({database['accepted_transfers']} accepted transfers), integrity_check ok"
        )
    for entry in result.manifest["files"]:
        out.print(f"  {entry['path']}  {entry['size']} bytes")
    if result.manifest["contains_private_keys"]:
        err.print(
            "[bold red]WARNING: this backup holds SAE's PRIVATE KEYS (journal signing key"
            ", TSA key). Anyone who reads it can sign journal heads and time-stamps in SAE's "
            "name: keep it encrypted or offline, readable by its owner only (it is 0600/0700), "
            "never on an offer.[/bold red]"
        )
    out.print(f"check it with: cd {result.path} && sha512sum -c {'SHA512SUMS'}")
    sys.stdout.write(f"{result.path}\n")


def restore_command(
    src: Annotated[Path, typer.Argument(help="A backup directory (sae-backup-<time>).")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace a catalogue or keys already there (moved aside, not deleted)."
        ),
    ] = False,
    from_offer: Annotated[
        str | None,
        typer.Option("--from", help="The offer to catch up from (default: the first one)."),
    ] = None,
    offers_file: Annotated[
        Path | None,
        typer.Option(
            help="Where the backup's offers file goes (default: SAE_OFFERS_FILE, else where "
            "it was when the backup was taken)."
        ),
    ] = None,
) -> None:
    """Put a backup back, then replay from an offer what happened after it.

    Checks every file against SHA512SUMS, verifies the offer's journal and that it continues
    the backup's, refuses a data directory that holds a catalogue or other keys (``--force``
    renames them ``*.replaced-by-restore-<time>``), puts the catalogue, keys and offers file
    back, then replays the offer's journal leaves and transfers after the backup. Stop SAE
    first.

    Example: ``sae restore /mnt/sauvegardes/sae/sae-backup-20261206T081500Z``
    """
    from sae.db import transaction
    from sae.journal.keys import load_journal_keys
    from sae.journal.publishing import publish_quietly
    from sae.journal.sealing import seal_now
    from sae.recovery.backup import catch_up, record_restore, restore_files

    # The configured offers file may be what the backup puts back: it is not read yet.
    settings = settings_or_exit(offers_file=None)
    target = offers_file or (
        Path(os.environ["SAE_OFFERS_FILE"]) if os.environ.get("SAE_OFFERS_FILE") else None
    )
    with refusals(1, with_code=True):
        done = restore_files(settings, src, force=force, offer_name=from_offer, offers_file=target)
    out = make_console()
    for old, new in done.put.moved_aside:
        out.print(f"moved aside: {old} -> {new}")
    for path in done.put.written:
        out.print(f"restored: {path}")
    restored_offers = done.targets.offers_file if done.backup.files("offers_file") else None
    overrides: dict[str, Any] = (
        {"offers_file": restored_offers} if restored_offers is not None else {}
    )
    if done.plan is not None and done.offer is not None:
        # No start leaves (the key pin, the configuration digests) before the catch-up: the
        # restored catalogue is behind the offer, whose leaves come next. The next start has them.
        # A backup older than this SAE is migrated whatever SAE_AUTO_MIGRATE says: putting it
        # back is the deliberate act, and the catch-up needs the code's schema.
        with (
            refusals(1, with_code=True),
            opened_runtime(check_keys=False, migrate=True, **overrides) as runtime,
        ):
            try:
                counts = catch_up(
                    runtime.sessions,
                    runtime.offer_set.get(done.offer),
                    done.plan,
                    keys=load_journal_keys(runtime.settings),
                    settings=runtime.settings,
                )
            except BaseException:
                # The backup is in place but behind the offer: a server started on it would
                # write new leaves over the offer's and fork the journal.
                err.print(
                    "[bold red]the catalogue put back is NOT caught up with the offer: do not "
                    "start SAE on it. Once the cause below is fixed, run the same `sae restore "
                    "--force` again (this catalogue is then moved aside).[/bold red]"
                )
                raise
            with transaction(runtime.sessions) as session:
                record_restore(
                    session,
                    done.backup,
                    done.plan,
                    counts,
                    actor=archivist_at_keyboard("sae restore").actor,
                )
            if counts.leaves or counts.transfers:
                # What the catch-up brought back (transfers recovered from their descriptions
                # are new leaves) is signed and published now, as `sae journal seal` does.
                if seal_now(runtime.sessions, runtime.settings, wait=True) is not None:
                    publish_quietly(runtime.sessions, runtime.strategy_offers)
        out.print(
            f"caught up from offer {done.plan.offer}: {counts.leaves} journal leaves and "
            f"{counts.transfers} transfers after the backup's {done.plan.backup_tree_size} "
            f"leaves (the offer holds {done.plan.offer_tree_size})"
        )
        if counts.heads:
            out.print(
                f"{counts.heads} signed head(s) sealed after the backup's copy, over leaves it "
                "held, recorded from the offer"
            )
    else:
        # Keys only: no catalogue was put back, none is opened (a new one made here would
        # start a journal of its own beside the one on the offers).
        out.print("keys, TSA material and offers file put back; no catalogue in this backup")
    if done.backup.files("tsa_ca"):
        out.print(
            "the external TSA's trust anchors are in tsa-ca/: put them back at SAE_TSA_CA_FILE"
        )
    if restored_offers is not None and not os.environ.get("SAE_OFFERS_FILE"):
        out.print(f"[yellow]set SAE_OFFERS_FILE={restored_offers} before starting SAE[/yellow]")
    out.print(f"backup {done.backup.name} restored")
