"""Journal test fixtures: the built-in TSA and the independent openssl TSA from ../shared/tools."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from sae.journal.tsa import BuiltinTSA
from tests.conftest import SHARED, require

TSA_TOOL = SHARED / "tools" / "tsa" / "start-tsa.sh"


@dataclass
class ExternalTSA:
    url: str
    pid: int
    root: Path
    chain: Path

    @property
    def anchors(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.root.read_bytes())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def builtin_tsa(tmp_path_factory: pytest.TempPathFactory) -> BuiltinTSA:
    return BuiltinTSA.load(tmp_path_factory.mktemp("builtin-tsa"))


@pytest.fixture(scope="session", params=["rsa", "ec"])
def external_tsa(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExternalTSA]:
    require(TSA_TOOL.is_file(), f"{TSA_TOOL} not found")
    require(
        subprocess.run(["which", "openssl"], capture_output=True).returncode == 0,
        "openssl not installed",
    )
    directory = tmp_path_factory.mktemp(f"ext-tsa-{request.param}")
    out = subprocess.run(
        ["bash", str(TSA_TOOL), str(directory), str(free_port()), request.param],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    tsa = ExternalTSA(
        values["TSA_URL"], int(values["TSA_PID"]), Path(values["TSA_CA"]), Path(values["TSA_CHAIN"])
    )
    yield tsa
    # Only if that pid is still the TSA: had it died, the pid may be another process's by now
    # (pid_max is 32,768 here, and a run starts thousands) — a stray SIGTERM once stopped an
    # `sae serve` of another test.
    try:
        cmdline = Path(f"/proc/{tsa.pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"tsa_http.py" in cmdline:
        os.kill(tsa.pid, signal.SIGTERM)
