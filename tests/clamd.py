"""A real clamd for the tests, with a signature database the test generates (no download).

The database holds one MD5 hash signature (``.hdb``: ``md5:size:name``) of :data:`INFECTED`
— a harmless file made up here — and one body signature (``.ndb``) of a marker that may sit
anywhere in a file. clamd runs in the foreground on a Unix socket in a temporary folder, with a
small ``StreamMaxLength`` so that the "too large to be scanned" path is tested too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require

CLAMD = "/usr/sbin/clamd"
#: A file the generated hash signature names.
INFECTED = b"SAE test file: this content is flagged by the test's own clamd signature.\n"
HASH_SIGNATURE = "SAE.Test.HashSignature"
#: A marker the generated body signature finds anywhere in a file.
MARKER = b"SAE-BODY-SIGNATURE-MARKER-7f3e9c"
BODY_SIGNATURE = "SAE.Test.BodySignature"
#: clamd's stream limit in the tests (its StreamMaxLength).
STREAM_MAX = 1024 * 1024


@dataclass(frozen=True)
class Clamd:
    socket: str
    process: subprocess.Popen[bytes]


def _ready(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
            sock.sendall(b"zPING\0")
            return sock.recv(16).startswith(b"PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    require(os.access(CLAMD, os.X_OK) or shutil.which("clamd"), "clamd not installed")
    binary = CLAMD if os.access(CLAMD, os.X_OK) else str(shutil.which("clamd"))
    base = tmp_path_factory.mktemp("clamd")
    db = base / "db"
    db.mkdir()
    md5 = hashlib.md5(INFECTED, usedforsecurity=False).hexdigest()
    (db / "sae-test.hdb").write_text(f"{md5}:{len(INFECTED)}:{HASH_SIGNATURE}\n")
    # name:target type (0: any file):offset (*: anywhere):hex of the body
    (db / "sae-test.ndb").write_text(f"{BODY_SIGNATURE}:0:*:{MARKER.hex()}\n")
    sock = base / "clamd.sock"
    conf = base / "clamd.conf"
    lines = [
        "Foreground yes",
        f"LocalSocket {sock}",
        f"DatabaseDirectory {db}",
        f"PidFile {base / 'clamd.pid'}",
        f"LogFile {base / 'clamd.log'}",
        f"StreamMaxLength {STREAM_MAX}",
        "MaxThreads 4",
        "SelfCheck 3600",
    ]
    # No User line: Debian's clamd then stays the user it started as (root in CI), who owns
    # the temporary folder.
    conf.write_text("\n".join(lines) + "\n")
    with (base / "clamd.err").open("wb") as err:
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not _ready(sock):
            if process.poll() is not None:
                err = (base / "clamd.err").read_text(errors="replace")
                log = (base / "clamd.log").read_text() if (base / "clamd.log").exists() else ""
                pytest.fail(f"clamd did not start: {err}\n{log[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("clamd did not answer PING within 60 s")
            time.sleep(0.1)
        yield Clamd(str(sock), process)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
