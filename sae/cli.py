"""The ``sae`` command line (Typer + Rich).

Every command builds the settings from the environment (``SAE_*``), so the same variables drive
the server and the tools; what every command does alike is in :mod:`sae.cli_support`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import ProgressColumn, Task
from rich.text import Text

from sae.access.cli import communications_app, derogation_app
from sae.alerts.cli import alerts_app
from sae.auth.cli import token_app, user_app
from sae.auth.sso_cli import directory_app
from sae.cli_support import make_console, opened_runtime, refusals, settings_or_exit
from sae.contracts.cli import contract_app, profile_app
from sae.journal.cli import journal_app, verify_bundle_command
from sae.migrate_cli import migrate_app, migrate_db_command
from sae.pastell.cli import pastell_app
from sae.recovery.cli import backup_command, drill_command, rebuild_command, restore_command
from sae.retention.cli import retention_app
from sae.storage.cli import audit_command, fsck_command
from sae.witness.cli import witness_app

if TYPE_CHECKING:
    from sae.deposit.build import PlannedFile
    from sae.deposit.runner import BatchResult, Target
    from sae.deposit.sheet import Row
    from sae.deposit.state import DepositState
    from sae.retention.referential import ImportPreview

app = typer.Typer(
    name="sae",
    help="SAE — electronic records archiving service (SEDA 2.x, WORM storage, Merkle journal).",
    no_args_is_help=True,
    add_completion=False,
)
rules_app = typer.Typer(help="The management-rule referential.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")
app.add_typer(directory_app, name="directory")
app.add_typer(retention_app, name="retention")
app.add_typer(contract_app, name="contract")
app.add_typer(profile_app, name="profile")
app.add_typer(derogation_app, name="derogation")
app.add_typer(communications_app, name="communications")
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
app.add_typer(pastell_app, name="pastell-account")

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


@rules_app.command("import")
def rules_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show what the import would change (rules, units whose dates change); "
            "write nothing.",
        ),
    ] = False,
) -> None:
    """Replace the referential with FILE (Vitam CSV or YAML).

    Example: ``sae rules import retention_rules/communal.csv`` (``--dry-run`` to preview)
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
        if dry_run:
            with runtime.sessions() as session:
                preview = referential.preview_import(session, specs)
            _print_preview(preview)
            if not preview.applicable:
                raise typer.Exit(1)
            return
        with transaction(runtime.sessions) as session:
            summary = referential.import_rules(session, specs)
    console.print(
        f"referential imported: {summary['total']} rules "
        f"({summary['added']} added, {summary['changed']} changed, {summary['removed']} removed)"
    )


def _print_preview(preview: ImportPreview) -> None:
    """The dry run of ``sae rules import``: what the import would change."""
    console.print(
        f"would import {preview.total} rules: {len(preview.added)} added, "
        f"{len(preview.changed)} changed, {len(preview.removed)} removed, "
        f"{preview.unchanged} unchanged; {preview.units_changed} units would get new end dates"
    )
    for spec in preview.added:
        console.print(f"  + {spec.id} ({spec.type})")
    for change in preview.changed:
        console.print(f"  ~ {change.id}: {change.before} -> {change.after}")
    for rule in preview.removed:
        console.print(f"  - {rule.id} ({rule.type})")
    for unit in preview.sample:
        console.print(
            f"  unit {unit.unit_id} {unit.category}: {unit.before or '-'} -> {unit.after or '-'}"
        )
    for refusal in preview.refusals:
        console.print(f"[red]refused: {refusal}[/red]")
    console.print("nothing written (dry run)")


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


def _ocr_scans(items: list[PlannedFile], languages: str) -> tempfile.TemporaryDirectory[str]:
    """``--ocr``: the scans still to send OCRed into a PDF/A each (``sae.deposit.ocr``), in a
    private folder the caller removes once the SIPs are sent. The batches' MessageIdentifiers
    do not depend on it (they hash the masters): a batch is archived once, with or without
    its OCR."""
    from rich.progress import Progress

    from sae.deposit.ocr import add_ocr

    folder = tempfile.TemporaryDirectory(prefix="sae-ocr-")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("OCR des images", total=len(items))
        warnings = add_ocr(
            items,
            Path(folder.name),
            languages=languages,
            progress=lambda n: progress.advance(task, n),
        )
    for warning in warnings:
        console.print(f"[yellow]{warning}[/yellow]")
    made = sum(len(item.derived) for item in items)
    console.print(f"{made} PDF/A océrisé(s) ajouté(s) à côté des images.")
    return folder


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
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "--check",
            help="Check the sheet and the files, list every problem, send nothing.",
        ),
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            help="State file of the deposit (default: beside the sheet, "
            "SHEET.etat-depot.json); a deposit run again skips what it records."
        ),
    ] = None,
    ocr: Annotated[
        bool,
        typer.Option(help="OCR images and image-only PDFs into a PDF/A added beside each scan."),
    ] = False,
    ocr_languages: Annotated[
        str, typer.Option(help="Tesseract languages of --ocr (e.g. fra+eng).")
    ] = "fra",
) -> None:
    """Deposit a folder of scans described by a spreadsheet (one row per file).

    Columns: file, title, date (AAAA-MM-JJ), record_type (a record type of the schedule or an
    AppraisalRule id), then optional description, start_date, end_date, keywords, identifier,
    final_action, access_rule, access_start_date, and the scan's capture record: scanner,
    scan_resolution (dpi), scan_operator, scan_date, paper_original (conservé/détruit). Every
    problem is listed before anything is sent (--dry-run: only that); files are grouped into
    SIPs of --batch files. Interrupted, run it again: it resumes, and never archives a file
    twice. With --ocr, each image and
    image-only PDF is OCRed (ocrmypdf, French by default) into a searchable PDF/A-2b sent in
    the same object group as the scan, which stays the master.

    Example: ``sae deposit scans/ --sheet scans.xlsx --producer URBANISME
    --server http://sae.mairie.local:8000 --token $SAE_TOKEN``; ``sae deposit template
    depot.xlsx`` writes a sheet with its columns, the schedule's record types as a drop-down
    list and a help sheet.
    """
    from sae.deposit.runner import HttpTarget, LocalTarget
    from sae.deposit.sheet import SheetError, read_sheet

    if directory == "template" and sheet is None:
        _write_template(out or Path("depot.csv"), server, token)
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
    job = _DepositJob(
        folder,
        sheet,
        rows,
        producer,
        archival_agency,
        batch,
        batch_mib,
        seda_version,
        dry_run,
        state,
        ocr_languages if ocr else None,
    )
    if server:
        if not token:
            console.print("[red]--token (ou SAE_TOKEN) est obligatoire avec --server[/red]")
            raise typer.Exit(2)
        with closing(HttpTarget(server, token)) as remote:
            _deposit_with(remote, job)
        return
    with opened_runtime() as runtime:
        _deposit_with(LocalTarget(runtime), job)


def _write_template(path: Path, server: str | None, token: str | None) -> None:
    """The sheet template, with the record types of the referential in force: the server's
    with ``--server``, else the local SAE's, else the shipped schedule's."""
    from sae.deposit.runner import HttpTarget, LocalTarget
    from sae.deposit.sheet import write_template
    from sae.retention.referential import shipped_specs

    rules: list[dict[str, object]] = []
    try:
        if server and token:
            with closing(HttpTarget(server, token)) as remote:
                rules = list(remote.rules())
        elif not server:
            with opened_runtime() as runtime:
                rules = list(LocalTarget(runtime).rules())
    except Exception as exc:  # the template is still useful without the referential
        console.print(f"[yellow]référentiel inaccessible ({exc}) : types du tableau livré[/yellow]")
    if not any(r.get("type") == "AppraisalRule" for r in rules):
        rules = [s.as_dict() for s in shipped_specs()]
    record_types = sorted(
        {str(r.get("value") or r.get("id")) for r in rules if r.get("type") == "AppraisalRule"}
    )
    write_template(path, record_types)
    console.print(f"modèle écrit : {path} ({len(record_types)} type(s) de document)")


@dataclass(frozen=True)
class _DepositJob:
    folder: Path
    sheet: Path
    rows: list[Row]
    producer: str
    archival_agency: str
    batch: int
    batch_mib: int
    seda_version: str
    dry_run: bool
    state: Path | None
    #: Tesseract languages with --ocr, None without.
    ocr_languages: str | None = None


def _deposit_with(target: Target, job: _DepositJob) -> None:
    """Check the rows against the target's referential, then send the SIPs not yet
    acknowledged, with a progress bar, and sum up."""
    from rich.progress import Progress

    from sae.deposit import build
    from sae.deposit.state import DepositState, StateError, default_path
    from sae.retention.referential import shipped_specs

    try:
        rules = target.rules()
    except Exception as exc:  # an unreachable server or a refused token, said plainly
        console.print(f"[red]référentiel inaccessible : {exc}[/red]")
        raise typer.Exit(2) from None
    state_path = job.state or default_path(job.sheet)
    try:
        state = DepositState.open(
            state_path,
            producer=job.producer,
            target=target.name,
            max_files=job.batch,
            max_bytes=job.batch_mib * 1024 * 1024,
        )
    except StateError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    resolver = build.RuleResolver(rules, [s.as_dict() for s in shipped_specs()])
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Contrôle des fichiers", total=len(job.rows))
        planned = build.plan(
            job.folder,
            job.rows,
            resolver,
            progress=lambda n: progress.advance(task, n),
            ignore=(job.sheet, state_path),
        )
    for warning in planned.warnings:
        console.print(f"[yellow]attention : {warning}[/yellow]")
    if planned.problems:
        console.print(f"[red]{len(planned.problems)} problème(s), rien n'a été déposé :[/red]")
        for problem in planned.problems:
            console.print(f"  - {problem}")
        raise typer.Exit(2)
    done = state.done_files()
    todo = [item for item in planned.items if (item.uri, item.sha512) not in done]
    skipped = len(planned.items) - len(todo)
    console.print(f"{len(planned.items)} fichier(s) contrôlé(s), aucun problème.")
    if skipped:
        console.print(
            f"{skipped} fichier(s) déjà archivé(s) lors d'un dépôt précédent "
            f"(fichier d'état {state_path}) : ils ne sont pas renvoyés."
        )
    if (state.max_files, state.max_bytes) != (job.batch, job.batch_mib * 1024 * 1024):
        console.print(
            f"reprise : lots de {state.max_files} fichier(s) au plus, comme au premier "
            "passage (les mêmes lots portent les mêmes identifiants)"
        )
    if job.dry_run:
        lots = len(list(build.batches(todo, state.max_files, state.max_bytes)))
        console.print(f"essai à blanc : {len(todo)} fichier(s) en {lots} lot(s) seraient envoyés.")
        return
    if not todo:
        console.print("[green]Rien à envoyer : tout est déjà archivé.[/green]")
        return
    # The PDF/A files live in this folder until the SIPs are sent (removed when it goes).
    ocr_dir = _ocr_scans(todo, job.ocr_languages) if job.ocr_languages is not None else None
    try:
        results = _send(target, job, todo, state, rules)
    finally:
        if ocr_dir is not None:
            ocr_dir.cleanup()
    _summary(results, skipped, len(todo))


def _send(
    target: Target,
    job: _DepositJob,
    todo: list[PlannedFile],
    state: DepositState,
    rules: list[dict[str, Any]],
) -> list[BatchResult]:
    """Send the batches with a progress bar (files, bytes, rate, time left)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from sae.deposit.runner import send_all

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[files]}/{task.fields[total_files]} fichiers"),
        _BytesColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        sending = progress.add_task(
            "Envoi",
            total=sum(item.size for item in todo),
            files=0,
            total_files=len(todo),
        )
        sent_files = 0

        def report(result: BatchResult) -> None:
            nonlocal sent_files
            sent_files += result.files
            progress.update(sending, files=sent_files)
            if result.status == "OK":
                progress.console.print(
                    f"lot {result.number} : [green]accepté[/green] ({result.files} document(s), "
                    f"versement {result.transfer_id})"
                )
            elif result.status == "DUPLICATE":
                progress.console.print(
                    f"lot {result.number} : [green]déjà archivé[/green] ({result.files} "
                    f"document(s), versement {result.transfer_id or '?'}) — non dupliqué"
                )
            else:
                progress.console.print(
                    f"lot {result.number} : [red]refusé[/red] ({result.files} document(s))"
                )
                for error in result.errors[:20]:
                    where = f" [{error.get('where')}]" if error.get("where") else ""
                    progress.console.print(
                        f"  - {error.get('code')}: {error.get('message')}{where}"
                    )

        results = send_all(
            target,
            todo,
            producer=job.producer,
            archival_agency=job.archival_agency,
            max_files=state.max_files,
            max_bytes=state.max_bytes,
            version=job.seda_version,
            known_rules={str(r["id"]): r for r in rules},
            state=state,
            on_batch=report,
            on_bytes=lambda n: progress.advance(sending, n),
        )
    return results


def _octets(count: float) -> str:
    """A size as a French reader writes it (octets, Ko, Mo, Go; decimal comma)."""
    for unit in ("octets", "Ko", "Mo", "Go"):
        if count < 1000 or unit == "Go":
            text = f"{count:.0f}" if unit == "octets" else f"{count:.1f}".replace(".", ",")
            return f"{text} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class _BytesColumn(ProgressColumn):
    """Bytes sent of the total and the rate, in French units."""

    def render(self, task: Task) -> Text:
        rate = task.finished_speed or task.speed
        speed = f" à {_octets(rate)}/s" if rate else ""
        return Text(f"{_octets(task.completed)} / {_octets(task.total or 0)}{speed}")


def _summary(results: list[BatchResult], skipped: int, todo: int) -> None:
    """What the deposit did, in French, and one ``STATUS transfer-id`` line per transfer on
    stdout (for scripts); exit 1 when a batch was not archived."""
    accepted = [r for r in results if r.status == "OK"]
    duplicates = [r for r in results if r.status == "DUPLICATE"]
    refused = [r for r in results if not r.done]
    archived_files = sum(r.files for r in results if r.done)
    codes = {
        code: sum(1 for r in results if r.reply_code == code) for code in ("OK", "WARNING", "KO")
    }
    console.print("[bold]Résumé du dépôt[/bold]")
    console.print(
        f"  versements : {len(results)} envoyé(s) — {len(accepted)} accepté(s), "
        f"{len(duplicates)} déjà archivé(s), {len(refused)} refusé(s) ou en erreur"
    )
    console.print(
        f"  unités d'archives créées : {sum(r.units for r in accepted)} ; "
        f"fichiers archivés : {archived_files + skipped}/{todo + skipped}"
        + (f" (dont {skipped} lors d'un dépôt précédent)" if skipped else "")
    )
    console.print(
        f"  accusés de réception (ATR) : {codes['OK']} OK, {codes['WARNING']} avec "
        f"avertissement(s), {codes['KO']} KO"
    )
    not_sent = todo - sum(r.files for r in results)
    if not_sent:
        console.print(f"  [red]{not_sent} fichier(s) non envoyé(s) : relancez la commande[/red]")
    for result in results:
        if result.transfer_id:
            sys.stdout.write(f"{result.status} {result.transfer_id}\n")
    if refused or not_sent:
        raise typer.Exit(1)
