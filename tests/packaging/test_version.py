"""One version number (sae.__version__, which the package metadata reads) reported everywhere."""

from __future__ import annotations

import re

from typer.testing import CliRunner

import sae
from sae.cli import app as cli
from tests.conftest import Api


def test_the_api_and_the_cli_report_the_version(api: Api) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", sae.__version__)
    assert api.client.get("/health").json()["version"] == sae.__version__
    assert api.client.get("/openapi.json").json()["info"]["version"] == sae.__version__
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"sae {sae.__version__}\n"
