"""Logging: a request id on every line and in the answer; no token or secret in any line.

The secret test runs a real `sae serve` (SAE_LOG_LEVEL=DEBUG, SAE_LOG_FORMAT=json, its output
in a file) and the CLI beside it, through a representative workload — tokens created,
authenticated requests, a deposit, refusals, a console sign-in, a scrape, a failing alert
channel with credentials — then greps the whole log for every secret it made.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
from pydantic import SecretStr

from sae.config import load_settings
from sae.logs import REDACTED, configure_logging, request_id
from tests.conftest import TEST_RULES_CSV, Api
from tests.sipfactory import build_zip, simple_sip
from tests.test_app import _free_port, _healthy


def test_a_request_id_is_made_or_kept_and_echoed(api: Api) -> None:
    made = api.client.get("/health").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert api.client.get("/health").headers["X-Request-ID"] != made
    kept = api.client.get("/health", headers={"X-Request-ID": "proxy-7f3a.42"})
    assert kept.headers["X-Request-ID"] == "proxy-7f3a.42"
    for insane in ("two words", "x" * 300, 'a"b', "<script>"):
        answer = api.client.get("/health", headers={"X-Request-ID": insane})
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])
    # Errors carry it too (the problem documents of the error handlers).
    missing = api.client.get("/api/v1/nothing", headers={"X-Request-ID": "err-1"})
    assert missing.status_code == 404
    assert missing.headers["X-Request-ID"] == "err-1"


def test_the_formatter_scrubs_what_looks_like_a_secret(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        log_format="text",
        log_level="DEBUG",
        metrics_token=SecretStr("metrics-token-0123456789"),
    )
    stream = io.StringIO()
    handler = configure_logging(settings, stream=stream)
    try:
        log = logging.getLogger("tests.logs")
        token = "sae_" + secrets.token_urlsafe(32)
        log.info("header Authorization: Bearer %s", token)
        log.info("basic Basic dXNlcjpwYXNzd29yZA== and the metrics one metrics-token-0123456789")
        log.info("POST https://sae:hunter2-long@tsa.example/tsr answered 500")
        try:
            raise ValueError(f"bad token {token}")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert token not in text
    assert "dXNlcjpwYXNzd29yZA==" not in text
    assert "metrics-token-0123456789" not in text
    assert "hunter2-long" not in text
    assert "https://[redacted]@tsa.example/tsr" in text
    assert text.count(REDACTED) >= 5
    assert request_id() is None


def _cli(env: dict[str, str], log: Path, *args: str) -> str:
    """A `sae` command with the server's environment; its log lines go to the same file."""
    with log.open("ab") as sink:
        done = subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "sae", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=sink,
            check=True,
            timeout=120,
        )
    return done.stdout.decode().strip().splitlines()[-1]


def test_no_token_or_secret_in_any_log_line(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "sae.log"
    metrics_token = "metrics-" + secrets.token_urlsafe(24)
    smtp_password = "smtp-" + secrets.token_urlsafe(24)
    webhook_secret = "hook-" + secrets.token_urlsafe(24)
    dead = _free_port()  # the alert channels fail: their errors are logged
    env = {
        **os.environ,
        "SAE_DATA_DIR": str(tmp_path / "sae-data"),
        "SAE_PORT": str(port),
        "SAE_LOG_LEVEL": "DEBUG",
        "SAE_LOG_FORMAT": "json",
        "SAE_METRICS_TOKEN": metrics_token,
        "SAE_ALERT_SMTP_HOST": "127.0.0.1",
        "SAE_ALERT_SMTP_PORT": str(dead),
        "SAE_ALERT_SMTP_SECURITY": "none",
        "SAE_ALERT_SMTP_USER": "sae",
        "SAE_ALERT_SMTP_PASSWORD": smtp_password,
        "SAE_ALERT_FROM": "sae@mairie.example",
        "SAE_ALERT_TO": "dsi@mairie.example",
        "SAE_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{dead}/hook",
        "SAE_ALERT_WEBHOOK_SECRET": webhook_secret,
        "SAE_ALERT_CHECK_SECONDS": "1",
    }
    for name in ("SAE_OFFERS_FILE", "SAE_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "sae", "serve"], cwd=tmp_path, env=env, stdout=sink, stderr=sink
        )
    made: list[str] = [metrics_token, smtp_password, webhook_secret]
    echoed: list[str] = []
    try:
        _healthy(proc, port, 60)
        admin = (tmp_path / "sae-data" / "admin.token").read_text().strip()
        depositor = _cli(
            env, log, "token", "create", "--role", "depositor", "--producer", "URBANISME"
        )
        reader = _cli(env, log, "token", "create", "--role", "reader")
        made += [admin, depositor, reader]
        assert all(t.startswith("sae_") for t in (admin, depositor, reader))
        unknown = "sae_" + secrets.token_urlsafe(32)
        made.append(unknown)

        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        with httpx.Client(base_url=base, timeout=60) as client:
            ok = client.put(
                "/api/v1/rules",
                content=TEST_RULES_CSV.encode(),
                headers={**bearer(admin), "Content-Type": "text/csv"},
            )
            assert ok.status_code == 200, ok.text
            echoed.append(ok.headers["X-Request-ID"])
            sip = build_zip(simple_sip("MSG-LOGS-1"))
            deposited = client.post(
                "/api/v1/transfers",
                content=sip,
                headers={**bearer(depositor), "Content-Type": "application/zip"},
            )
            assert deposited.status_code == 201, deposited.text
            echoed.append(deposited.headers["X-Request-ID"])
            refused = client.post(
                "/api/v1/transfers",
                content=b"not a zip",
                headers={**bearer(depositor), "Content-Type": "application/zip"},
            )
            assert refused.status_code in (400, 422)
            assert client.get("/api/v1/units", headers=bearer(reader)).status_code == 200
            assert client.get("/api/v1/units", headers=bearer(unknown)).status_code == 401
            assert (
                client.get("/api/v1/units", headers={"Authorization": unknown}).status_code == 401
            )
            # A client that puts its token in the URL: the access log must not keep it.
            assert client.get(f"/api/v1/units?token={reader}").status_code == 401
            forbidden = client.post("/api/v1/audits", json={}, headers=bearer(reader))
            assert forbidden.status_code == 403
            assert client.get("/metrics", headers=bearer(metrics_token)).status_code == 200
            assert client.get("/metrics", headers=bearer(reader)).status_code == 403
            # The console: a wrong token, then the right one (kept in a cookie).
            form = client.get("/console/connexion")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            wrong = client.post(
                "/console/connexion", data={"token": unknown, "csrf": csrf.group(1)}
            )
            assert wrong.status_code == 401
            csrf = re.search(r'name="csrf" value="([^"]+)"', wrong.text)
            assert csrf is not None
            signed_in = client.post(
                "/console/connexion", data={"token": admin, "csrf": csrf.group(1)}
            )
            assert signed_in.status_code == 303, signed_in.text
            home = client.get("/console/")
            assert home.status_code == 200
        # An offer goes down: alerts are raised and their channels (with credentials) fail.
        offer = tmp_path / "sae-data" / "offers" / "local"
        offer.rename(offer.with_name("local-away"))
        offer.write_text("gone")
        deadline_ok = _wait_for_line(log, "alert.send_failed", 30)
        assert deadline_ok, "the alert worker did not try its channels"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text(encoding="utf-8", errors="replace")
    for secret in made:
        assert secret not in text, "a secret was logged"
    lines = [line for line in text.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(r["level"] == "DEBUG" for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert access, "uvicorn's access log goes through SAE's configuration"
    assert all("request_id" in r for r in access)
    ids = {r.get("request_id") for r in records}
    assert set(echoed) <= ids
    deposit_lines = [r for r in records if r.get("request_id") == echoed[1]]
    assert {r["logger"] for r in deposit_lines} >= {"uvicorn.access", "sae.auth"}


def _wait_for_line(log: Path, needle: str, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if needle in log.read_text(encoding="utf-8", errors="replace"):
            return True
        time.sleep(0.3)
    return False
