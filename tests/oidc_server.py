"""A real OpenID Connect provider for the sign-in tests: ``tests/oidc/provider.mjs`` (panva's
oidc-provider, installed by ``npm ci`` in ``tests/oidc``) run by node on a free port, stopped
when the block ends.

Skipped when node or the npm packages are missing — a failure under ``SAE_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require

HERE = Path(__file__).parent / "oidc"
CLIENT_ID = "sae-console"
CLIENT_SECRET = "a-client-secret-of-the-test-provider-only"  # noqa: S105 - test provider


@dataclass(frozen=True)
class Provider:
    """A running provider: its issuer and SAE's client there."""

    issuer: str
    client_id: str
    client_secret: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def oidc_provider(
    redirect_uris: list[str], *, id_token_ttl: int = 3600, claims_in: str = "id_token"
) -> Iterator[Provider]:
    """Run the provider for ``redirect_uris`` until the block ends."""
    node = shutil.which("node")
    require(node, "node not installed")
    require(
        (HERE / "node_modules" / "oidc-provider").is_dir(),
        f"oidc-provider not installed: run `npm ci` in {HERE}",
    )
    assert node is not None
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URIS": ",".join(redirect_uris),
        "ID_TOKEN_TTL": str(id_token_ttl),
        "CLAIMS_IN": claims_in,
        "NODE_ENV": "test",
    }
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [node, str(HERE / "provider.mjs")],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("READY "):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "the OIDC provider did not start:\n" + "".join(output)
        yield Provider(f"http://127.0.0.1:{port}", CLIENT_ID, CLIENT_SECRET)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
