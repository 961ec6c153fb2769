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

from sae.access.cli import derogation_app
from sae.alerts.cli import alerts_app
from sae.cli_support import make_console, opened_runtime, refusals, settings_or_exit
from sae.journal.cli import journal_app, verify_bundle_command
from sae.migrate_cli import migrate_app, migrate_db_command
from sae.recovery.cli import backup_command, drill_command, rebuild_command, restore_command
from sae.retention.cli import retention_app
from sae.storage.cli import audit_command, fsck_command
from sae.witness.cli import witness_app

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
app.add_typer(derogation_app, name="derogation")
app.command("audit")(audit_command)
app.command("fsck")(fsck_command)
app.add_typer(journal_app, name="journal")
app.add_typer(witness_app, name="witness")
app.add_typer(alerts_app, name="alerts")
app.command("verify")(verify_bundle_command)
app.command("drill")(drill_command)
app.command("rebuild")(rebuild_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)
app.add_typer(migrate_app, name="migrate")
app.command("migrate-db")(migrate_db_command)

console = make_console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from sae import __version__

        sys.stdout.write(f"sae {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version (the one /health reports) and exit.",
        ),
    ] = False,
) -> None:
    """Every command logs the same way as the server: configured once, at its start
    (``SAE_LOG_LEVEL``, ``SAE_LOG_FORMAT``; see ``sae.logs``)."""
    from sae.config import ConfigurationError, load_settings
    from sae.logs import configure_logging

    try:
        # The servers (sae serve, sae witness serve) log at SAE_LOG_LEVEL, INFO by default;
        # the other commands speak to a person: WARNING unless SAE_LOG_LEVEL says otherwise.
        configure_logging(load_settings(), quiet_by_default=True)
    except ConfigurationError:
        return  # the command itself refuses the configuration, naming the variable


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
    from sae.logs import configure_logging
    from sae.metrics import prepare_multiprocess

    configure_logging(settings)  # a server: INFO unless SAE_LOG_LEVEL says otherwise

    # The counters of every worker process in files that any of them sums for a scrape.
    prepare_multiprocess(settings.data_dir)
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
def worker() -> None:
    """Run the background work alone, without the HTTP API, until stopped (SIGTERM, Ctrl-C).

    Seals journal heads, ends quarantines, runs the scheduled fixity audits and restore drills.
    Every ``sae serve`` process does the same work beside the API (the database shares it out);
    a worker keeps it going while no server runs. Example: ``sae worker``
    """
    import signal
    import threading

    from sae.background import run_worker

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    with opened_runtime() as runtime:
        console.print(f"SAE worker running — offers: {', '.join(runtime.offer_set.strategy)}")
        run_worker(runtime, stop)
    console.print("SAE worker stopped")


@app.command()
def init() -> None:
    """Create the data directory, migrate the database, check the offers, write the admin token.

    ``sae init`` upgrades the schema whatever ``SAE_AUTO_MIGRATE`` says: setting up is the
    deliberate act. Example: ``SAE_DATABASE_URL=postgresql+psycopg://sae@db/sae sae init``
    """
    with opened_runtime(migrate=True) as runtime:
        console.print(f"database ready: {runtime.settings.db_url.split('://')[0]}")
        console.print(f"offers: {', '.join(runtime.offer_set.strategy)}")
        if runtime.admin_token_path is not None:
            console.print(f"admin token written to {runtime.admin_token_path} (mode 0600)")
        else:
            console.print("an admin token already exists")


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
