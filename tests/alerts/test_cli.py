"""``sae alerts test`` and ``sae alerts list``: what an IT team runs to check its settings."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from typer.testing import CliRunner

from sae.cli import app
from tests.alerts.test_alerts import SmtpServer, Webhook, _free_port, _Outage, _round
from tests.conftest import Api


def _env(api: Api, **extra: str) -> dict[str, str]:
    settings = api.settings
    assert settings.offers_file is not None
    return {
        "SAE_DATA_DIR": str(settings.data_dir),
        "SAE_DATABASE_URL": settings.db_url,
        "SAE_OFFERS_FILE": str(settings.offers_file),
        **extra,
    }


def test_alerts_test_sends_on_every_channel_and_says_which_failed(
    two_sites: Api, tmp_path: Path
) -> None:
    server = SmtpServer(tmp_path / "maildir", _free_port())
    server.start()
    hook = Webhook()
    try:
        mail = {
            "SAE_ALERT_SMTP_HOST": "127.0.0.1",
            "SAE_ALERT_SMTP_PORT": str(server.port),
            "SAE_ALERT_SMTP_SECURITY": "none",
            "SAE_ALERT_FROM": "sae@mairie.example",
            "SAE_ALERT_TO": "dsi@mairie.example",
        }
        webhook = {
            "SAE_ALERT_WEBHOOK_URL": hook.url,
            "SAE_ALERT_WEBHOOK_SECRET": "cli-test-secret-0123",
        }
        result = CliRunner().invoke(app, ["alerts", "test"], env=_env(two_sites, **mail, **webhook))
        assert result.exit_code == 0, result.output
        assert "mail: sent" in result.output
        assert "webhook: sent" in result.output
        [message] = server.wait_for(1)
        assert "Message d'essai" in message.as_string() or "essai" in str(message["Subject"])
        headers, body = hook.received[-1]
        expected = hmac.new(b"cli-test-secret-0123", body, hashlib.sha256).hexdigest()
        assert headers["X-SAE-Signature"] == f"sha256={expected}"
        assert json.loads(body)["condition"] == "test"

        hook.status = 500
        failed = CliRunner().invoke(app, ["alerts", "test"], env=_env(two_sites, **webhook))
        assert failed.exit_code == 1
        assert "webhook: failed" in failed.output
        assert "HTTP 500" in failed.output
    finally:
        hook.close()
        server.stop()
    none = CliRunner().invoke(app, ["alerts", "test"], env=_env(two_sites))
    assert none.exit_code == 1
    assert "no alert channel configured" in none.output


def test_alerts_list_shows_what_stands(two_sites: Api) -> None:
    quiet = CliRunner().invoke(app, ["alerts", "list"], env=_env(two_sites))
    assert quiet.exit_code == 0, quiet.output
    assert "no alert standing" in quiet.output
    with _Outage(two_sites, "site-b"):
        _round(two_sites)
        listed = CliRunner().invoke(app, ["alerts", "list"], env=_env(two_sites, COLUMNS="200"))
    assert listed.exit_code == 0, listed.output
    assert "offer_down" in listed.output
    assert "site-b" in listed.output
    _round(two_sites)
    every = ["alerts", "list", "--all"]
    cleared = CliRunner().invoke(app, every, env=_env(two_sites, COLUMNS="200"))
    assert "cleared" in cleared.output
