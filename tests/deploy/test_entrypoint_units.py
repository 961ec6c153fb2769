"""deploy/entrypoint.sh's commands, `sae worker`, the systemd units and the proxy examples.

The entry point's arithmetic (one server process per core, one on SQLite) is checked with
``SAE_BIN=echo``, which prints the command it would run; ``test_entrypoint.py`` runs it for real.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.s3_users import REPO

DEPLOY = REPO / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
PG = "postgresql+psycopg://sae:x@db/sae"


def _entry(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env={"PATH": os.environ["PATH"], "SAE_BIN": "echo", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _nproc() -> int:
    return int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)


def test_serve_runs_one_process_per_core_on_a_shared_database() -> None:
    served = _entry("serve", SAE_DATABASE_URL=PG)
    assert served.stdout.split() == [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--workers",
        str(min(_nproc(), 32)),
    ]
    # Empty, as compose passes an unset SAE_WORKERS: the same default.
    assert _entry("serve", SAE_DATABASE_URL=PG, SAE_WORKERS="").stdout == served.stdout
    chosen = _entry("serve", SAE_DATABASE_URL=PG, SAE_WORKERS="3", SAE_HOST="127.0.0.1")
    assert chosen.stdout.split()[1:] == ["--host", "127.0.0.1", "--port", "8000", "--workers", "3"]


def test_serve_runs_one_process_on_sqlite() -> None:
    for env in ({}, {"SAE_DATABASE_URL": "sqlite:////var/lib/sae/sae.db"}):
        assert _entry("serve", **env).stdout.split()[-2:] == ["--workers", "1"]


def test_migrate_worker_and_other_commands() -> None:
    assert _entry("migrate").stdout.split() == ["migrate", "upgrade"]
    assert _entry("worker").stdout.split() == ["worker"]
    assert _entry("sae", "token", "create", "--role", "auditor").stdout.split() == [
        "token",
        "create",
        "--role",
        "auditor",
    ]
    assert _entry().stdout.split()[0] == "serve"  # the image's CMD
    unknown = _entry("bogus")
    assert unknown.returncode == 64
    assert "usage:" in unknown.stderr


def test_sae_worker_runs_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAE_")}
    env.update(SAE_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "sae", "worker"], env=env, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 120
            while "SAE worker running" not in log.read_text():
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0, log.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
    said = log.read_text()
    assert "SAE worker running — offers: local" in said
    assert said.rstrip().endswith("SAE worker stopped")
    # Its first start is a start like any other: the admin token, the journal's keys.
    assert (tmp_path / "data" / "admin.token").is_file()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_units_are_valid() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["sae-migrate.service", "sae-worker.service", "sae.service"]
    checked = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The entry point is installed by the administrator, not on this machine.
    complaints = [
        line
        for line in (checked.stdout + checked.stderr).splitlines()
        if line and "sae-entrypoint is not executable" not in line
    ]
    assert complaints == []
    for unit in units:
        text = unit.read_text()
        assert "User=sae" in text
        assert "EnvironmentFile=/etc/sae/sae.env" in text
        command = unit.name.removeprefix("sae-").removesuffix(".service")
        expected = {"sae": "serve"}.get(command, command)
        assert f"ExecStart=/usr/local/bin/sae-entrypoint {expected}\n" in text
        if expected != "migrate":
            assert "Requires=sae-migrate.service" in text
    env_file = (DEPLOY / "systemd" / "sae.env.example").read_text()
    assert "SAE_AUTO_MIGRATE=0" in env_file


@pytest.mark.parametrize("name", ["Caddyfile", "nginx.conf"])
def test_proxy_examples_set_what_sae_needs(name: str) -> None:
    text = (DEPLOY / name).read_text()
    assert "127.0.0.1:8000" in text
    assert "Strict-Transport-Security" in text
    assert "X-Request-Id" in text
    if name == "nginx.conf":
        for directive in (
            r"client_max_body_size 20g;",
            r"proxy_request_buffering off;",
            r"proxy_buffering off;",
            r"proxy_read_timeout 1h;",
            r"proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;",
            r"proxy_set_header X-Forwarded-Proto \$scheme;",
            r"return 301 https://",
        ):
            assert re.search(directive, text), directive
    else:
        for directive in (r"max_size 20GB", r"request_buffers 0", r"read_timeout 1h"):
            assert re.search(directive, text), directive
