"""``sae journal verify`` and ``sae verify BUNDLE.zip`` as an operator and an auditor run them."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

from sae.journal.bundle import read_zip, write_zip
from sae.journal.checkpoint import SigningKey
from sae.journal.cli import journal_app, verify_bundle_command
from sae.journal.tsa import BuiltinTSA
from tests.conftest import Api
from tests.journal.helpers import CONTENT, make_bundle
from tests.sipfactory import build_zip, simple_sip

cli = typer.Typer()
cli.add_typer(journal_app, name="journal")
cli.command("verify")(verify_bundle_command)
runner = CliRunner()


@pytest.fixture
def env(api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    return api


def test_journal_verify_ok_then_names_the_tampered_leaf(env: Api) -> None:
    for n in range(2):
        assert env.deposit(build_zip(simple_sip(f"MSG-CLI-{n}"))).status_code == 201
    sealed = runner.invoke(cli, ["journal", "seal"])
    assert sealed.exit_code == 0, sealed.output
    assert '"tree_size"' in sealed.output
    ok = runner.invoke(cli, ["journal", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "journal OK" in ok.output
    head = runner.invoke(cli, ["journal", "head"])
    assert head.exit_code == 0

    with env.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE events SET actor = 'mallory' WHERE leaf_index = 3"))
    bad = runner.invoke(cli, ["journal", "verify"])
    assert bad.exit_code == 1
    assert "first bad leaf 3" in bad.output


def test_verify_bundle_command(builtin_tsa: BuiltinTSA, tmp_path: Path) -> None:
    bundle = make_bundle(builtin_tsa, SigningKey.generate())
    path = tmp_path / "proof.zip"
    path.write_bytes(bundle)
    obj = tmp_path / "object.pdf"
    obj.write_bytes(CONTENT)
    good = runner.invoke(cli, ["verify", str(path), "--object", str(obj)])
    assert good.exit_code == 0, good.output
    assert "VALID" in good.output
    files = read_zip(bundle)
    files["tree-head.json"] = files["tree-head.json"].replace(b'"tree_size":37', b'"tree_size":38')
    path.write_bytes(write_zip(files))
    bad = runner.invoke(cli, ["verify", str(path)])
    assert bad.exit_code == 1
    assert "FAIL merkle" in bad.output
    obj.write_bytes(CONTENT + b"!")
    path.write_bytes(bundle)
    wrong = runner.invoke(cli, ["verify", str(path), "--object", str(obj)])
    assert wrong.exit_code == 1
    assert "FAIL object" in wrong.output


def test_verify_prints_fingerprints_and_messages_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rich's emoji codes once turned a fingerprint's ``:CD:`` into a CD emoji; markup ate [x]."""
    from sae.journal import cli as journal_cli
    from sae.journal.bundle import BundleReport

    fingerprint = "A4:CD:7F:cd:01"
    report = BundleReport(
        passed=[("timestamp", f"TSA root SHA-256 fingerprint {fingerprint}")],
        failure=("object", "copy [bold]differs[/bold] from A4:CD:7F"),
    )
    monkeypatch.setattr(journal_cli, "verify_bundle", lambda *_a, **_k: report)
    path = tmp_path / "proof.zip"
    path.write_bytes(b"not read")
    result = runner.invoke(cli, ["verify", str(path)])
    assert result.exit_code == 1
    assert f"fingerprint {fingerprint}" in result.output
    assert "copy [bold]differs[/bold] from A4:CD:7F" in result.output
