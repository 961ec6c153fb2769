"""``sae migrate`` (upgrade, current, history) and ``sae migrate-db --to URL`` (wired into
``sae.cli``; the domain is :mod:`sae.migrate` and :mod:`sae.migrate_db`).

Neither opens the runtime: they work on a schema the runtime would refuse to start on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sae.cli_support import make_console, refusals, settings_or_exit
from sae.config import Settings
from sae.db import make_engine, sqlite_file

out = make_console()
err = make_console(stderr=True)

migrate_app = typer.Typer(
    help="The database schema: upgrade it (the default), say where it stands, list revisions.",
    invoke_without_command=True,
)


@contextmanager
def _database(settings: Settings) -> Iterator[Engine]:
    """The configured database's engine for the block; one that cannot be reached is said
    plainly (exit 2), without the URL's password."""
    database = sqlite_file(settings.db_url)
    if database is not None:  # the embedded default: its directory, as the first start makes
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    try:
        yield engine
    except DBAPIError as exc:
        err.print(f"[red]database unreachable: {escape(str(exc.orig).strip())}[/red]")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()


@migrate_app.callback()
def migrate_default(ctx: typer.Context) -> None:
    """Upgrade the schema of SAE_DATABASE_URL to this SAE's revision (``sae migrate upgrade``).

    Example: ``SAE_DATABASE_URL=postgresql+psycopg://sae@db/sae sae migrate``
    """
    if ctx.invoked_subcommand is None:
        upgrade_command()


@migrate_app.command("upgrade")
def upgrade_command() -> None:
    """Run the pending migrations, once, under the migration lock (one host at a time).

    Exit 0 when the schema is (now) current; 2 when it is ahead of this SAE or cannot be reached.

    Example: ``sae migrate upgrade``
    """
    from sae.migrate import upgrade

    with _database(settings_or_exit()) as engine, refusals(2, with_code=True):
        change = upgrade(engine)
    if change.changed:
        out.print(
            f"database.migrated: {escape(change.describe())} "
            f"({len(change.applied)} revision(s): {escape(', '.join(change.applied))})"
        )
    else:
        out.print(f"schema already current: {escape(', '.join(change.after))}")


@migrate_app.command("current")
def current_command(
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 unless the schema is this SAE's.")
    ] = False,
) -> None:
    """Say the database's revision and whether it is this SAE's (behind, current, ahead).

    Example: ``sae migrate current --check`` (in a deployment script, before ``sae serve``)
    """
    from sae.migrate import schema_state

    with _database(settings_or_exit()) as engine:
        state = schema_state(engine)
    if state.ahead:
        verdict = f"[red]ahead of this SAE (unknown: {', '.join(state.unknown)})[/red]"
    elif state.up_to_date:
        verdict = "[green]current[/green]"
    else:
        verdict = (
            f"[yellow]behind: {len(state.pending)} migration(s) pending "
            f"({', '.join(state.pending)}); run `sae migrate`[/yellow]"
        )
    out.print(f"database: {escape(state.describe())}")
    out.print(f"this SAE: {escape(', '.join(state.heads))}")
    out.print(f"schema {verdict}")
    if check and not state.up_to_date:
        raise typer.Exit(1)


@migrate_app.command("history")
def history_command() -> None:
    """List the revisions, oldest first, marking the database's and this SAE's latest.

    Example: ``sae migrate history``
    """
    from sae.migrate import history

    with _database(settings_or_exit()) as engine:
        revisions = history(engine)
    for revision in revisions:
        marks = [m for m, on in (("database", revision.current), ("latest", revision.head)) if on]
        after = f" (after {', '.join(revision.down)})" if revision.down else ""
        said = f"  [bold]<- {', '.join(marks)}[/bold]" if marks else ""
        # One line per revision, never wrapped: scripts grep it.
        out.print(f"{revision.revision}{after}: {escape(revision.title)}{said}", soft_wrap=True)


def migrate_db_command(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The empty PostgreSQL database, e.g. postgresql+psycopg://sae:…@db/sae.",
        ),
    ],
) -> None:
    """Move the embedded (SQLite) catalogue to an empty PostgreSQL database, verified.

    Stop SAE first. Every table is copied in batches, ids kept; row counts and the journal's
    Merkle root are compared and `sae journal verify`'s check runs on the target before the
    commit; a `catalog.migrated` event is journaled there. Then point SAE_DATABASE_URL at the
    target (keys and offers stay where they are). Exit 0 on success, 1 when the copy did not
    verify (nothing kept), 2 when refused.

    Example: ``sae migrate-db --to postgresql+psycopg://sae@db.mairie.local/sae``
    """
    from sae.migrate_db import MoveProgress, MoveUnverified, move_catalog, redacted

    settings = settings_or_exit()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("counting rows", total=None)

        def step(state: MoveProgress) -> None:
            if state.phase == "copying":
                described = f"copying {state.table} ({state.rows}/{state.table_rows})"
                bar.update(task, description=described, completed=state.done, total=state.total)
            elif state.phase == "verifying":
                bar.update(task, description="verifying (counts, journal)", completed=state.done)

        with refusals(2, with_code=True):
            try:
                report = move_catalog(settings, to, progress=step)
            except MoveUnverified as exc:  # a copy that does not verify: exit 1, not a refusal
                err.print(f"[red]{exc.code}: {escape(exc.detail)}[/red]")
                err.print("nothing was kept on the target; the source is untouched")
                raise typer.Exit(1) from None
            except DBAPIError as exc:  # never the URL: it may hold the password
                err.print(f"[red]database unreachable: {escape(str(exc.orig).strip())}[/red]")
                raise typer.Exit(2) from None
    table = Table("table", "rows")
    for name, count in report.counts.items():
        if count:
            table.add_row(name, str(count))
    out.print(table)
    out.print(
        f"catalogue moved to {escape(report.target)} in {report.seconds:.1f} s: "
        f"{sum(report.counts.values())} rows, journal {report.tree_size} leaves, root "
        f"{report.root_hash.hex()} (identical on both), {report.heads_checked} signed heads and "
        f"{report.objects_checked} objects verified; leaf {report.event_leaf} records the move"
    )
    out.print(
        "next: stop using the SQLite file; set "
        f"SAE_DATABASE_URL={escape(redacted(to))} (with its password) and start SAE. "
        "Keys (SAE_DATA_DIR) and offers stay as they are. See docs/upgrades.md."
    )
