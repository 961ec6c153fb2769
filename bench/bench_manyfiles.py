"""One SIP of 5,000 small files (2-20 KiB each, one archive unit per file): files/s.

Baseline, same run, same bytes: a plain Python read + SHA-512 + write + fsync of each file.

    .venv/bin/python bench/bench_manyfiles.py [--files 5000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time

from common import (
    Depositor,
    errors_note,
    python_hash_copy_fsync,
    result,
    server,
    sip_of_files,
    warm,
    workdir,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    work = workdir("manyfiles")
    try:
        rng = random.Random(5000)
        blobs = [
            (
                f"dossier-{i // 100:03d}/piece-{i:05d}.pdf",
                b"%PDF-1.4\n" + rng.randbytes(rng.randint(2048, 20480)),
            )
            for i in range(args.files)
        ]
        files = []
        (work / "src").mkdir()
        for i, (_, data) in enumerate(blobs):
            path = work / "src" / f"{i:05d}"
            path.write_bytes(data)
            files.append(path)
        warm(files)
        baseline = python_hash_copy_fsync(files, work / "copy")
        sip = sip_of_files("BENCH-MANY-1", blobs)
        others: dict[int, int] = {}
        with server(work) as srv, Depositor(srv.process, timeout=3600) as c:
            started = time.perf_counter()
            status, _ = c.post(sip)
            wall = time.perf_counter() - started
            if status != 201:
                others[status] = 1
            peak = srv.peak_mib()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = args.files / wall
    base = args.files / baseline
    mib = sum(len(d) for _, d in blobs) / 2**20
    result(
        f"one SIP of {args.files} files: {rate:.0f} files/s ({mib:.0f} MiB, {len(sip) / 2**20:.0f}"
        f" MiB zip, accepted in {wall:.1f} s; {errors_note(others)}); baseline python "
        f"hash+copy+fsync {base:.0f} files/s; ratio {rate / base:.2f}; "
        f"server peak RSS {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
