"""The peer, measured in the same run: a3m (lightweight Archivematica) on the 500-record corpus.

Runs ``../shared/bench/peer_a3m.sh N MODE`` (first with ``SETUP=1`` when its venv is missing:
that installs a3m from PyPI and the Debian tools it calls) and prints its records/s. The figures
published in ``../shared/bench/README.md`` (2.35 records/s full, 7.5 minimal) came from another
day on this kind of machine; the same run on the same machine is what a ratio needs: the a3m
figure moves with the machine as much as SAE's does (seen: 213 s one day, 87 s another, for the
same 500 records). ``bench_corpus.py`` reads this result from ``bench/results/peer-a3m.json``.

    .venv/bin/python bench/bench_peer.py [--records 500] [--mode full|minimal]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--mode", choices=["full", "minimal"], default="full")
    args = parser.parse_args()
    script = SHARED / "bench" / "peer_a3m.sh"
    env = {**os.environ, "WORK": str(BENCH_DIR / "peer-a3m")}
    if not (A3M_VENV / "bin" / "a3m").is_file():
        env["SETUP"] = "1"
    settle()
    proc = subprocess.run(
        ["bash", str(script), str(args.records), args.mode],
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
    mode, records, wall = found.group(1), int(found.group(2)), float(found.group(4))
    # The machine-readable part first (bench_corpus.py parses it), then a3m's own line.
    result(
        f"a3m {mode}: {records / wall:.2f} records/s ({records} records in {wall:.1f} s, "
        f"measured now; published: 2.35/s full, 7.5/s minimal) | "
        f"{found.group(0).removeprefix('RESULT ')}"
        f"{proc.stdout[found.end() :].splitlines()[0] if proc.stdout[found.end() :] else ''}"
    )


if __name__ == "__main__":
    main()
