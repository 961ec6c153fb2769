"""Concurrent puts on the local WORM offer against plain POSIX writes of the same files; one line.

What a deposit's files cost the offer when several deposits store at once, without the rest of
the ingest around them: ``--threads`` threads each put ``--puts`` new objects of ``--size``
bytes (the size of a deposit's description or journal tail; its object is larger) through
``FilesystemOffer.put`` inside a batch per put, as a deposit does (bytes read back, lock
attribute, read-only, published, then the file's and the directory's fsync). The baseline, in
the same run, on the same filesystem, by as many threads: the classic safe write of the same
bytes — a temporary name, write, fsync, ``link()`` to the final name, ``unlink`` of the
temporary one, fsync of the directory. The ratio is the offer's rate over the baseline's
(1.0 = as fast; above 1 the offer does more per file and still goes faster).

    .venv/bin/python bench/bench_offer_put.py [--threads 8] [--puts 300] [--size 20000]

``PYTHONPATH=/path/to/other/tree`` measures another revision's offer with this script.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sae.storage.filesystem import FilesystemOffer  # noqa: E402

#: Keys spread over this many directories, as objects, descriptions and tails are.
DIRECTORIES = 16


def _baseline_put(root: Path, data: bytes) -> Callable[[int], None]:
    def put(number: int) -> None:
        directory = root / f"d{number % DIRECTORIES}"
        final = directory / secrets.token_hex(16)
        tmp = directory / f".{final.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, final)
        os.unlink(tmp)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    for number in range(DIRECTORIES):
        (root / f"d{number}").mkdir(parents=True)
    return put


def _offer_put(root: Path, data: bytes) -> Callable[[int], None]:
    offer = FilesystemOffer("bench", root)
    offer.check()

    def put(number: int) -> None:
        with offer.batch():
            offer.put(
                f"d{number % DIRECTORIES}/{secrets.token_hex(16)}",
                io.BytesIO(data),
                retain_until=None,
            )

    return put


def _rate(put: Callable[[int], None], threads: int, puts: int) -> float:
    """Files per second, ``threads`` threads putting ``puts`` files each."""
    failures: list[BaseException] = []

    def work(first: int) -> None:
        try:
            for number in range(first, first + puts):
                put(number)
        except BaseException as exc:  # reported below, not lost in a thread
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(n * puts,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return threads * puts / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--puts", type=int, default=300, help="files per thread")
    parser.add_argument("--size", type=int, default=20_000, help="bytes per file")
    parser.add_argument("--rounds", type=int, default=3, help="the better of this many runs")
    args = parser.parse_args()
    data = os.urandom(args.size)
    work = Path(tempfile.mkdtemp(prefix="sae-bench-put-", dir=os.environ.get("SAE_BENCH_DIR")))
    offer_rates, baseline_rates = [], []
    try:
        for number in range(args.rounds):
            # Alternated, each on fresh directories: neither inherits the other's deletions.
            for name, make, rates in (
                ("offer", _offer_put, offer_rates),
                ("baseline", _baseline_put, baseline_rates),
            )[:: 1 if number % 2 == 0 else -1]:
                root = work / f"{name}-{number}"
                rates.append(_rate(make(root, data), args.threads, args.puts))
                shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    offer, baseline = max(offer_rates), max(baseline_rates)
    print(
        f"RESULT offer put, {args.threads} threads x {args.puts} files of {args.size} bytes: "
        f"{offer:.0f} files/s (runs: {', '.join(f'{r:.0f}' for r in offer_rates)}); baseline "
        f"temporary name + fsync + link + directory fsync {baseline:.0f} files/s (runs: "
        f"{', '.join(f'{r:.0f}' for r in baseline_rates)}); ratio {offer / baseline:.2f}"
    )


if __name__ == "__main__":
    main()
