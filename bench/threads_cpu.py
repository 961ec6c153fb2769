"""The server's CPU in a benchmark's window, by thread, from a profiled run.

    SAE_BENCH_PYSPY=/tmp/p.txt SAE_BENCH_PYSPY_BIN=/tmp/pyspy/bin/py-spy \\
        .venv/bin/python bench/bench_corpus.py --mode one-sip
    .venv/bin/python bench/threads_cpu.py /tmp/p.txt 1500

``/tmp/p.txt`` is py-spy's raw profile (it names each thread id), ``/tmp/p.txt.threads.json``
each thread's CPU at each call of ``Server.cpu_seconds`` (bench/common.py); the second argument
the records or transfers of the window (between the first two calls). Printed: CPU ms per
record by thread name (the thread pools' threads summed under their name), from /proc, not
from the samples.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path


def main() -> None:
    profile, units = Path(sys.argv[1]), int(sys.argv[2])
    names: dict[int, str] = {}
    thread = re.compile(r"thread \((\d+)\): ([^;]+)")
    with profile.open() as lines:
        for line in lines:
            found = thread.search(line)
            if found:
                names[int(found[1])] = re.sub(r"_\d+$", "", found[2].strip())
    marks = json.loads(Path(str(profile) + ".threads.json").read_text())
    first, second = ({int(k): v for k, v in mark.items()} for mark in marks[:2])
    by_name: Counter[str] = Counter()
    for tid, cpu in second.items():
        by_name[names.get(tid, "(unnamed)")] += cpu - first.get(tid, 0.0)
    total = sum(by_name.values())
    print(f"{profile.name}: server CPU {1000 * total / units:.2f} ms per unit in the window")
    for name, cpu in by_name.most_common():
        if cpu > 0:
            print(f"  {1000 * cpu / units:7.2f} ms  {100 * cpu / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
