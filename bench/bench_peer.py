"""The peer, measured in the same run: a3m (lightweight Archivematica) on the 500-record corpus.

Runs ``../shared/bench/peer_a3m.sh N MODE`` (first with ``SETUP=1`` when its venv is missing:
that installs a3m from PyPI and the Debian tools it calls) and prints its records/s. The figures
published in ``../shared/bench/README.md`` (2.35 records/s full, 7.5 minimal) came from another
day on this kind of machine; the same run on the same machine is what a ratio needs: the a3m
figure moves with the machine as much as SAE's does (seen: 213 s one day, 87 s another, for the
same 500 records). Then a3m on one record, ``--single-runs`` times: its cost per transfer, the
peer's side of "500 SIPs of one record" (a3m is not run 500 times: 500 x that cost, taken from
its engine window, which is the figure most favourable to it). ``bench_corpus.py`` reads this
result from ``bench/results/peer-a3m.json``.

    .venv/bin/python bench/bench_peer.py [--records 500] [--mode full|minimal] [--single-runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from common import BENCH_DIR, SHARED, result, settle

A3M_VENV = Path(os.environ.get("A3M_VENV", "/tmp/a3mvenv"))
LINE = re.compile(r"RESULT a3m (\w+) N=(\d+) objects=(\d+) .*?: ([\d.]+) s wall")
ENGINE = re.compile(r"engine window ([\d.]+) s")


def run_peer(records: int, mode: str) -> tuple[re.Match[str], str]:
    """One ``peer_a3m.sh`` run: its RESULT line, parsed, and the line itself."""
    script = SHARED / "bench" / "peer_a3m.sh"
    env = {**os.environ, "WORK": str(BENCH_DIR / "peer-a3m")}
    if not (A3M_VENV / "bin" / "a3m").is_file():
        env["SETUP"] = "1"
    settle()
    proc = subprocess.run(
        ["bash", str(script), str(records), mode],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = LINE.search(proc.stdout)
    if proc.returncode != 0 or found is None or "FAILED" in proc.stdout:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        print(f"peer_a3m.sh failed (exit {proc.returncode}): {' / '.join(tail)}", file=sys.stderr)
        sys.exit(1)
    line = proc.stdout[found.start() :].splitlines()[0].removeprefix("RESULT ")
    return found, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--mode", choices=["full", "minimal"], default="full")
    parser.add_argument("--single-runs", type=int, default=3)
    args = parser.parse_args()
    found, line = run_peer(args.records, args.mode)
    mode, records, wall = found.group(1), int(found.group(2)), float(found.group(4))
    # One transfer of one record, three times: what a3m costs per transfer, for the corpus as
    # 500 SIPs of one record. Its engine window leaves out the start of the command and its
    # database's migrations (a server would pay them once): the per-transfer rate it gives is
    # the most favourable to a3m.
    singles = []
    for _ in range(args.single_runs):
        one, one_line = run_peer(1, args.mode)
        engine = ENGINE.search(one_line)
        singles.append((float(one.group(4)), float(engine.group(1)) if engine else 0.0))
    single = ""
    if singles:
        walls = sorted(w for w, _ in singles)
        fastest = min(e for _, e in singles) or walls[0]
        single = (
            f"; one transfer of one record: {walls[len(walls) // 2]:.1f} s wall (median of "
            f"{len(walls)}), {fastest:.2f} s in its engine: {1 / fastest:.2f} records/s as one "
            "transfer after another"
        )
    # The machine-readable part first (bench_corpus.py parses it), then a3m's own line.
    result(
        f"a3m {mode}: {records / wall:.2f} records/s ({records} records in {wall:.1f} s, "
        f"measured now; published: 2.35/s full, 7.5/s minimal){single} | {line}"
    )


if __name__ == "__main__":
    main()
