"""Rebuilding the catalogue from one offer (issue 17): units/s and peak RSS of ``sae rebuild``,
and the time of ``sae drill`` on the same archive.

An archive of ``--transfers`` SIPs of ``--units`` units (one small PDF each; issue 17 asks for
1,000 x 100 = 100,000 units and 100,000 objects) is deposited through a real ``sae serve`` on the
local WORM offer; the server is stopped (its journal segments are published at stop); then
``sae rebuild --from local`` rebuilds it into a new catalogue (SQLite, or a fresh PostgreSQL
schema with ``--database postgresql``). Baseline, same run: merely reading the same metadata
files (``transfers/`` and ``journal/segments/``) from the offer, page cache warm for both.
Targets: >= 1,000 units/s on two cores, RSS <= 300 MB; ``sae drill`` under 5 minutes.

    .venv/bin/python bench/bench_rebuild.py [--transfers 1000] [--units 100]
        [--database sqlite|postgresql] [--drill]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from common import (
    REPO,
    deposit_all,
    errors_note,
    postgres_schema,
    result,
    server,
    sip_of_files,
    workdir,
    xsd_env,
)


def read_metadata(offer_dir: Path) -> tuple[float, int]:
    """Seconds to read every metadata file of the offer, and how many bytes."""
    started = time.perf_counter()
    total = 0
    for prefix in ("transfers", "journal"):
        for path in sorted((offer_dir / prefix).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                total += len(path.read_bytes())
    return time.perf_counter() - started, total


def run_cli(env: dict[str, str], *args: str) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """(seconds, peak RSS KiB, result) of ``sae ARGS``; the peak is the child's VmHWM, read
    until it ends (getrusage's children figure would count the stopped server too)."""
    from tests.crash.harness import hwm_kib

    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "sae", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    while process.poll() is None:
        peak = max(peak, hwm_kib(process.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    out, err = process.communicate()
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return seconds, peak, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transfers", type=int, default=1000)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--drill", action="store_true", help="also time `sae drill`")
    parser.add_argument(
        "--reuse",
        type=Path,
        help="an archive a previous run deposited (its work directory): skip the deposits",
    )
    args = parser.parse_args()

    base = args.reuse or workdir("rebuild")
    data_dir = base / "sae-data"
    sips = (
        []
        if args.reuse
        else [
            sip_of_files(
                f"REBUILD-{t:05d}",
                [
                    (f"piece-{t:05d}-{u:03d}.pdf", b"%PDF-1.4\n" + f"{t}/{u}".encode() * 20)
                    for u in range(args.units)
                ],
            )
            for t in range(args.transfers)
        ]
    )
    with ExitStack() as stack:
        live_url = stack.enter_context(postgres_schema()) if args.database == "postgresql" else None
        seconds, ok, others = 0.0, 0, {}
        if not args.reuse:
            with server(base, database_url=live_url) as srv:
                seconds, ok, others = deposit_all(srv.process, sips, clients=4)
        if ok != len(sips):
            result(f"rebuild: deposits failed ({errors_note(others)})")
            return
        units = args.transfers * (args.units + 1)
        offer_dir = data_dir / "offers" / "local" / "data"
        read_metadata(offer_dir)  # warm
        baseline, size = read_metadata(offer_dir)

        target = (
            stack.enter_context(postgres_schema())
            if args.database == "postgresql"
            else f"sqlite:///{base / f'rebuilt-{time.time_ns()}.db'}"
        )
        env = {**os.environ, **xsd_env(), "SAE_DATA_DIR": str(data_dir)}
        if live_url:
            env["SAE_DATABASE_URL"] = live_url
        rebuild_s, peak_kib, done = run_cli(env, "rebuild", "--from", "local", "--database", target)
        if done.returncode != 0:
            result(f"rebuild: FAILED ({done.returncode}): {done.stderr[-500:]}")
            return
        drill = ""
        if args.drill:
            drill_s, drill_kib, done = run_cli(env, "drill")
            drill = (
                f"; sae drill {drill_s:.0f} s (target < 300 s; exit {done.returncode}), "
                f"peak RSS {drill_kib / 1024:.0f} MiB"
            )
        result(
            f"rebuild-{args.database}: {units / rebuild_s:,.0f} units/s ({units:,} units, "
            f"{args.transfers * args.units:,} objects in {rebuild_s:.1f} s; deposited in "
            f"{seconds:.0f} s), peak RSS {peak_kib / 1024:.0f} MiB; baseline reading the "
            f"{size / 2**20:.0f} MiB of metadata files: {baseline:.2f} s, ratio "
            f"{rebuild_s / baseline:.1f} x (target >= 1,000 units/s, <= 300 MB){drill}"
        )


if __name__ == "__main__":
    main()
