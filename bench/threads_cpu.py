"""The server's CPU in a benchmark's window, by thread, from a profiled run.

    SAE_BENCH_PYSPY=/tmp/p.txt SAE_BENCH_PYSPY_BIN=/tmp/pyspy/bin/py-spy \\
        .venv/bin/python bench/bench_corpus.py --mode one-sip
    .venv/bin/python bench/threads_cpu.py /tmp/p.txt 1500

``/tmp/p.txt`` is py-spy's raw profile (it names each thread id), ``/tmp/p.txt.threads.json``
each thread's CPU at each call of ``Server.cpu_seconds`` (bench/common.py); the second argument
the records or transfers of the window (between the first two calls). Printed: CPU ms per
record by thread name, from /proc, not from the samples; the threads of a pool summed under
their name, and the threads that ended within the window (a deposit's storing pool, its
trailing hash) as one line.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

ENDED = "(threads ended in the window: sae-store, sae-trailing-hash…)"


def by_thread(profile: Path) -> Counter[str]:
    """CPU seconds of the window by thread name."""
    names: dict[str, str] = {}
    thread = re.compile(r"thread \((\d+)\): ([^;]+)")
    with profile.open() as lines:
        for line in lines:
            found = thread.search(line)
            if found:
                names[found[1]] = re.sub(r"_\d+$", "", found[2].strip())
    marks = json.loads(Path(str(profile) + ".threads.json").read_text())
    first, second = marks[0], marks[1]
    found_cpu: Counter[str] = Counter()
    for tid, cpu in second.items():
        if tid != "processes":
            found_cpu[names.get(tid, "(unnamed: never sampled busy)")] += cpu - first.get(tid, 0.0)
    total = second["processes"] - first["processes"]
    found_cpu[ENDED] += total - sum(found_cpu.values())
    return found_cpu


def main() -> None:
    profile, units = Path(sys.argv[1]), int(sys.argv[2])
    cpu = by_thread(profile)
    total = sum(cpu.values())
    print(f"{profile.name}: server CPU {1000 * total / units:.2f} ms per unit in the window")
    for name, seconds in cpu.most_common():
        if abs(seconds) > 0.0005:
            print(f"  {1000 * seconds / units:7.2f} ms  {100 * seconds / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
