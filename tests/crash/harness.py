"""A real ``sae serve`` in a subprocess, for crash, fault, fuzz tests and benchmarks.

The server runs exactly as in production (``python -m sae serve``), in its own process group, so
that a test can SIGKILL it at any instant and start it again on the same data directory.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (from /proc; 0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def hwm_kib(pid: int) -> int:
    """Peak resident set size of ``pid`` in KiB (VmHWM, kept by the kernel)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("PPid:"):
                    if int(line.split()[1]) == pid:
                        found.append(int(status.parent.name))
                    break
        except OSError:
            continue
    return found


class ServerProcess:
    """``sae serve`` on ``data_dir``; ``start()``, ``kill()`` (SIGKILL), ``stop()`` (SIGTERM)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        tree: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        #: The source tree whose ``sae`` runs (``python -m sae`` from there): this repository
        #: unless a benchmark compares another revision's server (bench/compare_trees.py).
        self.tree = tree or REPO
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or data_dir.parent / f"{data_dir.name}-server.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SAE_")},
            "SAE_DATA_DIR": str(data_dir),
            "SAE_HOST": "127.0.0.1",
            "SAE_PORT": str(self.port),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- life cycle ------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0, healthy: bool = True) -> None:
        """Start the server and wait until ``/health`` answers (200 unless ``healthy=False``)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n=== start #{self.starts + 1} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sae", "serve", "--port", str(self.port)],
            env={**self.env, "PYTHONPATH": str(self.tree)} if self.tree != REPO else self.env,
            cwd=self.tree,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"sae serve exited with {code}: {self.log_tail()}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=5)
                if response.status_code == 200 or not healthy:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"sae serve not ready after {timeout} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no flush, as in a power cut.

        The group outlives its leader: worker processes left by a supervisor that died are
        killed too."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), or kill after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    # -- conveniences ----------------------------------------------------------------------

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def client(self, timeout: float = 60.0) -> httpx.Client:
        """An HTTP client on the server, authenticated as admin."""
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=timeout)

    def cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run an ``sae`` command on the same settings (see :data:`CLI_SCRIPT`)."""
        return subprocess.run(
            [sys.executable, "-c", CLI_SCRIPT, *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


# ``sae fsck``/``sae audit`` (sae.storage.cli) and ``sae journal`` (sae.journal.cli): when the
# main app does not register them (yet), this does, so that the tests run the real commands.
CLI_SCRIPT = """
from sae.cli import app
names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
groups = {g.name for g in app.registered_groups}
if "fsck" not in names:
    from sae.storage.cli import fsck_command
    app.command("fsck")(fsck_command)
if "audit" not in names:
    from sae.storage.cli import audit_command
    app.command("audit")(audit_command)
if "journal" not in groups:
    try:
        from sae.journal.cli import journal_app
    except ImportError:
        pass
    else:
        app.add_typer(journal_app, name="journal")
app(prog_name="sae")
"""


def sha512_hex(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def download_sha512(client: httpx.Client, object_id: str) -> tuple[int, str, dict[str, Any]]:
    """Stream an object's content; (status, SHA-512 of the bytes received, headers)."""
    digest = hashlib.sha512()
    with client.stream("GET", f"/api/v1/objects/{object_id}/content") as response:
        for chunk in response.iter_bytes():
            digest.update(chunk)
        return response.status_code, digest.hexdigest(), dict(response.headers)
