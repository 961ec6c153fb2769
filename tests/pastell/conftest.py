"""A running ``sae serve`` (its own process, real HTTP) on the test database, with two Pastell
accounts, for the connector's replayed calls."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_RULES_CSV, Database
from tests.pastell.client import Answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str  # the connector's URL: http://127.0.0.1:<port>/restservices
    base: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    database: Database
    env: dict[str, str]

    def create_account(self, login: str, producer: str, password: str) -> None:
        """``sae pastell-account create``, as an operator runs it."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sae",
                "pastell-account",
                "create",
                "--login",
                login,
                "--producer",
                producer,
                "--password-stdin",
            ],
            input=password.encode() + b"\n",
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()

    def load_test_rules(self) -> None:
        """The test referential, through the API (the rules the bordereaux name)."""
        response = httpx.put(
            f"{self.base}/api/v1/rules",
            content=TEST_RULES_CSV.encode(),
            headers={**self.admin(), "Content-Type": "text/csv"},
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def admin(self) -> dict[str, str]:
        token = (self.data_dir / "admin.token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def peak_rss_bytes(self) -> int:
        """The highest resident set size of the server and its children (VmHWM)."""
        peak = 0
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        return peak


def start_server(root: Path, database: Database) -> Server:
    """``sae serve`` on ``database`` with its data directory in ``root`` (kept across starts:
    a test may stop the server and start it again on the same data)."""
    port = _free_port()
    data_dir = root / "sae-data"
    env = {
        **os.environ,
        "SAE_DATA_DIR": str(data_dir),
        "SAE_DATABASE_URL": database.url,
        "SAE_PORT": str(port),
        "SAE_PASTELL_RETRY_SECONDS": "1",
    }
    env.pop("SAE_OFFERS_FILE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sae", "serve"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
    except BaseException:
        stop_server(proc)
        raise
    return Server(f"{base}/restservices", base, proc, data_dir, database, env)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop it as an operator does (SIGTERM: the app's shutdown runs)."""
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database: Database) -> Iterator[Server]:
    """One server for the module's tests (starting one takes seconds): each test uses
    transfer identifiers of its own."""
    tmp_path = tmp_path_factory.mktemp("pastell")
    database.reset()
    srv = start_server(tmp_path, database)
    try:
        srv.load_test_rules()
        yield srv
    finally:
        stop_server(srv.proc)
        database.reset()


def answered(call: Callable[[], Answer], seconds: float = 120) -> Answer:
    """``call``'s first 200, asked again every half second while it answers 404 (not yet
    received) or 409 (not yet ready), as Pastell polls."""
    deadline = time.monotonic() + seconds
    while True:
        answer = call()
        if answer.status == 200:
            return answer
        assert answer.status in (404, 409), (answer.status, answer.body)
        assert time.monotonic() < deadline, f"no reply within {seconds} s: {answer.body!r}"
        time.sleep(0.5)
