"""The peer's corpus: 500 scanned-like one-page PDFs from ../shared/bench/make_corpus.py, as one
SIP of 500 files (``--mode one-sip``) or as 500 SIPs of one file with 8 clients
(``--mode many-sips``); records/s.

Baseline, same run, same files: a plain Python read + SHA-512 + write + fsync of each record (the
README measured 0.96 s, about 520 files/s). Peer: a3m (lightweight Archivematica) on the same
corpus, 2.35 records/s with its default configuration and 7.5 stripped down — figures published
in ../shared/bench/README.md, quoted here, not re-run (``../shared/bench/peer_a3m.sh`` re-runs
them, about 4 minutes). Target (issue #7): >= 100 x a3m, i.e. >= 235 records/s.

    .venv/bin/python bench/bench_corpus.py [--mode one-sip|many-sips] [--records 500]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from common import (
    BENCH_DIR,
    SHARED,
    deposit_all,
    errors_note,
    python_hash_copy_fsync,
    result,
    server,
    sip_of_files,
    warm,
    workdir,
)

A3M_FULL = 2.35  # records/s, ../shared/bench/README.md (500 records in 213 s)
A3M_MINIMAL = 7.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["one-sip", "many-sips"], default="one-sip")
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    corpus = BENCH_DIR / f"corpus-{args.records}"
    if not (corpus / "records").is_dir():
        subprocess.run(
            [
                sys.executable,
                str(SHARED / "bench" / "make_corpus.py"),
                str(corpus),
                "--records",
                str(args.records),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    files = sorted((corpus / "records").rglob("*.pdf"))
    assert len(files) == args.records, len(files)
    work = workdir(f"corpus-{args.mode}")
    try:
        warm(files)
        baseline = python_hash_copy_fsync(files, work / "copy")
        blobs = [(f.name, f.read_bytes()) for f in files]
        if args.mode == "one-sip":
            sips = [sip_of_files("BENCH-CORPUS-1", blobs)]
            clients = 1
        else:
            sips = [sip_of_files(f"BENCH-CORPUS-{i:04d}", [b]) for i, b in enumerate(blobs)]
            clients = args.clients
        with server(work) as srv:
            started = time.perf_counter()
            wall, ok, others = deposit_all(srv.process, sips, clients)
            wall = time.perf_counter() - started
            peak = srv.peak_mib()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    records = args.records if ok == len(sips) else ok * (args.records // len(sips))
    rate = records / wall
    base = args.records / baseline
    mib = sum(len(d) for _, d in blobs) / 2**20
    how = "one SIP of" if args.mode == "one-sip" else f"{len(sips)} SIPs of one, {clients} clients,"
    result(
        f"a3m corpus, {how} {args.records} records ({mib:.0f} MiB): {rate:.1f} records/s in "
        f"{wall:.1f} s ({errors_note(others)}); baseline python hash+copy+fsync {base:.0f} "
        f"files/s, ratio {rate / base:.2f}; vs a3m (published, not re-run) {rate / A3M_FULL:.0f} x "
        f"full ({A3M_FULL}/s), {rate / A3M_MINIMAL:.0f} x minimal ({A3M_MINIMAL}/s); target >= "
        f"235 records/s: {'met' if rate >= 235 else 'NOT met'}; server peak RSS {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
