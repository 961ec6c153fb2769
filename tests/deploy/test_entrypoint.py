"""The containers' entry sequence, run for real from the built wheel (docker-compose.yml's
``migrate``, ``sae`` and ``worker`` services, without Docker).

The wheel is built from the repository's tracked files and installed in a fresh virtual
environment, outside any checkout; then ``deploy/entrypoint.sh migrate``, ``serve`` and
``worker`` run in an empty directory against a new PostgreSQL schema and two S3 sites on the
test suite's Ceph RGW, each with a user holding only ``deploy/s3-policy.json`` (what
``minio-init`` makes on MinIO), with ``SAE_AUTO_MIGRATE=0`` as in the compose file. A SIP
deposited over HTTP is then found on both sites.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.conftest import TEST_RULES_CSV, postgres_schema, require
from tests.deploy.s3_users import (
    REPO,
    SaeBucket,
    least_privilege_bucket,
    offers_yaml,
    versions,
)
from tests.s3_server import S3Server
from tests.sipfactory import build_zip, simple_sip

pytestmark = [pytest.mark.s3, pytest.mark.slow]

ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the tracked sources, installed with its dependencies in a fresh venv."""
    from typer.main import get_command

    from sae.cli import app

    # Asked of the sources the wheel is built from, before spending a minute on building it.
    require(
        "migrate" in getattr(get_command(app), "commands", {}),
        "SAE has no `sae migrate` yet (issue #21 item 2), which the migrate step runs",
    )
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    tracked = _run(["git", "ls-files", "-z"], cwd=REPO).stdout.split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():  # a file deleted but not yet committed is not built
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    # Built as the Dockerfile's builder stage builds it; with this interpreter's setuptools
    # rather than an isolated build environment, which would be fetched from the index.
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--quiet", "--wheel-dir", str(root / "dist"), "./src"],
        cwd=root,
        timeout=300,
    )
    (wheel,) = (root / "dist").glob("sae-*.whl")
    target = root / "venv"
    _run([sys.executable, "-m", "venv", str(target)], timeout=120)
    _run(
        [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        cwd=root,
        env=_clean_env(target),
        timeout=900,
    )
    return target


def _clean_env(target: Path, **extra: str) -> dict[str, str]:
    """A process environment with the venv first and nothing of the checkout or the test run."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR", "PIP_CERT")}
    return {
        **keep,
        "PATH": f"{target / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "COLUMNS": "200",
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Process:
    """An entry-point process whose output goes to a file (read when it fails)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._out, stderr=self._out)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._out.close()
        return self.popen.returncode


@pytest.fixture
def processes() -> Iterator[list[_Process]]:
    started: list[_Process] = []
    yield started
    for process in reversed(started):
        process.stop()


def _wait_healthy(base: str, server: _Process) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.popen.poll() is None, f"sae serve exited:\n{server.output()[-4000:]}"
        try:
            health = httpx.get(f"{base}/health", timeout=5)
            if health.status_code == 200:
                body: dict[str, Any] = health.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"sae serve not healthy within 180 s:\n{server.output()[-4000:]}")


def _wait_for(process: _Process, line: str, name: str) -> None:
    deadline = time.monotonic() + 180
    while line not in process.output():
        assert process.popen.poll() is None, f"{name} exited:\n{process.output()[-4000:]}"
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not say {line!r} within 180 s:\n{process.output()[-4000:]}")
        time.sleep(0.5)


@pytest.mark.timeout(1200)  # the wheel's dependencies are installed first
def test_the_containers_entry_sequence_from_the_wheel(
    venv: Path, ceph_rgw: S3Server, tmp_path: Path, processes: list[_Process]
) -> None:
    sites = [least_privilege_bucket(ceph_rgw), least_privilege_bucket(ceph_rgw)]
    # A quarantine, as in the compose file: the start also checks the governance bypass.
    offers, credentials = offers_yaml(sites, quarantine_days=7)
    home = tmp_path / "empty"  # the processes' working directory: no checkout around
    home.mkdir()
    (tmp_path / "offers.yaml").write_text(offers, encoding="utf-8")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with postgres_schema("sae_entry") as database_url:
        env = _clean_env(
            venv,
            SAE_DATA_DIR=str(tmp_path / "data"),
            SAE_DATABASE_URL=database_url,
            SAE_OFFERS_FILE=str(tmp_path / "offers.yaml"),
            SAE_AUTO_MIGRATE="0",
            SAE_HOST="127.0.0.1",
            SAE_PORT=str(port),
            SAE_WORKERS="",  # as compose passes it unset: one per core
            **credentials,
        )
        _run(["sh", str(ENTRYPOINT), "migrate"], env=env, cwd=home, timeout=300)
        try:
            _serve_deposit_and_stop(env, home, tmp_path, base, sites, ceph_rgw, processes)
        finally:
            # Before the schema is dropped: its connections would hold the drop forever.
            for process in processes:
                process.stop()


def _serve_deposit_and_stop(
    env: dict[str, str],
    home: Path,
    tmp_path: Path,
    base: str,
    sites: list[SaeBucket],
    ceph_rgw: S3Server,
    processes: list[_Process],
) -> None:
    server = _Process(["sh", str(ENTRYPOINT), "serve"], env, home, tmp_path / "serve.log")
    processes.append(server)
    health = _wait_healthy(base, server)
    assert [(o["name"], o["ok"]) for o in health["offers"]] == [
        ("site-1", True),
        ("site-2", True),
    ]
    worker = _Process(["sh", str(ENTRYPOINT), "worker"], env, home, tmp_path / "worker.log")
    processes.append(worker)

    admin = {"Authorization": f"Bearer {(tmp_path / 'data' / 'admin.token').read_text().strip()}"}
    with httpx.Client(base_url=base, headers=admin, timeout=120) as client:
        rules = client.put(
            "/api/v1/rules",
            content=TEST_RULES_CSV.encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert rules.status_code == 200, rules.text
        payload = b"Registre des deliberations 1998\n" * 500
        reply = client.post(
            "/api/v1/transfers",
            content=build_zip(simple_sip("MSG-ENTRY-1", payload=payload)),
            headers={"Content-Type": "application/zip"},
        )
        assert reply.status_code == 201, reply.text
        object_id = reply.json()["objects"][0]["id"]
        content = client.get(f"/api/v1/objects/{object_id}/content")
        assert content.status_code == 200
        assert content.content == payload
    for site in sites:
        assert f"objects/{object_id}" in versions(ceph_rgw, site.bucket), site.bucket

    # One server process per core (SAE_WORKERS unset), the worker beside them.
    cores = min(int(_run(["nproc"]).stdout), 32)
    if cores > 1:
        assert server.output().count("Started server process") >= cores, server.output()
    _wait_for(worker, "SAE worker running — offers: site-1, site-2", "sae worker")
    assert worker.stop() == 0, worker.output()
    assert "SAE worker stopped" in worker.output()
    assert server.stop() == 0, server.output()[-4000:]
