"""Many small transfers: N SIPs of one 100 KiB PDF each, C concurrent clients; transfers/s.

Baseline, same run, same bytes: a plain Python read + SHA-512 + write + fsync of each PDF
(files/s) — the floor of what any archive must do per document. Target (issue #7): at least 50
transfers/s on two cores with PostgreSQL.

    .venv/bin/python bench/bench_transfers.py [--database sqlite|postgresql] [--sips 2000]
        [--clients 8] [--kib 100] [--workers 1]

``--workers`` is ``SAE_WORKERS`` (server processes, on either database): one Python process uses
one core at most, and the server's Python is what limits the rate.
"""

from __future__ import annotations

import argparse
import random
import shutil

from common import (
    deposit_all,
    errors_note,
    postgres_schema,
    python_hash_copy_fsync,
    result,
    server,
    warm,
    workdir,
)

from tests.sipfactory import build_zip, simple_sip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sips", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    work = workdir(f"transfers-{args.database}")
    try:
        rng = random.Random(7)
        pdfs = [
            b"%PDF-1.4\n" + rng.randbytes(args.kib * 1024 - 16) + b"\n%%EOF\n"
            for _ in range(args.sips)
        ]
        files = []
        (work / "pdfs").mkdir()
        for i, pdf in enumerate(pdfs):
            path = work / "pdfs" / f"{i:05d}.pdf"
            path.write_bytes(pdf)
            files.append(path)
        warm(files)
        baseline = python_hash_copy_fsync(files, work / "copy")
        sips = [build_zip(simple_sip(f"BENCH-{i:05d}", payload=pdf)) for i, pdf in enumerate(pdfs)]
        if args.database == "postgresql":
            with (
                postgres_schema() as url,
                server(work, database_url=url, workers=args.workers) as srv,
            ):
                before = srv.cpu_seconds()
                wall, ok, others = deposit_all(srv.process, sips, args.clients)
                after = srv.cpu_seconds()
                peak = srv.peak_mib()
        else:
            with server(work, workers=args.workers) as srv:
                before = srv.cpu_seconds()
                wall, ok, others = deposit_all(srv.process, sips, args.clients)
                after = srv.cpu_seconds()
                peak = srv.peak_mib()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = ok / wall
    user, system = after[0] - before[0], after[1] - before[1]
    base_rate = args.sips / baseline
    result(
        f"transfers {args.database}: {rate:.1f} transfers/s ({ok} of {args.sips} one-PDF SIPs of "
        f"{args.kib} KiB accepted in {wall:.1f} s, {args.clients} clients, "
        f"{args.workers} server process{'es' if args.workers > 1 else ''}; "
        f"{errors_note(others)}); "
        f"baseline python hash+copy+fsync {base_rate:.0f} files/s; ratio {rate / base_rate:.3f}; "
        f"target >= 50/s on PostgreSQL: {'met' if rate >= 50 else 'NOT met'}; "
        f"server peak RSS {peak:.0f} MiB{' (all processes)' if args.workers > 1 else ''}; "
        f"server CPU {(user + system) / max(ok, 1) * 1000:.2f} ms per transfer (user "
        f"{user / max(ok, 1) * 1000:.2f}, system {system / max(ok, 1) * 1000:.2f})"
    )


if __name__ == "__main__":
    main()
