"""``sae journal …`` and ``sae verify BUNDLE.zip`` (wired into ``sae.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from sae.cli_support import make_console, opened_runtime, refusals
from sae.journal.bundle import verify_bundle
from sae.runtime import Runtime

if TYPE_CHECKING:
    from sae.journal.witnessing import WitnessCheck

journal_app = typer.Typer(
    help="The tamper-evident journal (RFC 9162 Merkle log, RFC 3161 time-stamps).",
    no_args_is_help=True,
)
out = make_console()
err = make_console(stderr=True)


@journal_app.command("verify")
def verify_command(
    skip_objects: Annotated[
        bool, typer.Option("--skip-objects", help="Do not compare the catalog's SHA-512s.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes checking a large journal (default: one per core; 1: this one only).",
        ),
    ] = None,
    offer: Annotated[
        str | None,
        typer.Option("--offer", help="Verify from this offer's journal segments alone."),
    ] = None,
) -> None:
    """Recompute the whole tree from the catalog and check every leaf, node, head and object;
    with ``--offer NAME``, from that offer's journal segments alone.

    Exit 0 when everything checks; 1 naming the first bad leaf (or segment) otherwise.

    Example: ``sae journal verify``, ``sae journal verify --offer site-a``
    """
    from sae.journal.verification import verify_journal

    if offer is not None:
        _verify_offer(offer)
        return
    with opened_runtime() as runtime:
        with (
            runtime.sessions() as session,
            Progress(
                TextColumn("verifying the journal"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} leaves"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task("verify", total=None)

            def step(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = verify_journal(
                session,
                check_objects=not skip_objects,
                progress=step,
                workers=workers,
                pinned_key=runtime.settings.journal_key_fingerprint,
            )
        checked = _witness_check(runtime)
    witnessed = checked.problems if checked is not None else []
    if checked is not None and checked.refusals:
        out.print("[yellow]witnesses refused heads (journal.witness_refused):[/yellow]")
        for said in checked.refusals:
            out.print(f"  {escape(said)}")
    if witnessed:
        out.print("[red]journal REFUTED by its witnesses:[/red]")
        for said in witnessed:
            out.print(f"  {escape(said)}")
    elif checked is not None:
        out.print("the witnesses' latest cosigned checkpoints are trees of this journal")
    for entry in report.keys:
        since = "first key" if entry.since < 0 else f"from leaf {entry.since}"
        lost = " (the previous key was LOST: this change is not vouched for by it)"
        out.print(f"key {entry.fingerprint} ({since}){lost if entry.lost else ''}")
    if report.ok and not witnessed:
        out.print(
            f"journal OK: {report.events} leaves, {report.heads_checked} signed heads, "
            f"{report.objects_checked} objects checked"
        )
        return
    if report.ok:
        raise typer.Exit(1)
    out.print(f"[red]journal INVALID: first bad leaf {report.first_bad_leaf}[/red]")
    for problem in report.problems:
        out.print(f"  leaf {problem.leaf_index}: {problem.kind}: {escape(problem.message)}")
    raise typer.Exit(1)


def _witness_check(runtime: Runtime) -> WitnessCheck | None:
    """With ``SAE_WITNESSES_FILE``: what the witnesses' records and the journaled refusals say
    about this journal (``sae.journal.witnessing.check_against_witnesses``)."""
    from sae.journal.witnessing import check_against_witnesses

    if runtime.witnesses is None:
        return None
    with runtime.sessions() as session:
        return check_against_witnesses(session, runtime.witnesses, runtime.settings.origin)


def _verify_offer(name: str) -> None:
    """``sae journal verify --offer NAME``: the journal as that offer alone holds it."""
    from sae.journal.publishing import verify_offer
    from sae.journal.service import latest_head

    with opened_runtime() as runtime, refusals(1):
        verdict = verify_offer(runtime.offer_set.get(name))
        with runtime.sessions() as session:
            head = latest_head(session)
    database_size = head.tree_size if head is not None else 0
    if not verdict.ok:
        out.print(f"[red]journal on offer {escape(name)} INVALID[/red]")
        for problem in verdict.problems:
            out.print(f"  {problem.key}: {problem.kind}: {escape(problem.message)}")
        raise typer.Exit(1)
    out.print(
        f"journal on offer {escape(name)} OK: {verdict.segments} segments, "
        f"{verdict.tree_size} leaves, root {verdict.root_hash.hex()}"
    )
    if verdict.tree_size < database_size:
        # Information, not failure: the publisher catches up at its next round.
        out.print(
            f"the database's journal is longer ({database_size} leaves sealed): "
            f"{database_size - verdict.tree_size} not yet published to this offer"
        )


@journal_app.command("rotate-key")
def rotate_key_command(
    lost: Annotated[
        bool,
        typer.Option(
            "--lost",
            help="The current key is gone: record a key change the old key cannot vouch for.",
        ),
    ] = False,
) -> None:
    """Replace the journal's signing key: journal a ``journal.key_rotated`` leaf (the new public
    key, signed by the old key unless ``--lost``), keep the old key file renamed with its
    fingerprint, and seal a head with the new key. Prints the new fingerprint on its last line.

    Run it with the service stopped (a running process finds the new key at its next seal, but
    would sign deposits' tails with the old key until then).

    Example: ``sae journal rotate-key``, ``sae journal rotate-key --lost``
    """
    from sae.journal.rotation import rotate_key

    with opened_runtime(check_keys=False) as runtime, refusals(1, with_code=True):
        rotation = rotate_key(runtime.settings, runtime.sessions, lost=lost)
    out.print(f"journal.key_rotated at leaf {rotation.leaf_index}")
    out.print(f"old key: {rotation.old_fingerprint or '(none)'}")
    if rotation.lost:
        out.print("[yellow]the old key was lost: the change is recorded as not vouched for[/]")
    if rotation.retired_file is not None:
        out.print(f"old key file kept as {escape(str(rotation.retired_file))}")
    if rotation.head is not None:
        out.print(f"head {rotation.head.tree_size} sealed with the new key")
    out.print(rotation.new_fingerprint)


@journal_app.command("seal")
def seal_command() -> None:
    """Seal (sign and time-stamp) a tree head over every committed leaf now, and publish the
    journal segments the offers of the strategy lack.

    Example: ``sae journal seal``
    """
    from sae.journal.publishing import publish_quietly
    from sae.journal.schemas import head_out
    from sae.journal.sealing import seal_now

    with opened_runtime() as runtime:
        head = seal_now(runtime.sessions, runtime.settings, wait=True)
        if head is not None:
            counts = publish_quietly(runtime.sessions, runtime.strategy_offers)
            if counts is not None and (counts.failed_offers or counts.conflicts):
                err.print(
                    "journal segments: some offers could not be written "
                    "(logged; the next round catches up)"
                )
    if head is None:
        err.print("another instance is sealing right now, or the journal is empty")
        return
    out.print_json(json.dumps(head_out(head).model_dump(mode="json")))


@journal_app.command("head")
def head_command() -> None:
    """Print the latest sealed tree head (JSON).

    Example: ``sae journal head``
    """
    from sae.journal.schemas import head_out
    from sae.journal.service import latest_head

    with opened_runtime() as runtime, runtime.sessions() as session:
        head = latest_head(session)
        doc = head_out(head).model_dump(mode="json") if head is not None else None
    if doc is None:
        err.print("no tree head yet")
        raise typer.Exit(1)
    out.print_json(json.dumps(doc))


def verify_bundle_command(
    bundle: Annotated[Path, typer.Argument(help="The proof bundle (zip).", exists=True)],
    object_file: Annotated[
        Path | None,
        typer.Option("--object", help="Your copy of the object: its SHA-512 is checked too."),
    ] = None,
    tsa_root: Annotated[
        Path | None,
        typer.Option("--tsa-root", help="PEM root you trust for the TSA (pins the anchor)."),
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option(
            "--witness",
            help="A witness's vkey you trust: it must have co-signed the head (repeatable).",
        ),
    ] = None,
) -> None:
    """Check a proof bundle offline: exit 0 valid, 1 invalid (saying which check failed).

    Needs nothing but the bundle (and, optionally, the object).

    Example: ``sae verify proof-3f2c….zip --object arrete.pdf --witness
    'archives.departement.fr/witness+1a2b3c4d+BA…'``
    """
    content = object_file.read_bytes() if object_file is not None else None
    root = tsa_root.read_bytes() if tsa_root is not None else None
    report = verify_bundle(
        bundle.read_bytes(), content=content, tsa_root_pem=root, witnesses=witness or ()
    )
    for check, message in report.passed:
        out.print(f"OK   {check}: {escape(message)}")
    if report.failure is not None:
        check, message = report.failure
        out.print(f"[red]FAIL {check}: {escape(message)}[/red]")
        raise typer.Exit(1)
    if content is None:
        out.print("(the object itself was not checked: pass --object FILE)")
    out.print("VALID")


@journal_app.command("vkey")
def vkey_command() -> None:
    """Print the archive's note verifier key (``<origin>+<key id hex>+<base64>``) on the last
    line: what a witness trusts (``sae witness trust --origin O --vkey V``) and auditors check
    checkpoint notes with. The key is created on first start.

    Example: ``sae journal vkey``
    """
    from sae.journal.notekey import load_note_key, note_key_path

    with opened_runtime() as runtime, refusals(1):
        key = load_note_key(runtime.settings)
        err.print(f"note key {escape(str(note_key_path(runtime.settings)))}, origin {key.name}")
    print(key.vkey)  # noqa: T201 (the last line, alone, for scripts)


@journal_app.command("witness")
def witness_command() -> None:
    """Ask every witness of ``SAE_WITNESSES_FILE`` now to co-sign the latest head (the server
    does it after each seal); print each witness's answer. Exit 1 if one refused.

    Example: ``sae journal witness``
    """
    from sae.journal.witnessing import WitnessClient

    with opened_runtime() as runtime, refusals(1):
        if runtime.witnesses is None:
            err.print("no SAE_WITNESSES_FILE: heads are not witnessed")
            raise typer.Exit(1)
        outcomes = WitnessClient(runtime.sessions, runtime.witnesses).round(force=True)
    for name, outcome in outcomes.items():
        out.print(f"{escape(name)}: {outcome}")
    if not outcomes:
        out.print("every witness has co-signed the latest head (or there is none)")
    if "refused" in outcomes.values():
        raise typer.Exit(1)


@journal_app.command("consistency")
def consistency_command(
    old: Annotated[Path, typer.Argument(help="The earlier checkpoint note, or a bundle.")],
    new: Annotated[Path, typer.Argument(help="The later checkpoint note, or a bundle.")],
    proof: Annotated[
        Path | None,
        typer.Option(
            "--proof",
            help="The RFC 9162 consistency proof (JSON of GET /api/v1/journal/consistency); "
            "not needed when both heads have the same size, nor when NEW is a bundle asked for "
            "with ?consistent_with= whose proof starts at OLD's size (or OLD one whose later "
            "head is NEW's).",
        ),
    ] = None,
    vkey: Annotated[
        list[str] | None,
        typer.Option(
            "--vkey",
            help="A key the notes must be signed by (the archive's vkey, a witness's); "
            "repeatable. Default: the log key a bundle's witnesses.json names.",
        ),
    ] = None,
) -> None:
    """Prove offline that the NEW checkpoint extends the OLD one (RFC 9162 consistency): same
    origin, and the proof leads from OLD's root to NEW's. Each of OLD and NEW is a checkpoint
    note (``GET /api/v1/journal/heads/{size}``'s ``note``) or a proof bundle (its
    ``checkpoint.note``). Without ``--proof``, two bundles suffice when NEW was asked for with
    ``?consistent_with=`` from a head of OLD's size: NEW's later head (``consistency.note``) is
    then checked against OLD's head with NEW's ``consistency.json`` (or when OLD carries a later
    head of NEW's size). Exit 0 when NEW extends OLD, 1 otherwise, saying why.

    Examples: ``sae journal consistency proof-a.zip proof-b.zip --proof consistency.json``;
    ``sae journal consistency proof-a.zip proof-a-latest.zip``
    """
    from sae.journal.consistency import ConsistencyRefused, check_consistency

    try:
        said = check_consistency(
            old.read_bytes(),
            new.read_bytes(),
            proof.read_bytes() if proof is not None else None,
            vkeys=vkey or (),
        )
    except (OSError, ConsistencyRefused) as exc:
        out.print(f"[red]NOT CONSISTENT: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    for line in said:
        out.print(f"OK   {escape(line)}")
    out.print("CONSISTENT")
