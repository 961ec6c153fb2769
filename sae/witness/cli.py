"""``sae witness init|trust|serve`` — the stand-alone C2SP witness (wired into ``sae.cli``).

It reads no ``SAE_*`` setting and opens no database: its only state is ``--data DIR``. The
witness's modules are imported inside the commands so that the rest of ``sae`` does not pay
for them, and this module imports nothing of the archive's runtime — not even
``sae.cli_support``, whose helpers open the runtime: ``python -m sae.witness`` starts in a
fraction of the time ``sae`` takes, on a machine that has nothing else of SAE configured. Its
refusals are printed as :func:`sae.cli_support.refusals` prints them.

Exit status: 0 done; 1 refused (a key already there, no key, a key file readable by others, a
malformed vkey, a corrupt state file, the port taken); 2 usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sae.errors import SAEError

witness_app = typer.Typer(
    help="The stand-alone C2SP witness the departmental archives run (tlog-witness).",
    no_args_is_help=True,
)
# No emoji codes: a vkey is compared character by character (see sae.cli_support).
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)


@contextmanager
def refusals(exit_code: int = 1) -> Iterator[None]:
    """An :class:`SAEError` raised in the block becomes a red message and ``exit_code``."""
    try:
        yield
    except SAEError as exc:
        err.print(f"[red]{escape(exc.detail)}[/red]")
        raise typer.Exit(exit_code) from None


DataOption = Annotated[
    Path,
    typer.Option("--data", help="The witness's own directory (key, trusted logs, state)."),
]


@witness_app.command("init")
def init_command(
    data: DataOption,
    name: Annotated[
        str,
        typer.Option(
            "--name", help="The witness's key name, a schema-less URL (e.g. archives.example/w1)."
        ),
    ],
) -> None:
    """Create the witness's Ed25519 key (mode 0600; never overwrites one) and print its verifier
    key (vkey) on the last line: give it to the archives whose logs this witness watches.

    Example: ``sae witness init --data /var/lib/sae-witness --name archives.example.fr/w1``
    """
    from sae.journal.note import NoteError
    from sae.witness.store import WitnessStore

    with refusals(1):
        try:
            key = WitnessStore(data).create_key(name)
        except NoteError as exc:
            raise typer.BadParameter(exc.detail, param_hint="--name") from None
    out.print(f"witness key created in {escape(str(data))} (witness.key, mode 0600); its vkey:")
    out.print(key.vkey, markup=False, highlight=False, soft_wrap=True)


@witness_app.command("trust")
def trust_command(
    data: DataOption,
    origin: Annotated[str, typer.Option("--origin", help="The log's origin (checkpoint line 1).")],
    vkey: Annotated[str, typer.Option("--vkey", help="The log's note verifier key.")],
) -> None:
    """Accept checkpoints of the log ``ORIGIN`` signed by ``VKEY`` (run it again with the log's
    next key when it rotates; a running witness sees the change at its next request).

    Example: ``sae witness trust --data /var/lib/sae-witness --origin sae.mairie.example.fr/journal
    --vkey 'sae.mairie.example.fr/journal+1a2b3c4d+AX…'``
    """
    from sae.journal.note import Verifier, checkpoint_text
    from sae.witness.store import WitnessStore

    with refusals(1):
        checkpoint_text(origin, 0, bytes(32))  # the origin must be one checkpoint line
        verifier = Verifier.parse(vkey)
        if verifier.key_type != 0x01:
            raise typer.BadParameter(
                "a log signs its checkpoints with an Ed25519 note key (type 0x01)",
                param_hint="--vkey",
            )
        added = WitnessStore(data).trust(origin, verifier)
    said = "now trusted" if added else "already trusted"
    out.print(f"log {escape(origin)} {said} with key {escape(verifier.vkey)}")


@witness_app.command("serve")
def serve_command(
    data: DataOption,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = 7380,
) -> None:
    """Serve tlog-witness: ``POST /add-checkpoint`` and ``GET /<origin hash>/checkpoint``.
    Stops on SIGTERM or Ctrl-C (exit 0).

    Example: ``sae witness serve --data /var/lib/sae-witness --host 0.0.0.0 --port 7380``
    """
    from sae.config import ConfigurationError, load_settings
    from sae.logs import configure_logging
    from sae.witness.server import serve
    from sae.witness.service import Witness

    # A server: INFO unless SAE_LOG_LEVEL says otherwise (SAE_LOG_FORMAT as for sae serve).
    try:
        configure_logging(load_settings())
    except ConfigurationError:
        pass  # the witness shares nothing with the archive's settings: keep the default
    with refusals(1):
        witness = Witness(data)

    def listening(bound_host: str, bound_port: int) -> None:
        out.print(
            f"witness {escape(witness.key.name)} listening on http://{bound_host}:{bound_port} "
            f"— vkey {escape(witness.key.vkey)}",
            soft_wrap=True,
        )

    try:
        serve(witness, host, port, listening)
    except OSError as exc:
        err.print(f"[red]cannot listen on {escape(host)}:{port}: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
