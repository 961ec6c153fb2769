"""Two revisions' servers, interleaved: the same benchmark rows run alternately against each.

Issue #17's budget (ingest no more than 15 % slower than before it) is a ratio between two
revisions; on this shared machine the speed drifts by a third within minutes, so the two are
only comparable when measured in the same minutes, one after the other, several times. Each
round runs every row once per tree, alternating which tree goes first (the run after another
one inherits its deletions: see docs/benchmarks.md, "This machine's filesystem"). The
benchmarks are this tree's scripts (same clients, same SIPs, same result lines); only ``sae
serve`` comes from each tree (``SAE_BENCH_TREE``, bench/common.py).

    git worktree add /work/wt-base ad0ef5c
    .venv/bin/python bench/compare_trees.py /work/wt-base . [--rounds 3]
        [--row transfers-sqlite --row corpus-one ...] [--sips 800] [--quiet 65] [--strace]

More than two trees run in turn the same way (the ratio is the last one's to the first's).
Printed per row: each run's figure (transfers/s or records/s) and the server's CPU per
transfer or record (user + system, from /proc), then the medians and their ratios.
``--strace`` runs one more deposit of the transfers rows per tree under ``strace -f`` (slow:
its figures are not timings) and prints the system calls per transfer: files created, fsyncs,
xattr calls, every call of the file and descriptor families; counts do not depend on the
machine's other load.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from threads_cpu import by_thread

HERE = Path(__file__).resolve().parent

#: row -> (script, arguments): bench/run_all.py's rows of issue #17's budget, and SQLite.
ROWS: dict[str, tuple[str, list[str]]] = {
    "transfers-sqlite": ("bench_transfers.py", ["--database", "sqlite"]),
    "transfers-postgresql": ("bench_transfers.py", ["--database", "postgresql"]),
    "corpus-one": ("bench_corpus.py", ["--mode", "one-sip"]),
    "corpus-many-2": ("bench_corpus.py", ["--mode", "many-sips", "--workers", "2"]),
}
DEFAULT_ROWS = ["transfers-sqlite", "transfers-postgresql", "corpus-one", "corpus-many-2"]

_RATE = re.compile(r": ([0-9.]+) (transfers|records)/s")
_CPU = re.compile(
    r"server CPU ([0-9.]+) ms per (?:transfer|record) \(user ([0-9.]+), system ([0-9.]+)\)"
)
_ACCEPTED = re.compile(r"\((\d+) of (\d+) one-PDF SIPs")


def run(
    tree: Path,
    row: str,
    sips: int | None,
    strace: str | None = None,
    profile: Path | None = None,
) -> str:
    """One run of ``row`` against ``tree``'s server; its RESULT line."""
    script, args = ROWS[row]
    if sips is not None and script == "bench_transfers.py":
        args = [*args, "--sips", str(sips)]
    env = {**os.environ, "SAE_BENCH_TREE": str(tree)}
    env.pop("SAE_BENCH_PYSPY", None)
    if strace:
        env["SAE_BENCH_STRACE"] = strace
    if profile is not None:
        env["SAE_BENCH_PYSPY"] = str(profile)
    done = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{row} on {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return lines[-1]


def window_units(row: str, line: str, sips: int) -> int:
    """Records or transfers deposited in the benchmark's CPU window."""
    if row.startswith("transfers"):
        accepted = _ACCEPTED.search(line)
        return int(accepted[1]) if accepted else sips
    return 1500  # bench_corpus: three measured deposits of the 500 records


def figures(line: str) -> tuple[float, float | None, str]:
    """(rate, server CPU ms per unit or None, 'user+system' text) of a RESULT line."""
    rate = _RATE.search(line)
    assert rate is not None, line
    cpu = _CPU.search(line)
    if cpu is None:
        return float(rate[1]), None, "-"
    return float(rate[1]), float(cpu[1]), f"{float(cpu[2]):.2f}+{float(cpu[3]):.2f}"


def syscall_counts(path: Path) -> tuple[Counter[str], Counter[str]]:
    """From an ``strace -f -C`` file: (calls per system call from its summary, what the trace
    shows: files created, links, unlinks, renames, directories made)."""
    summary: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    in_summary = False
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("% time"):
            in_summary = True
            continue
        if in_summary:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                summary[parts[-1]] += int(parts[3])
            continue
        call = line.split("(", 1)[0].split()[-1] if "(" in line else ""
        if call in ("openat", "open") and "O_CREAT" in line and "= -1" not in line:
            seen["files created (open O_CREAT)"] += 1
        elif call in ("link", "linkat", "unlink", "unlinkat", "rename", "renameat", "mkdir"):
            if "= -1" not in line:
                seen[f"{call} (succeeded)"] += 1
    return summary, seen


def strace_round(trees: list[Path], sips: int, row: str) -> None:
    """One traced run of ``row`` per tree; the calls per accepted transfer, side by side."""
    table: dict[str, list[float]] = {}
    for number, tree in enumerate(trees):
        with tempfile.TemporaryDirectory(prefix="sae-strace-") as tmp:
            out = Path(tmp) / "strace.txt"
            line = run(tree, row, sips, strace=str(out))
            accepted = _ACCEPTED.search(line)
            ok = int(accepted[1]) if accepted else sips
            summary, seen = syscall_counts(out)
        for name, count in [*seen.items(), *summary.items()]:
            table.setdefault(name, [0.0] * len(trees))[number] = count / max(ok, 1)
    print(f"\n{row}: system calls per transfer ({sips} SIPs under strace -f)")
    print("| call | " + " | ".join(str(t) for t in trees) + " |")
    print("|---|" + "---|" * len(trees))
    interesting = ("files created", "fsync", "fdatasync", "link", "unlink", "rename", "mkdir")
    first = sorted(table, key=lambda n: (not n.startswith(interesting), -max(table[n]), n))
    for name in first:
        values = table[name]
        if max(values) >= 0.05:
            print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "trees", nargs="+", type=Path, help="the base tree first, the new one last (two or more)"
    )
    parser.add_argument("--row", action="append", choices=sorted(ROWS), dest="rows")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sips", type=int, default=800, help="transfers rows: SIPs per run")
    parser.add_argument(
        "--quiet", type=float, default=0, help="seconds of quiet (after a sync) before each run"
    )
    parser.add_argument("--strace", action="store_true", help="also count system calls")
    parser.add_argument(
        "--threads",
        type=Path,
        metavar="DIR",
        help="profile each run's server with py-spy (SAE_BENCH_PYSPY_BIN) into DIR and print "
        "its CPU by thread; the tables then give the CPU without the background text reader",
    )
    args = parser.parse_args()
    if len(args.trees) < 2:
        parser.error("give two trees or more")
    trees = [tree.resolve() for tree in args.trees]
    rows = args.rows or DEFAULT_ROWS
    results: dict[str, list[list[tuple[float, float | None, str]]]] = {
        row: [[] for _ in trees] for row in rows
    }
    #: Server CPU ms per unit without the background text reader's thread (with --threads).
    without: dict[str, list[list[float]]] = {row: [[] for _ in trees] for row in rows}
    for round_no in range(args.rounds):
        order = list(range(len(trees)))
        if round_no % 2:
            order.reverse()  # the run that comes second inherits the first one's deletions
        for row in rows:
            for number in order:
                if args.quiet:
                    os.sync()
                    time.sleep(args.quiet)
                profile = None
                if args.threads is not None:
                    args.threads.mkdir(parents=True, exist_ok=True)
                    profile = args.threads / f"{row}-{number}-{round_no + 1}.txt"
                line = run(trees[number], row, args.sips, profile=profile)
                results[row][number].append(figures(line))
                stamp = time.strftime("%H:%M:%S", time.gmtime())
                print(f"{stamp} round {round_no + 1} {row} {trees[number]}: {line}", flush=True)
                if profile is not None:
                    units = window_units(row, line, args.sips)
                    cpu = by_thread(profile)
                    text = cpu.get("sae-text", 0.0)
                    without[row][number].append(1000 * (sum(cpu.values()) - text) / units)
                    shares = ", ".join(
                        f"{name} {1000 * seconds / units:.2f}"
                        for name, seconds in cpu.most_common()
                        if seconds > 0.0005
                    )
                    print(f"    CPU ms per unit by thread: {shares}", flush=True)
    for row in rows if args.rounds else []:
        unit = "transfers/s" if row.startswith("transfers") else "records/s"
        print(f"\n{row}: {unit}; server CPU ms per transfer or record (user+system)")
        print(
            "| tree | " + " | ".join(f"round {n + 1}" for n in range(args.rounds)) + " | median |"
        )
        print("|---|" + "---|" * (args.rounds + 1))
        medians = []
        for number, tree in enumerate(trees):
            runs = results[row][number]
            rate = statistics.median(r for r, _, _ in runs)
            cpus = [c for _, c, _ in runs if c is not None]
            cpu = statistics.median(cpus) if cpus else None
            medians.append((rate, cpu))
            cells = [f"{r:.1f}; {c:.2f} ({split})" if c else f"{r:.1f}" for r, c, split in runs]
            median = f"{rate:.1f}; {cpu:.2f}" if cpu else f"{rate:.1f}"
            print(f"| {tree} | " + " | ".join(cells) + f" | {median} |")
        (base_rate, base_cpu), (new_rate, new_cpu) = medians[0], medians[-1]
        ratio = f"rate {100 * (new_rate / base_rate - 1):+.0f} %"
        if base_cpu and new_cpu:
            ratio += f", server CPU {100 * (new_cpu / base_cpu - 1):+.0f} %"
        print(f"last tree against the first (medians): {ratio}")
        if args.threads is not None:
            cells = []
            for number, tree in enumerate(trees):
                values = without[row][number]
                cells.append(
                    f"{tree}: "
                    + " / ".join(f"{v:.2f}" for v in values)
                    + f" (median {statistics.median(values):.2f})"
                )
            base, new = (statistics.median(without[row][n]) for n in (0, len(trees) - 1))
            print(
                "server CPU without the text reader (sae-text), ms per unit: "
                + "; ".join(cells)
                + f"; last against first {100 * (new / base - 1):+.0f} %"
            )
    if args.strace:
        for row in rows:
            if row.startswith("transfers"):
                strace_round(trees, min(args.sips, 200), row)


if __name__ == "__main__":
    main()
