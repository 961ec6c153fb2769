"""A log built in memory (sae.journal.merkle + a NoteKey) and real ``sae witness`` processes.

The protocol tests run the witness as ``python -m sae.witness`` — the same Typer app as
``sae witness``, without loading the archive's modules (about 0.3 s to start instead of 2.5 on
a busy machine); tests/witness/test_cli.py runs the ``sae`` command itself.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sae.journal import merkle
from sae.journal.merkle import MemoryTree
from sae.journal.note import Note, NoteKey, checkpoint_text

REPO = Path(__file__).resolve().parents[2]
ORIGIN = "sae.mairie.example/journal"
WITNESS_NAME = "archives.departement.example/w1"


def witness_command(*args: str, via_sae: bool = False) -> list[str]:
    """``sae witness ARGS`` (``via_sae``) or ``python -m sae.witness ARGS``."""
    if via_sae:
        return [sys.executable, "-m", "sae", "witness", *args]
    return [sys.executable, "-m", "sae.witness", *args]


def run_witness(*args: str, via_sae: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(
        witness_command(*args, via_sae=via_sae),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@dataclass
class Log:
    """A transparency log in memory: leaves, a tree, a note key."""

    origin: str = ORIGIN
    key: NoteKey = field(default_factory=lambda: NoteKey.generate(ORIGIN))
    tree: MemoryTree = field(default_factory=MemoryTree)
    prefix: bytes = b"event"

    def grow(self, size: int) -> None:
        while self.tree.size < size:
            self.tree.append(self.prefix + b"-%d" % self.tree.size)

    def root(self, size: int) -> bytes:
        self.grow(size)
        return self.tree.root(size) if size else merkle.EMPTY_ROOT

    def text(self, size: int) -> str:
        return checkpoint_text(self.origin, size, self.root(size))

    def note(self, size: int, *keys: NoteKey) -> bytes:
        return bytes(Note.sign(self.text(size), *(keys or (self.key,))))

    def proof(self, old: int, size: int) -> list[bytes]:
        if old == 0 or old == size:
            return []
        self.grow(size)
        return merkle.consistency_proof(old, size, self.tree)

    def body(self, old: int, size: int, proof: list[bytes] | None = None) -> bytes:
        proof = self.proof(old, size) if proof is None else proof
        lines = "".join(base64.b64encode(p).decode() + "\n" for p in proof)
        return f"old {old}\n{lines}\n".encode() + self.note(size)


@dataclass
class Reply:
    status: int
    content_type: str
    text: str


@dataclass
class WitnessProcess:
    data: Path
    process: subprocess.Popen[str]
    host: str
    port: int
    vkey: str

    def post(self, body: bytes, path: str = "/add-checkpoint") -> Reply:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: bytes | None = None) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return Reply(
                response.status,
                response.getheader("Content-Type", ""),
                response.read().decode("utf-8"),
            )
        finally:
            conn.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self._close()

    def kill(self) -> None:
        self.process.kill()  # SIGKILL
        self.process.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()


_LISTENING = re.compile(r"listening on http://([^:]+):(\d+) — vkey (\S+)")


def start_witness(data: Path, *, via_sae: bool = False) -> WitnessProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    args = ("serve", "--data", str(data), "--host", "127.0.0.1", "--port", "0")
    process = subprocess.Popen(
        witness_command(*args, via_sae=via_sae),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the server is bound (or the process dies)
    match = _LISTENING.search(line)
    if match is None:
        process.kill()
        process.stdout.close()
        raise AssertionError(f"the witness did not start: {line!r}, exit {process.wait()}")
    return WitnessProcess(data, process, match[1], int(match[2]), match[3])


def init_witness(data: Path, log: Log) -> str:
    done = run_witness("init", "--data", str(data), "--name", WITNESS_NAME)
    assert done.returncode == 0, done.stderr
    vkey = done.stdout.strip().splitlines()[-1]
    done = run_witness("trust", "--data", str(data), "--origin", log.origin, "--vkey", log.key.vkey)
    assert done.returncode == 0, done.stderr
    return vkey


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def witness(tmp_path: Path, log: Log) -> Iterator[WitnessProcess]:
    data = tmp_path / "witness"
    init_witness(data, log)
    running = start_witness(data)
    yield running
    running.kill()
