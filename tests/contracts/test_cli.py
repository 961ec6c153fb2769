"""``sae contract`` and ``sae profile`` from the shell: the same domain functions as the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae.cli import app
from tests.conftest import Api
from tests.contracts.helpers import TEST_PROFILE
from tests.sipfactory import RuleSpec, build_zip, simple_sip


def test_contract_and_profile_commands(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    runner = CliRunner()
    rng = tmp_path / "profil de test.rng"
    rng.write_bytes(TEST_PROFILE)
    result = runner.invoke(app, ["profile", "add", str(rng), "--id", "PROFIL-TEST"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["profile", "add", str(rng), "--id", "PROFIL-TEST"])
    assert result.exit_code == 1
    assert "profiles.exists" in result.output
    bad = tmp_path / "bad.rng"
    bad.write_bytes(b"<pas-relaxng/>")
    result = runner.invoke(app, ["profile", "add", str(bad), "--id", "PROFIL-BAD"])
    assert result.exit_code == 1
    assert "profiles.invalid" in result.output
    result = runner.invoke(app, ["profile", "list"])
    assert result.exit_code == 0, result.output
    assert "PROFIL-TEST" in result.output
    assert "PROFIL-BAD" not in result.output

    result = runner.invoke(
        app,
        ["contract", "add", "CONV-CLI", "--name", "Urbanisme", "--producer", "URBANISME",
         "--record-type", "APP-5Y", "--format", "application/pdf", "--profile", "PROFIL-TEST",
         "--max-object-bytes", "1000000", "--valid-from", "2026-01-01"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["contract", "add", "CONV-X", "--name", "X", "--producer", "P", "--format", "pdf"]
    )
    assert result.exit_code == 1
    assert "contracts.invalid" in result.output
    result = runner.invoke(app, ["contract", "show", "CONV-CLI"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["record_types"] == ["APP-5Y"]
    assert shown["valid_from"] == "2026-01-01"
    # The API sees what the shell made, and the ingest applies it.
    assert api.client.get("/api/v1/contracts/CONV-CLI", headers=api.auth()).json()["id"] == (
        "CONV-CLI"
    )
    spec = simple_sip("MSG-CLI-C", rules=[RuleSpec("AppraisalRule", "APP-5Y", final_action="Keep")])
    spec.agreement = "CONV-CLI"
    spec.profile = "PROFIL-TEST"
    assert api.deposit(build_zip(spec)).status_code == 201

    result = runner.invoke(app, ["contract", "disable", "CONV-CLI"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["contract", "list"])
    assert result.exit_code == 0, result.output
    assert "désactivé" in result.output
    spec.message_id = "MSG-CLI-C2"
    refused = api.deposit(build_zip(spec))
    assert [e["code"] for e in refused.json()["errors"]] == ["contract.inactive"]
    result = runner.invoke(app, ["contract", "disable", "ABSENT"])
    assert result.exit_code == 1
    assert "contracts.not_found" in result.output
