"""``python -m sae`` is the ``sae`` command."""

from sae.cli import app

app(prog_name="sae")
