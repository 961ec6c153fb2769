"""What every ``sae`` command does the same way, written once.

A command reads its settings from the ``SAE_*`` environment (the same variables drive the server
and the tools), opens the runtime for its work and closes it when done (:func:`opened_runtime`),
turns a refusal of SAE into a red message and an exit status (:func:`refusals`), and acts as
the archivist at the keyboard when the journal must name someone (:func:`archivist_at_keyboard`).

The command modules (``sae.cli``, ``sae.<domain>.cli``) import from here, never from each other,
so that wiring a sub-command into ``sae.cli`` creates no import cycle.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sae.auth.service import Principal
from sae.config import ConfigurationError, Settings, load_settings
from sae.errors import SAEError
from sae.migrate import SchemaError
from sae.runtime import Runtime


def make_console(*, stderr: bool = False) -> Console:
    """A console for a command's output: Rich markup for colours, no emoji codes.

    Rich replaces ``:name:`` by an emoji by default, which mangles what the archivist must
    compare character by character: a SHA-256 fingerprint ``A4:CD:7F`` printed as ``A4💿7F``.
    Values that may hold ``[`` (messages, keys, details) are escaped or passed as ``Text`` by
    the caller, so that markup never eats them either.
    """
    return Console(stderr=stderr, emoji=False)


def print_rows(out: Console, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A list as a table on a terminal; as tab-separated lines (headers first) otherwise.

    Piped or redirected, Rich would lay the table out in 80 columns and cut every long value
    with an ellipsis: an identifier or a reference copied from ``sae … list > file`` must be
    whole, and a script reads tab-separated lines.
    """
    if out.is_terminal:
        table = Table(*headers)
        for column in table.columns:
            column.overflow = "fold"
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))  # values, never Rich markup
        out.print(table)
        return
    for row in (headers, *rows):
        out.file.write("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row) + "\n")


#: Where refusals go (standard error: standard output keeps the results, e.g. a token).
err = make_console(stderr=True)


def settings_or_exit(**overrides: Any) -> Settings:
    """The settings (``overrides`` win over the environment), or a readable refusal naming the
    variable (exit 2)."""
    try:
        return load_settings(**overrides)
    except ConfigurationError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


@contextmanager
def opened_runtime(
    *, check_keys: bool = True, migrate: bool | None = None, **overrides: Any
) -> Iterator[Runtime]:
    """The runtime (current schema, checked offers) for the block, closed when it ends.

    A configuration SAE refuses (bad variable, offer outside France…) exits 2 with a readable
    message before the block runs, as does a schema that is not the code's with
    ``SAE_AUTO_MIGRATE`` off (its code, and the command to run). A schema upgrade the start
    ran is said. ``overrides`` win over the environment (``sae restore`` names the offers file
    it has just put back); ``migrate`` overrides ``SAE_AUTO_MIGRATE`` (``sae init``).
    """
    settings = settings_or_exit(**overrides)
    try:
        runtime = Runtime.open(settings, check_keys=check_keys, migrate=migrate)
    except SchemaError as exc:
        err.print(f"[red]{exc.code}: {escape(exc.detail)}[/red]")
        raise typer.Exit(2) from None
    except SAEError as exc:
        err.print(f"[red]configuration refused: {escape(exc.detail)}[/red]")
        raise typer.Exit(2) from None
    if runtime.schema_change is not None:
        err.print(f"database.migrated: {escape(runtime.schema_change.describe())}")
    try:
        yield runtime
    finally:
        runtime.close()


@contextmanager
def refusals(exit_code: int = 1, *, with_code: bool = False) -> Iterator[None]:
    """An :class:`SAEError` raised in the block becomes a red message and ``exit_code``.

    The message is the error's detail (prefixed with its stable ``code`` when ``with_code``),
    followed by the first 50 of the problems it carries (a refused referential, a list that
    cannot be executed).
    """
    try:
        yield
    except SAEError as exc:
        said = f"{exc.code}: {exc.detail}" if with_code else exc.detail
        # Never folded by Rich: a path or a key in the message stays whole, to be copied.
        err.print(f"[red]{escape(said)}[/red]", soft_wrap=True)
        for problem in exc.extra.get("problems", [])[:50]:
            err.print(f"  - {escape(str(problem))}", soft_wrap=True)
        raise typer.Exit(exit_code) from None


def archivist_at_keyboard(command: str) -> Principal:
    """The archivist running ``command`` from a shell: the journal names the local user."""
    user = getpass.getuser()
    return Principal(token_id=f"cli-{user}", role="archivist", label=f"{command} ({user})")


def iso_date(value: str | None) -> date | None:
    """An option's ISO date (``YYYY-MM-DD``), or a readable refusal (exit 2)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]{escape(repr(value))} is not an ISO date (YYYY-MM-DD)[/red]")
        raise typer.Exit(2) from None
