"""``sae user …`` and ``sae token …`` against a real installation (SQLite and PostgreSQL)."""

from __future__ import annotations

import stat

import pytest
from typer.testing import CliRunner

from sae.cli import app
from tests.conftest import Api

PASSWORD = "cheval-agrafe-pile-42"


@pytest.fixture
def runner(api: Api, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    return CliRunner()


def test_user_add_list_password_disable(api: Api, runner: CliRunner) -> None:
    added = runner.invoke(
        app,
        [
            "user",
            "add",
            "JDupont",
            "--role",
            "archivist",
            "--name",
            "Jean Dupont",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["user", "list"])
    assert listed.exit_code == 0, listed.output
    assert "jdupont" in listed.stdout
    assert "Jean Dupont" in listed.stdout
    with api.runtime.sessions() as session:
        from sae.auth.accounts import verify_password

        assert verify_password(session, "jdupont", PASSWORD).role == "archivist"
    new = "un-autre-mot-de-passe"
    changed = runner.invoke(
        app, ["user", "password", "jdupont", "--password-stdin"], input=new + "\n"
    )
    assert changed.exit_code == 0, changed.output
    with api.runtime.sessions() as session:
        assert verify_password(session, "jdupont", new).login == "jdupont"
    disabled = runner.invoke(app, ["user", "disable", "jdupont"])
    assert disabled.exit_code == 0, disabled.output
    assert "disabled" in runner.invoke(app, ["user", "list"]).stdout
    short = runner.invoke(app, ["user", "password", "jdupont", "--password-stdin"], input="court\n")
    assert short.exit_code == 1
    missing = runner.invoke(app, ["user", "disable", "personne"])
    assert missing.exit_code == 1


def test_token_create_list_revoke(api: Api, runner: CliRunner) -> None:
    assert (
        runner.invoke(
            app,
            ["user", "add", "ged", "--role", "depositor", "--producer", "URBANISME", "--service"],
        ).exit_code
        == 0
    )
    made = runner.invoke(
        app, ["token", "create", "--user", "ged", "--expires", "90d", "--label", "GED"]
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("sae_")
    me = api.client.get("/api/v1/auth/me", headers=api.auth(secret)).json()
    assert me["producers"] == ["URBANISME"]
    listed = runner.invoke(app, ["token", "list", "--user", "ged"])
    assert listed.exit_code == 0, listed.output
    assert "GED" in listed.stdout
    assert secret not in listed.stdout
    token_id = me["token_id"]
    revoked = runner.invoke(app, ["token", "revoke", token_id])
    assert revoked.exit_code == 0, revoked.output
    assert api.client.get("/api/v1/auth/me", headers=api.auth(secret)).status_code == 401
    # The older form still makes a token with a service account of its own.
    legacy = runner.invoke(app, ["token", "create", "--role", "reader", "--label", "lecture"])
    assert legacy.exit_code == 0, legacy.output
    assert (
        api.client.get(
            "/api/v1/auth/me", headers=api.auth(legacy.stdout.strip().splitlines()[-1])
        ).json()["role"]
        == "reader"
    )
    both = runner.invoke(app, ["token", "create", "--user", "ged", "--role", "reader"])
    assert both.exit_code == 2
    bad = runner.invoke(app, ["token", "create", "--user", "ged", "--expires", "demain"])
    assert bad.exit_code == 2


def test_reset_admin_revokes_the_first_start_tokens_and_writes_a_new_one(
    api: Api, runner: CliRunner
) -> None:
    old = api.admin
    path = api.settings.data_dir / "admin.token"
    path.unlink()  # lost
    reset = runner.invoke(app, ["token", "reset-admin"])
    assert reset.exit_code == 0, reset.output
    assert "1 token(s) of the account admin revoked" in reset.output
    new = path.read_text().strip()
    assert new != old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert api.client.get("/api/v1/auth/me", headers=api.auth(old)).status_code == 401
    me = api.client.get("/api/v1/auth/me", headers=api.auth(new)).json()
    assert (me["role"], me["user"]["login"]) == ("admin", "admin")
