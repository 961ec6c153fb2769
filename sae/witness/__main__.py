"""``python -m sae.witness`` is ``sae witness``, without loading the rest of SAE."""

from sae.witness.cli import witness_app

witness_app(prog_name="sae witness")
