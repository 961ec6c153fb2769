"""A real Ceph RADOS Gateway (S3 with Object Lock) for the test session.

``ceph_rgw`` starts a throwaway single-node cluster with ``<repo>/../shared/tools/
start-ceph-rgw.sh`` on free ports and in its own directory, so that it never collides with a
cluster someone else runs on the machine, and stops it at the end of the session. Set
``SAE_TEST_S3_ENDPOINT`` (and ``SAE_TEST_S3_ACCESS_KEY`` / ``SAE_TEST_S3_SECRET_KEY``) to use a
server that is already running instead, and ``SAE_TEST_S3_CEPH_CONF`` (its ``ceph.conf``) for the
tests that create S3 users with ``radosgw-admin``.

When radosgw is not installed the tests that need it skip, or fail under ``SAE_REQUIRE_ALL=1``.
Install: ``apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd`` (root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SHARED, require

TOOLS = SHARED / "tools"


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server answers."""

    endpoint: str  # http://host:port
    access_key: str
    secret_key: str
    region: str = "default"  # what Ceph RGW reports as every bucket's location
    #: The cluster's ceph.conf, for ``radosgw-admin`` (creating users); None when unknown.
    ceph_conf: Path | None = None

    def new_bucket_name(self) -> str:
        """A bucket name no other test uses."""
        return f"sae-test-{uuid.uuid4().hex[:12]}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ceph_missing_reason() -> str | None:
    """Why the Ceph RGW cannot be started here, or None when it can."""
    if not (TOOLS / "start-ceph-rgw.sh").is_file():
        return f"{TOOLS}/start-ceph-rgw.sh not found"
    for tool in ("radosgw", "ceph-mon", "ceph-osd"):
        if shutil.which(tool) is None:
            return (
                f"{tool} not installed (apt-get install -y --no-install-recommends radosgw "
                "ceph-mon ceph-osd)"
            )
    if os.geteuid() != 0:
        return "starting Ceph RGW needs root"
    return None


@pytest.fixture(scope="session", name="ceph_rgw")
def ceph_rgw_fixture() -> Iterator[S3Server]:
    """A running Ceph RGW for the whole session (started here unless given by environment)."""
    given = os.environ.get("SAE_TEST_S3_ENDPOINT")
    if given:
        yield S3Server(
            given,
            os.environ.get("SAE_TEST_S3_ACCESS_KEY", "testaccess"),
            os.environ.get("SAE_TEST_S3_SECRET_KEY", "testsecret12345"),
            ceph_conf=Path(conf) if (conf := os.environ.get("SAE_TEST_S3_CEPH_CONF")) else None,
        )
        return
    reason = ceph_missing_reason()
    require(reason is None, reason or "")
    # A short path: Ceph's admin sockets live under it and Unix socket paths are limited.
    directory = Path(tempfile.mkdtemp(prefix="sae-ceph-", dir="/tmp"))
    port, mon_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "CEPH_RGW_DIR": str(directory),
        "RGW_PORT": str(port),
        "MON_PORT": str(mon_port),
        "MEMSTORE_BYTES": str(2 * 1024**3),
        "S3_ACCESS_KEY": "testaccess",
        "S3_SECRET_KEY": "testsecret12345",
    }
    try:
        try:
            started = subprocess.run(
                [str(TOOLS / "start-ceph-rgw.sh")],
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("Ceph RGW did not start within 240 s")
        if started.returncode != 0:
            pytest.fail(f"Ceph RGW did not start: {started.stderr[-2000:]}")
        yield S3Server(
            f"http://127.0.0.1:{port}",
            "testaccess",
            "testsecret12345",
            ceph_conf=directory / "ceph.conf",
        )
    finally:
        subprocess.run(
            [str(TOOLS / "stop-ceph-rgw.sh")],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)
