"""What every ``sae`` command does the same way: its consoles.

The command modules (``sae.cli``, ``sae.<domain>.cli``) import from here, never from each other,
so that wiring a sub-command into ``sae.cli`` creates no import cycle.
"""

from __future__ import annotations

from rich.console import Console


def make_console(*, stderr: bool = False) -> Console:
    """A console for a command's output: Rich markup for colours, no emoji codes.

    Rich replaces ``:name:`` by an emoji by default, which mangles what the archivist must
    compare character by character: a SHA-256 fingerprint ``A4:CD:7F`` printed as ``A4💿7F``.
    Values that may hold ``[`` (messages, keys, details) are escaped or passed as ``Text`` by
    the caller, so that markup never eats them either.
    """
    return Console(stderr=stderr, emoji=False)
