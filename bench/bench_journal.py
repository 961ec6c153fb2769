"""Journal benchmarks: one line per figure, each with a ratio to a baseline from the same run.

    .venv/bin/python bench/bench_journal.py [--leaves 1000000] [--database-url URL]

Figures: append rate (events/s, batches of 1,000) against raw hashlib SHA-256 of the same leaves;
inclusion and consistency proof time at the full tree size (target <= 5 ms) against one
indexed primary-key lookup; ``journal verify`` throughput against re-hashing the leaves only.
Default database: a temporary SQLite file (SAE's embedded default).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sae.db import make_engine  # noqa: E402
from sae.journal import merkle  # noqa: E402
from sae.journal.models import Event  # noqa: E402
from sae.journal.service import DbNodes, NewEvent, append_events, tree_size  # noqa: E402
from sae.journal.verification import verify_journal  # noqa: E402
from sae.migrate import upgrade  # noqa: E402

BATCH = 1000


def spec(i: int) -> NewEvent:
    oid = f"00000000-0000-4000-8000-{i:012d}"
    return NewEvent(
        type="ingest.object_stored",
        actor="token:bench:depositor",
        payload={"size": 1000 + i, "producer": "BENCH", "uri": f"Content/file-{i}.pdf"},
        object_id=oid,
        object_digests={oid: hashlib.sha512(str(i).encode()).hexdigest()},
    )


def line(name: str, value: float, unit: str, baseline_name: str, baseline: float) -> None:
    ratio = value / baseline if baseline else float("nan")
    print(
        f"{name}: {value:,.3f} {unit} | baseline {baseline_name}: {baseline:,.3f} {unit} "
        f"| ratio {ratio:.3f}"
    )


def timed(fn: Callable[[], object], repeat: int = 50) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = make_engine(url)
    upgrade(engine)
    n = args.leaves

    # Baseline: hashing leaf-sized messages with nothing else.
    sample = [spec(i) for i in range(20_000)]
    t = time.perf_counter()
    for s in sample:
        hashlib.sha256(b"\x00" + repr(s).encode()).digest()
    hash_rate = len(sample) / (time.perf_counter() - t)

    spent = 0.0
    with Session(engine) as session:
        done = tree_size(session)
    start = done
    while done < n:
        count = min(BATCH, n - done)
        batch = [spec(done + k) for k in range(count)]  # the caller's work, not timed
        t = time.perf_counter()
        with Session(engine) as session, session.begin():
            append_events(session, batch)
        spent += time.perf_counter() - t
        done += count
    append_rate = (done - start) / spent if spent else float("nan")
    line("append rate (batches of 1000)", append_rate, "events/s", "raw sha256", hash_rate)

    with Session(engine) as session:
        size = tree_size(session)
        nodes = DbNodes(session)
        pk_ms = timed(lambda: session.get(Event, 1 + size // 2), repeat=200)
        session.expunge_all()
        inc_ms = timed(lambda: merkle.root_and_inclusion_proof(size // 2 + 7, size, nodes))
        con_ms = timed(lambda: merkle.consistency_proof(size // 3 + 5, size, nodes))
        line(f"inclusion proof at {size:,} leaves", inc_ms, "ms", "one primary-key read", pk_ms)
        line(f"consistency proof at {size:,} leaves", con_ms, "ms", "one primary-key read", pk_ms)

        t = time.perf_counter()
        rows = 0
        for (leaf,) in session.execute(select(Event.leaf).execution_options(yield_per=10_000)):
            merkle.leaf_hash(leaf)
            rows += 1
        rehash_rate = rows / (time.perf_counter() - t)
        t = time.perf_counter()
        report = verify_journal(session, check_objects=False)
        verify_rate = report.events / (time.perf_counter() - t)
        assert report.ok, report.problems[:3]
        line(
            f"journal verify over {report.events:,} events",
            verify_rate,
            "events/s",
            "read + leaf hash only",
            rehash_rate,
        )
    engine.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
