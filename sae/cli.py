"""The ``sae`` command line (Typer + Rich).

Every command builds the settings from the environment (``SAE_*``), so the same variables drive
the server and the tools; what every command does alike is in :mod:`sae.cli_support`.
"""

from __future__ import annotations

import os
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sae.cli_support import make_console, opened_runtime, refusals, settings_or_exit
from sae.journal.cli import journal_app, verify_bundle_command
from sae.recovery.cli import drill_command
from sae.retention.cli import retention_app
from sae.storage.cli import audit_command, fsck_command

if TYPE_CHECKING:
    from sae.deposit.runner import Target
    from sae.deposit.sheet import Row

app = typer.Typer(
    name="sae",
    help="SAE — electronic records archiving service (SEDA 2.x, WORM storage, Merkle journal).",
    no_args_is_help=True,
    add_completion=False,
)
rules_app = typer.Typer(help="The management-rule referential.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(token_app, name="token")
app.add_typer(retention_app, name="retention")
app.command("audit")(audit_command)
app.command("fsck")(fsck_command)
app.add_typer(journal_app, name="journal")
app.command("verify")(verify_bundle_command)
app.command("drill")(drill_command)

console = make_console(stderr=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default SAE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SAE_PORT, 8000).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Server processes (default SAE_WORKERS, 1; one per core)."),
    ] = None,
) -> None:
    """Run the HTTP API.

    Example: ``SAE_DATA_DIR=./sae-data sae serve --port 8000``
    """
    from sae import process

    settings = settings_or_exit()
    if workers is not None and workers != settings.workers:
        os.environ["SAE_WORKERS"] = str(workers)  # the worker processes read the environment
        settings = settings_or_exit()
    host, port = host or settings.host, port or settings.port
    with opened_runtime() as runtime:
        if runtime.admin_token_path is not None:
            console.print(
                f"[bold yellow]First start: an admin token was written to "
                f"{runtime.admin_token_path} (mode 0600). Keep it safe.[/bold yellow]"
            )
        console.print(
            f"SAE listening on http://{host}:{port} — "
            f"data in {settings.data_dir}, database {settings.db_url.split('://')[0]}, "
            f"offers: {', '.join(runtime.offer_set.strategy)}"
        )
        if settings.workers == 1:
            process.serve_in_this_process(settings, runtime, host=host, port=port)
            return
    # Several processes: this one has migrated the database, checked the offers and written
    # the admin token, and closed its runtime; each worker opens its own from the environment.
    process.serve_with_workers(settings.workers, host=host, port=port)


@app.command()
def init() -> None:
    """Create the data directory, migrate the database, check the offers, write the admin token.

    Example: ``SAE_DATABASE_URL=postgresql+psycopg://sae@db/sae sae init``
    """
    with opened_runtime() as runtime:
        console.print(f"database ready: {runtime.settings.db_url.split('://')[0]}")
        console.print(f"offers: {', '.join(runtime.offer_set.strategy)}")
        if runtime.admin_token_path is not None:
            console.print(f"admin token written to {runtime.admin_token_path} (mode 0600)")
        else:
            console.print("an admin token already exists")


@app.command("rebuild")
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
        console=console,
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
                    console.print(f"[red]rebuild stopped: {escape(exc.detail)}[/red]")
                    console.print(
                        "what was verified before is committed; once the offer is repaired, "
                        "the same command resumes"
                    )
                    raise typer.Exit(1) from None
        finally:
            bar.stop()
    if as_json:
        sys.stdout.write(report_json(report) + "\n")
        return
    console.print(
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
        console.print(f"  {name}: {count}")
    if report.recovered:
        console.print(
            f"[yellow]{len(report.recovered)} transfer(s) acknowledged after the last published "
            "journal segment recovered from their descriptions (journaled "
            "rebuild.transfer_recovered)[/yellow]"
        )
    for note in report.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    if report.head_size is not None:
        console.print(f"new tree head sealed at {report.head_size} leaves")
    console.print(
        "[bold yellow]Tokens are not rebuilt: "
        + (
            f"a new admin token was written to {report.admin_token_path} (mode 0600)."
            if report.admin_token_path is not None
            else "an admin token already existed."
        )
        + " Create the other tokens again (sae token create).[/bold yellow]"
    )


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin, archivist, auditor, depositor or reader.")],
    producer: Annotated[
        list[str] | None,
        typer.Option(help="Producing service (OriginatingAgencyIdentifier); repeatable."),
    ] = None,
    label: Annotated[str, typer.Option(help="Who or what the token is for.")] = "",
) -> None:
    """Create an API token; the token alone is printed on the last line.

    Example: ``sae token create --role depositor --producer URBANISME --label "GED urbanisme"``
    """
    from sae.auth.service import create_token
    from sae.db import transaction

    if role == "depositor" and not producer:
        console.print("[red]a depositor token needs at least one --producer[/red]")
        raise typer.Exit(2)
    with refusals(2), opened_runtime() as runtime, transaction(runtime.sessions) as session:
        token, secret = create_token(
            session, role=role, producers=list(producer or []), label=label
        )
    console.print(f"token {token.id} created: role {role}, producers {token.producers or '-'}")
    sys.stdout.write(secret + "\n")


@rules_app.command("import")
def rules_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Replace the referential with FILE (Vitam CSV or YAML).

    Example: ``sae rules import retention_rules/communal.csv``
    """
    from sae.db import transaction
    from sae.retention import referential

    with refusals(1), opened_runtime() as runtime:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            console.print("[red]the referential must be UTF-8[/red]")
            raise typer.Exit(1) from None
        specs = referential.parse(
            text, "text/csv" if file.suffix.lower() == ".csv" else "application/yaml"
        )
        with transaction(runtime.sessions) as session:
            summary = referential.import_rules(session, specs)
    console.print(
        f"referential imported: {summary['total']} rules "
        f"({summary['added']} added, {summary['changed']} changed, {summary['removed']} removed)"
    )


@rules_app.command("export")
def rules_export() -> None:
    """Print the referential in the Vitam CSV format.

    Example: ``sae rules export > rules.csv``
    """
    from sae.retention import referential

    with opened_runtime() as runtime, runtime.sessions() as session:
        sys.stdout.write(referential.export_csv(referential.list_rules(session)))


@app.command()
def backup(
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

    from sae.cli_support import archivist_at_keyboard
    from sae.db import transaction
    from sae.recovery.backup import record_backup, take_backup

    settings = settings_or_exit()
    with refusals(1):
        with Progress(
            TextColumn("catalogue"), BarColumn(), DownloadColumn(), console=console, transient=True
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
        console.print(
            "[bold red]WARNING: this backup holds SAE's PRIVATE KEYS (journal signing key"
            ", TSA key). Anyone who reads it can sign journal heads and time-stamps in SAE's "
            "name: keep it encrypted or offline, readable by its owner only (it is 0600/0700), "
            "never on an offer.[/bold red]"
        )
    out.print(f"check it with: cd {result.path} && sha512sum -c {'SHA512SUMS'}")
    sys.stdout.write(f"{result.path}\n")


@app.command()
def restore(
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
    from sae.cli_support import archivist_at_keyboard
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
    overrides = {"offers_file": restored_offers} if restored_offers is not None else {}
    if done.plan is not None and done.offer is not None:
        with refusals(1, with_code=True), opened_runtime(**overrides) as runtime:
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
                console.print(
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


def main() -> None:  # pragma: no cover - console entry point
    app()


@app.command()
def deposit(
    directory: Annotated[
        str, typer.Argument(help="Folder of the files; or 'template' to write a sheet.")
    ],
    out: Annotated[
        Path | None, typer.Argument(help="With 'template': the sheet to write (.csv/.xlsx).")
    ] = None,
    sheet: Annotated[
        Path | None, typer.Option(help="Spreadsheet (.csv or .xlsx), one row per file.")
    ] = None,
    producer: Annotated[
        str | None, typer.Option(help="Producing service (OriginatingAgencyIdentifier).")
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="SAE URL; without it, deposit into the local SAE.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Depositor token (or SAE_TOKEN).", envvar="SAE_TOKEN")
    ] = None,
    archival_agency: Annotated[str, typer.Option(help="ArchivalAgency identifier.")] = "SAE",
    batch: Annotated[int, typer.Option(help="Most files per SIP.", min=1)] = 500,
    batch_mib: Annotated[int, typer.Option(help="Most MiB per SIP.", min=1)] = 2048,
    seda_version: Annotated[str, typer.Option(help="SEDA version of the SIPs.")] = "2.2",
    check: Annotated[bool, typer.Option(help="Only check the sheet and the files.")] = False,
) -> None:
    """Deposit a folder of scans described by a spreadsheet (one row per file).

    Columns: file, title, date (AAAA-MM-JJ), record_type (a record type of the schedule or an
    AppraisalRule id), then optional description, start_date, end_date, keywords, identifier,
    final_action, access_rule, access_start_date. Every problem is listed before anything is
    sent; files are grouped into SIPs of --batch files.

    Example: ``sae deposit scans/ --sheet scans.xlsx --producer URBANISME
    --server http://sae.mairie.local:8000 --token $SAE_TOKEN``; ``sae deposit template
    depot.xlsx`` writes an empty sheet with its columns.
    """
    from sae.deposit.runner import HttpTarget, LocalTarget
    from sae.deposit.sheet import SheetError, read_sheet, write_template

    if directory == "template" and sheet is None:
        target_file = out or Path("depot.csv")
        write_template(target_file)
        console.print(f"modèle écrit : {target_file}")
        return
    folder = Path(directory)
    if sheet is None or producer is None:
        console.print("[red]--sheet et --producer sont obligatoires[/red]")
        raise typer.Exit(2)
    if not folder.is_dir():
        console.print(f"[red]dossier introuvable : {folder}[/red]")
        raise typer.Exit(2)
    try:
        rows = read_sheet(sheet)
    except SheetError as exc:
        for problem in exc.problems:
            console.print(f"[red]{problem}[/red]")
        raise typer.Exit(2) from None
    plan = (folder, rows, producer, archival_agency, batch, batch_mib, seda_version, check)
    if server:
        if not token:
            console.print("[red]--token (ou SAE_TOKEN) est obligatoire avec --server[/red]")
            raise typer.Exit(2)
        with closing(HttpTarget(server, token)) as remote:
            _deposit_with(remote, *plan)
        return
    with opened_runtime() as runtime:
        _deposit_with(LocalTarget(runtime), *plan)


def _deposit_with(
    target: Target,
    folder: Path,
    rows: list[Row],
    producer: str,
    archival_agency: str,
    batch: int,
    batch_mib: int,
    seda_version: str,
    check: bool,
) -> None:
    """Check the rows against the target's referential, then send the SIPs."""
    from rich.progress import Progress

    from sae.deposit import build
    from sae.deposit.runner import BatchResult, send_all
    from sae.retention.referential import shipped_specs

    try:
        rules = target.rules()
    except Exception as exc:  # an unreachable server or a refused token, said plainly
        console.print(f"[red]référentiel inaccessible : {exc}[/red]")
        raise typer.Exit(2) from None
    resolver = build.RuleResolver(rules, [s.as_dict() for s in shipped_specs()])
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Contrôle des fichiers", total=len(rows))
        planned = build.plan(folder, rows, resolver, progress=lambda n: progress.advance(task, n))
    for warning in planned.warnings:
        console.print(f"[yellow]{warning}[/yellow]")
    if planned.problems:
        console.print(f"[red]{len(planned.problems)} problème(s), rien n'a été déposé :[/red]")
        for problem in planned.problems:
            console.print(f"  - {problem}")
        raise typer.Exit(2)
    console.print(f"{len(planned.items)} fichier(s) contrôlé(s).")
    if check:
        return

    def report(result: BatchResult) -> None:
        if result.status == "OK":
            console.print(
                f"lot {result.number} : [green]accepté[/green] ({result.files} document(s), "
                f"versement {result.transfer_id})"
            )
        else:
            console.print(f"lot {result.number} : [red]refusé[/red] ({result.files} document(s))")
            for error in result.errors[:20]:
                where = f" [{error.get('where')}]" if error.get("where") else ""
                console.print(f"  - {error.get('code')}: {error.get('message')}{where}")

    results = send_all(
        target,
        planned.items,
        producer=producer,
        archival_agency=archival_agency,
        max_files=batch,
        max_bytes=batch_mib * 1024 * 1024,
        version=seda_version,
        known_rules={str(r["id"]): r for r in rules},
        on_batch=report,
    )
    accepted = sum(1 for r in results if r.status == "OK")
    console.print(f"{accepted}/{len(results)} lot(s) accepté(s).")
    for result in results:
        if result.transfer_id:
            sys.stdout.write(f"{result.status} {result.transfer_id}\n")
    if accepted != len(results):
        raise typer.Exit(1)
