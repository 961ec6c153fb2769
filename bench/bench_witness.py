"""Witness round trip: one line, with a ratio to a baseline from the same run.

    .venv/bin/python bench/bench_witness.py [--leaves 1000000] [--requests 200]

A real ``sae witness serve`` process (``python -m sae.witness``) on the loopback; a log of
``--leaves`` leaves built in memory (sae.journal.merkle) and signed with a NoteKey. Timed: the
``add-checkpoint`` round trip over one keep-alive connection, each request extending the last
co-signed checkpoint by one leaf near the full size (a consistency proof of about 20 hashes;
parsing, the log's signature checked, the proof verified, the cosignature made, the state
fsynced and renamed before the answer). Target (issue #18): <= 20 ms at 1,000,000 leaves.
Baseline: the round trip of a request the witness refuses at once (400), same connection.
The proofs and bodies are built before the timing; the median is printed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sae.journal import merkle  # noqa: E402
from sae.journal.note import Note, NoteKey, checkpoint_text  # noqa: E402
from sae.witness.store import WitnessStore  # noqa: E402

ORIGIN = "bench.example/journal"


def body(tree: merkle.MemoryTree, key: NoteKey, old: int, size: int) -> bytes:
    proof = merkle.consistency_proof(old, size, tree) if 0 < old < size else []
    lines = "".join(base64.b64encode(p).decode() + "\n" for p in proof)
    note = Note.sign(checkpoint_text(ORIGIN, size, tree.root(size)), key)
    return f"old {old}\n{lines}\n".encode() + bytes(note)


def round_trip(conn: http.client.HTTPConnection, data: bytes) -> tuple[float, int]:
    start = time.perf_counter()
    conn.request("POST", "/add-checkpoint", body=data)
    response = conn.getresponse()
    response.read()
    return time.perf_counter() - start, response.status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    n, requests = args.leaves, args.requests

    tree = merkle.MemoryTree()
    for i in range(n):
        tree.append(b"event-%d" % i)
    key = NoteKey.generate(ORIGIN)
    first = n - requests
    bodies = [body(tree, key, first + i, first + i + 1) for i in range(requests)]

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "witness"
        store = WitnessStore(data)
        store.create_key("bench.example/witness")
        store.trust(ORIGIN, key.verifier)
        process = subprocess.Popen(
            [sys.executable, "-m", "sae.witness", "serve", "--data", str(data), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            match = re.search(r"http://([^:]+):(\d+)", process.stdout.readline())
            assert match, "the witness did not start"
            conn = http.client.HTTPConnection(match[1], int(match[2]), timeout=30)
            _, status = round_trip(conn, body(tree, key, 0, first))
            assert status == 200, status
            timed = []
            for data_ in bodies:
                elapsed, status = round_trip(conn, data_)
                assert status == 200, status
                timed.append(elapsed)
            baseline = []
            for _ in range(requests):
                elapsed, status = round_trip(conn, b"old x\n\n")
                assert status == 400, status
                baseline.append(elapsed)
            conn.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()

    median, base = statistics.median(timed) * 1000, statistics.median(baseline) * 1000
    print(
        f"witness add-checkpoint round trip at {n:,} leaves: {median:.3f} ms "
        f"(target <= 20 ms; median of {requests}, {min(timed) * 1000:.3f}-"
        f"{max(timed) * 1000:.3f} ms) | baseline refused request (400): {base:.3f} ms "
        f"| ratio {median / base:.3f}"
    )


if __name__ == "__main__":
    main()
