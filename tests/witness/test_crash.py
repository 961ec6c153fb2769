"""A witness SIGKILLed while co-signing restarts with a state it co-signed, never below a size it
returned a cosignature for (tlog-witness: persist before responding, check-and-update atomic)."""

from __future__ import annotations

import hashlib
import http.client
import random
import threading
import time
from pathlib import Path

from sae.journal.note import Note, Verifier, parse_checkpoint
from tests.witness.conftest import ORIGIN, Log, WitnessProcess, init_witness, start_witness

MAX_SIZE = 3000


def hammer(
    witness: WitnessProcess,
    log: Log,
    seed: int,
    returned: list[int],
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    """Push ever larger checkpoints from the size this client believes is latest; on a 409
    catch up from the size the witness gives. Record every size it got a cosignature for."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(witness.host, witness.port, timeout=10)
    try:
        _push(conn, log, rng, returned, lock, stop)
    finally:
        conn.close()


def _push(
    conn: http.client.HTTPConnection,
    log: Log,
    rng: random.Random,
    returned: list[int],
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    old = 0
    while not stop.is_set():
        size = min(MAX_SIZE, old + rng.randint(0, 40))
        with lock:
            body = log.body(old, size)  # MemoryTree is not thread-safe
        try:
            conn.request("POST", "/add-checkpoint", body=body)
            response = conn.getresponse()
            text = response.read().decode()
        except (OSError, http.client.HTTPException):
            return  # the witness was killed
        if response.status == 200:
            with lock:
                returned.append(size)
            old = size
        elif response.status == 409:
            old = int(text)
        else:
            raise AssertionError(f"{response.status} {text}")


def test_sigkill_while_cosigning_never_loses_nor_rolls_back(tmp_path: Path) -> None:
    log = Log()
    log.grow(MAX_SIZE)
    data = tmp_path / "witness"
    init_witness(data, log)
    highest = 0
    for round_ in range(3):
        witness = start_witness(data)
        returned: list[int] = []
        lock, stop = threading.Lock(), threading.Event()
        clients = [
            threading.Thread(
                target=hammer, args=(witness, log, 10 * round_ + i, returned, lock, stop)
            )
            for i in range(6)
        ]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 30
        while len(returned) < 20 * (round_ + 1) and time.monotonic() < deadline:
            time.sleep(0.02)
        witness.process.kill()  # SIGKILL in the middle of the requests
        witness.process.wait(timeout=30)
        stop.set()
        for client in clients:
            client.join(timeout=30)
        witness.kill()
        assert returned, "no cosignature before the kill"
        highest = max(highest, *returned)

        # Restarted, the witness's record is a checkpoint it co-signed (the log's and its own
        # signatures verify, the root is the log's at that size), not below any size returned.
        again = start_witness(data)
        try:
            origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
            reply = again.request("GET", f"/{origin_hash}/checkpoint")
            assert reply.status == 200
            note = Note.parse(reply.text)
            both = [log.key.verifier, Verifier.parse(again.vkey)]
            assert note.verify(both) == both
            checkpoint = parse_checkpoint(note.text)
            assert checkpoint.root_hash == log.root(checkpoint.size)
            assert checkpoint.size >= highest, (checkpoint.size, highest)
            # and it answers from exactly that size
            wrong_old = checkpoint.size - 1 if checkpoint.size > 0 else 1
            conflict = again.post(log.body(wrong_old, MAX_SIZE))
            assert conflict.status == 409
            assert int(conflict.text) == checkpoint.size
            highest = checkpoint.size
        finally:
            again.kill()


def test_concurrent_requests_from_one_old_size_get_one_cosignature(tmp_path: Path) -> None:
    """The spec's race: checks and update are one step, so of several checkpoints sent at once
    from the same old size exactly one is co-signed, the others get 409 with its size."""
    log = Log()
    log.grow(400)
    data = tmp_path / "witness"
    init_witness(data, log)
    witness = start_witness(data)
    try:
        latest = 0
        for _ in range(10):
            bodies = [log.body(latest, latest + 1 + i) for i in range(8)]
            barrier = threading.Barrier(len(bodies))
            replies: list[tuple[int, str]] = []

            def send(
                body: bytes,
                barrier: threading.Barrier = barrier,
                replies: list[tuple[int, str]] = replies,
            ) -> None:
                conn = http.client.HTTPConnection(witness.host, witness.port, timeout=10)
                try:
                    conn.connect()
                    barrier.wait()
                    conn.request("POST", "/add-checkpoint", body=body)
                    response = conn.getresponse()
                    replies.append((response.status, response.read().decode()))
                finally:
                    conn.close()

            threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            statuses = sorted(status for status, _ in replies)
            assert statuses == [200] + [409] * 7, statuses
            sizes = {int(text) for status, text in replies if status == 409}
            assert len(sizes) == 1
            latest = sizes.pop()
    finally:
        witness.kill()
