"""The ``sae`` command line (Typer + Rich).

Every command builds the settings from the environment (``SAE_*``), so the same variables drive
the server and the tools.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from sae.config import ConfigurationError, Settings, load_settings

if TYPE_CHECKING:
    from sae.runtime import Runtime

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

console = Console(stderr=True)


def settings_or_exit() -> Settings:
    """The settings, or a readable refusal naming the variable (exit 2)."""
    try:
        return load_settings()
    except ConfigurationError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def open_runtime() -> Runtime:
    """The runtime (migrated database, checked offers), or a readable refusal (exit 2)."""
    from sae.errors import SAEError
    from sae.runtime import Runtime

    settings = settings_or_exit()
    try:
        return Runtime.open(settings)
    except SAEError as exc:
        console.print(f"[red]configuration refused: {exc.detail}[/red]")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default SAE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SAE_PORT, 8000).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run the HTTP API.

    Example: ``SAE_DATA_DIR=./sae-data sae serve --port 8000``
    """
    import uvicorn

    from sae.app import create_app

    settings = settings_or_exit()
    runtime = open_runtime()
    token_path = runtime.extras.get("admin_token_path")
    if token_path is not None:
        console.print(
            f"[bold yellow]First start: an admin token was written to {token_path} "
            "(mode 0600). Keep it safe.[/bold yellow]"
        )
    console.print(
        f"SAE listening on http://{host or settings.host}:{port or settings.port} — "
        f"data in {settings.data_dir}, database {settings.db_url.split('://')[0]}, "
        f"offers: {', '.join(runtime.offer_set.strategy)}"
    )
    uvicorn.run(
        create_app(settings, runtime=runtime),
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
    )


@app.command()
def init() -> None:
    """Create the data directory, migrate the database, check the offers, write the admin token.

    Example: ``SAE_DATABASE_URL=postgresql+psycopg://sae@db/sae sae init``
    """
    runtime = open_runtime()
    path = runtime.extras.get("admin_token_path")
    console.print(f"database ready: {runtime.settings.db_url.split('://')[0]}")
    console.print(f"offers: {', '.join(runtime.offer_set.strategy)}")
    if path is not None:
        console.print(f"admin token written to {path} (mode 0600)")
    else:
        console.print("an admin token already exists")
    runtime.close()


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
    from sae.errors import SAEError

    if role == "depositor" and not producer:
        console.print("[red]a depositor token needs at least one --producer[/red]")
        raise typer.Exit(2)
    runtime = open_runtime()
    try:
        with transaction(runtime.sessions) as session:
            token, secret = create_token(
                session, role=role, producers=list(producer or []), label=label
            )
    except SAEError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from None
    console.print(f"token {token.id} created: role {role}, producers {token.producers or '-'}")
    sys.stdout.write(secret + "\n")
    runtime.close()


@rules_app.command("import")
def rules_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Replace the referential with FILE (Vitam CSV or YAML).

    Example: ``sae rules import retention_rules/communal.csv``
    """
    from sae.db import transaction
    from sae.errors import SAEError
    from sae.retention import referential

    runtime = open_runtime()
    try:
        specs = referential.parse(
            file.read_text(encoding="utf-8"),
            "text/csv" if file.suffix.lower() == ".csv" else "application/yaml",
        )
        with transaction(runtime.sessions) as session:
            summary = referential.import_rules(session, specs)
    except SAEError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        for problem in exc.extra.get("problems", [])[:50]:
            console.print(f"  - {problem}")
        raise typer.Exit(1) from None
    except UnicodeDecodeError:
        console.print("[red]the referential must be UTF-8[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"referential imported: {summary['total']} rules "
        f"({summary['added']} added, {summary['changed']} changed, {summary['removed']} removed)"
    )
    runtime.close()


@rules_app.command("export")
def rules_export() -> None:
    """Print the referential in the Vitam CSV format.

    Example: ``sae rules export > rules.csv``
    """
    from sae.retention import referential

    runtime = open_runtime()
    with runtime.sessions() as session:
        sys.stdout.write(referential.export_csv(referential.list_rules(session)))
    runtime.close()


def main() -> None:  # pragma: no cover - console entry point
    app()
