"""A Ceph RGW of the fault tests' own, whose gateway process they may kill and restart.

The session's ``ceph_rgw`` (tests/s3_server.py) is shared by other tests, so stopping it would
break them; these tests start a second throwaway cluster with the same script and record where
it lives, to SIGKILL ``radosgw`` mid-deposit and bring it back.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import require
from tests.crash.harness import free_port
from tests.s3_server import TOOLS, ceph_missing_reason

ACCESS_KEY = "testaccess"
SECRET_KEY = "testsecret12345"


@dataclass
class OwnCeph:
    """Where the cluster lives; ``kill_gateway()`` / ``start_gateway()`` stop and start RGW."""

    directory: Path
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "run" / "client.rgw.a.pid"

    def gateway_up(self) -> bool:
        try:
            httpx.get(self.endpoint, timeout=2)
            return True
        except httpx.HTTPError:
            return False

    def kill_gateway(self) -> None:
        """SIGKILL radosgw: the S3 server is gone at once, connections reset."""
        pid = int(self.pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def start_gateway(self, timeout: float = 60.0) -> None:
        subprocess.run(
            ["radosgw", "-c", str(self.directory / "ceph.conf"), "-n", "client.rgw.a"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gateway_up():
                return
            time.sleep(0.2)
        raise RuntimeError("radosgw did not come back")

    def offer_yaml(self, name: str, bucket: str) -> str:
        return (
            f"  - name: {name}\n"
            "    kind: s3\n"
            f"    endpoint: {self.endpoint}\n"
            f"    bucket: {bucket}\n"
            "    access_key_env: SAE_FAULT_S3_ACCESS\n"
            "    secret_key_env: SAE_FAULT_S3_SECRET\n"
            "    region: default\n"
            "    jurisdiction: FR\n"
            "    site: Ceph\n"
            "    create_bucket: true\n"
        )

    env = {"SAE_FAULT_S3_ACCESS": ACCESS_KEY, "SAE_FAULT_S3_SECRET": SECRET_KEY}


@pytest.fixture(scope="module")
def own_ceph() -> Iterator[OwnCeph]:
    """A single-node Ceph RGW for this module (about 15 s to start)."""
    reason = ceph_missing_reason()
    require(reason is None, reason or "")
    directory = Path(tempfile.mkdtemp(prefix="sae-fault-ceph-", dir="/tmp"))
    port, mon_port = free_port(), free_port()
    env = {
        **os.environ,
        "CEPH_RGW_DIR": str(directory),
        "RGW_PORT": str(port),
        "MON_PORT": str(mon_port),
        "MEMSTORE_BYTES": str(2 * 1024**3),
        "S3_ACCESS_KEY": ACCESS_KEY,
        "S3_SECRET_KEY": SECRET_KEY,
    }
    started = subprocess.run(
        [str(TOOLS / "start-ceph-rgw.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"Ceph RGW did not start: {started.stderr[-2000:]}")
        yield OwnCeph(directory, port)
    finally:
        subprocess.run(
            [str(TOOLS / "stop-ceph-rgw.sh")],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)
