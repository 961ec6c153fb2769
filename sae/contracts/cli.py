"""``sae contract …`` and ``sae profile …``: ingest contracts and archival profiles from a shell.

Every command opens the runtime from the ``SAE_*`` environment, acts as the archivist at the
keyboard (the journal names the local user) and commits before printing its result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sae.cli_support import (
    archivist_at_keyboard,
    iso_date,
    make_console,
    opened_runtime,
    print_rows,
    refusals,
)

contract_app = typer.Typer(
    help="Ingest contracts: what each producing service may deposit.", no_args_is_help=True
)
profile_app = typer.Typer(help="Archival profiles (RelaxNG) that SIPs name.", no_args_is_help=True)
console = make_console(stderr=True)
out = make_console()


@contract_app.command("add")
def contract_add(
    contract_id: Annotated[str, typer.Argument(help="The ArchivalAgreement value SIPs carry.")],
    name: Annotated[str, typer.Option(help="A name for people.")],
    producer: Annotated[list[str], typer.Option(help="A producing service (repeat for several).")],
    profile: Annotated[
        list[str] | None, typer.Option(help="An archival profile id SIPs may name (repeat).")
    ] = None,
    record_type: Annotated[
        list[str] | None,
        typer.Option(help="A record type of the schedule, or an AppraisalRule id (repeat)."),
    ] = None,
    rule: Annotated[
        list[str] | None, typer.Option(help="A rule id SIPs may name (repeat).")
    ] = None,
    format: Annotated[
        list[str] | None,
        typer.Option("--format", help="A PRONOM id (fmt/354) or MIME type (repeat)."),
    ] = None,
    max_transfer_bytes: Annotated[int | None, typer.Option(help="Per transfer.")] = None,
    max_object_bytes: Annotated[int | None, typer.Option(help="Per file.")] = None,
    ocr_required: Annotated[bool, typer.Option(help="Images must be OCRed.")] = False,
    antivirus_required: Annotated[bool, typer.Option(help="Files must be virus-checked.")] = False,
    valid_from: Annotated[str | None, typer.Option(help="ISO date.")] = None,
    valid_until: Annotated[str | None, typer.Option(help="ISO date.")] = None,
    description: Annotated[str, typer.Option()] = "",
    replace: Annotated[bool, typer.Option(help="Replace the contract of this id.")] = False,
) -> None:
    """Create (or with ``--replace``, replace) an ingest contract. Empty clauses do not restrict.

    Example: ``sae contract add CONV-URBA --name "Urbanisme" --producer URBANISME
    --record-type "Permis de construire" --format fmt/354 --format application/pdf
    --max-object-bytes 200000000``
    """
    from sae.contracts import service
    from sae.db import transaction

    spec = service.ContractSpec(
        id=contract_id,
        name=name,
        producers=producer,
        description=description,
        valid_from=iso_date(valid_from),
        valid_until=iso_date(valid_until),
        profiles=profile or [],
        record_types=record_type or [],
        rules=rule or [],
        formats=format or [],
        max_transfer_bytes=max_transfer_bytes,
        max_object_bytes=max_object_bytes,
        ocr_required=ocr_required,
        antivirus_required=antivirus_required,
    )
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            contract = service.save_contract(
                session, spec, actor=archivist_at_keyboard("sae contract add"), replace=replace
            )
            clauses = contract.clauses()
    out.print(f"contrat {escape(clauses['id'])} enregistré")


@contract_app.command("list")
def contract_list() -> None:
    """The contracts, with their producers and status.

    Example: ``sae contract list``
    """
    from sae.contracts import service

    with refusals(1, with_code=True), opened_runtime() as runtime:
        with runtime.sessions() as session:
            rows = [c.clauses() for c in service.list_contracts(session)]
    if not rows:
        console.print("aucun contrat")
        return
    print_rows(
        out,
        ("contrat", "nom", "services producteurs", "statut", "profils", "formats"),
        [
            (
                c["id"],
                c["name"],
                ", ".join(c["producers"]),
                "actif" if c["status"] == "active" else "désactivé",
                ", ".join(c["profiles"]) or "-",
                ", ".join(c["formats"]) or "tous",
            )
            for c in rows
        ],
    )


@contract_app.command("show")
def contract_show(contract_id: Annotated[str, typer.Argument()]) -> None:
    """One contract, every clause (JSON).

    Example: ``sae contract show CONV-URBA``
    """
    from sae.contracts import service

    with refusals(1, with_code=True), opened_runtime() as runtime:
        with runtime.sessions() as session:
            clauses = service.get_contract(session, contract_id).clauses()
    typer.echo(json.dumps(clauses, ensure_ascii=False, indent=2))


@contract_app.command("disable")
def contract_disable(contract_id: Annotated[str, typer.Argument()]) -> None:
    """Disable a contract: every SIP naming it is refused from now on.

    Example: ``sae contract disable CONV-URBA``
    """
    from sae.contracts import service
    from sae.db import transaction

    actor = archivist_at_keyboard("sae contract disable")
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            service.set_status(session, contract_id, "inactive", actor=actor)
    out.print(f"contrat {escape(contract_id)} désactivé")


@contract_app.command("enable")
def contract_enable(contract_id: Annotated[str, typer.Argument()]) -> None:
    """Enable a disabled contract again.

    Example: ``sae contract enable CONV-URBA``
    """
    from sae.contracts import service
    from sae.db import transaction

    actor = archivist_at_keyboard("sae contract enable")
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            service.set_status(session, contract_id, "active", actor=actor)
    out.print(f"contrat {escape(contract_id)} réactivé")


@profile_app.command("add")
def profile_add(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The .rng file.")],
    profile_id: Annotated[
        str, typer.Option("--id", help="The ArchivalProfile value SIPs will carry.")
    ],
    name: Annotated[str, typer.Option(help="A name for people.")] = "",
    replace: Annotated[bool, typer.Option(help="Replace the profile of this id.")] = False,
) -> None:
    """Store a RelaxNG archival profile (it must compile, and include no other document).

    Example: ``sae profile add profil-deliberations.rng --id PROFIL-DELIB``
    """
    from sae.contracts import service
    from sae.db import transaction

    data = path.read_bytes()
    with refusals(1, with_code=True), opened_runtime() as runtime:
        with transaction(runtime.sessions) as session:
            profile = service.add_profile(
                session,
                profile_id,
                name,
                data,
                filename=path.name,
                actor=archivist_at_keyboard("sae profile add"),
                replace=replace,
            )
            digest = profile.sha512
    out.print(f"profil {escape(profile_id)} enregistré (SHA-512 {digest[:16]}…)")


@profile_app.command("list")
def profile_list() -> None:
    """The archival profiles.

    Example: ``sae profile list``
    """
    from sae.contracts import service

    with refusals(1, with_code=True), opened_runtime() as runtime:
        with runtime.sessions() as session:
            rows = [
                (p.id, p.name, p.filename, p.size, p.sha512) for p in service.list_profiles(session)
            ]
    if not rows:
        console.print("aucun profil")
        return
    # The whole digest when piped (a script compares it); its first 16 digits on a terminal.
    short = out.is_terminal
    print_rows(
        out,
        ("profil", "nom", "fichier", "octets", "SHA-512"),
        [
            (profile_id, name, filename, str(size), sha512[:16] + "…" if short else sha512)
            for profile_id, name, filename, size, sha512 in rows
        ],
    )
