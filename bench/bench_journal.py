"""Journal benchmarks: one line per figure, each with a ratio to a baseline from the same run.

    .venv/bin/python bench/bench_journal.py [--leaves 1000000] [--database-url URL]
        [--timed-appends N] [--repeat 3] [--workers W] [--skip-verify]

Figures: append rate (events/s, batches of 1,000) against raw hashlib SHA-256 of the same leaves;
inclusion and consistency proof time at the full tree size (target <= 5 ms) against one
indexed primary-key lookup; ``journal verify`` time (target <= 20 s at 1,000,000 events) and
throughput against reading the leaves and hashing them only, each verify run right after its
own baseline run (the machine is shared: the median of ``--repeat`` runs is printed).
Default database: a temporary SQLite file (SAE's embedded default).

A large journal (``--leaves 10000000``): only the first ``--timed-appends`` appends are timed;
the rest is appended untimed by the same ``append_events`` in batches of 50,000 (one
transaction each), and an existing database given with ``--database-url`` is extended, not
rebuilt, so it can be kept between runs. ``--skip-verify`` measures the proofs only.
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

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sae.db import make_engine  # noqa: E402
from sae.journal import merkle  # noqa: E402
from sae.journal.models import Event  # noqa: E402
from sae.journal.service import DbNodes, NewEvent, append_events, tree_size  # noqa: E402
from sae.journal.verification import default_workers, verify_journal  # noqa: E402
from sae.migrate import upgrade  # noqa: E402

BATCH = 1000
BUILD_BATCH = 50_000


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


def timed_ms(fn: Callable[[], object], repeat: int = 50) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def append(engine: Engine, done: int, count: int, batch: int) -> float:
    """Append ``count`` events after ``done`` in batches; return the seconds spent appending."""
    spent = 0.0
    end = done + count
    while done < end:
        size = min(batch, end - done)
        events = [spec(done + k) for k in range(size)]  # the caller's work, not timed
        t = time.perf_counter()
        with Session(engine) as session, session.begin():
            append_events(session, events)
        spent += time.perf_counter() - t
        done += size
        if batch == BUILD_BATCH:
            print(f"  built {done:,} leaves", file=sys.stderr, flush=True)
    return spent


def rehash(engine: Engine) -> tuple[int, float]:
    """Baseline: read every stored leaf and hash it, nothing else."""
    with Session(engine) as session:
        t = time.perf_counter()
        rows = 0
        for (leaf,) in session.execute(select(Event.leaf).execution_options(yield_per=10_000)):
            merkle.leaf_hash(leaf)
            rows += 1
        return rows, time.perf_counter() - t


def verify(engine: Engine, workers: int) -> tuple[int, float, int]:
    """``journal verify`` (objects aside): events, seconds, processes that checked the leaves."""
    with Session(engine) as session:
        t = time.perf_counter()
        report = verify_journal(session, check_objects=False, workers=workers)
        seconds = time.perf_counter() - t
    assert report.ok, report.problems[:3]
    return report.events, seconds, report.workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--timed-appends", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--skip-verify", action="store_true")
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

    with Session(engine) as session:
        done = tree_size(session)
    timed = max(0, min(args.timed_appends, n - done))
    spent = append(engine, done, timed, BATCH)
    append(engine, done + timed, max(0, n - done - timed), BUILD_BATCH)
    if timed:
        line(
            f"append rate (batches of {BATCH})", timed / spent, "events/s", "raw sha256", hash_rate
        )

    with Session(engine) as session:
        size = tree_size(session)
        nodes = DbNodes(session)
        pk_ms = timed_ms(lambda: session.get(Event, 1 + size // 2), repeat=200)
        session.expunge_all()
        inc_ms = timed_ms(lambda: merkle.root_and_inclusion_proof(size // 2 + 7, size, nodes))
        con_ms = timed_ms(lambda: merkle.consistency_proof(size // 3 + 5, size, nodes))
        line(f"inclusion proof at {size:,} leaves", inc_ms, "ms", "one primary-key read", pk_ms)
        line(f"consistency proof at {size:,} leaves", con_ms, "ms", "one primary-key read", pk_ms)

    if not args.skip_verify:
        runs = []
        for _ in range(args.repeat):
            rows, base_s = rehash(engine)
            events, verify_s, used = verify(engine, args.workers)
            runs.append((verify_s, base_s))
        verify_s = statistics.median(v for v, _ in runs)
        base_s = statistics.median(b for _, b in runs)
        spread = f"{min(v for v, _ in runs):.1f}-{max(v for v, _ in runs):.1f} s"
        line(
            f"journal verify over {events:,} events in {verify_s:.1f} s (target <= 20 s; "
            f"{used} {'process' if used == 1 else 'worker processes'}; "
            f"median of {args.repeat} runs: {spread})",
            events / verify_s,
            "events/s",
            "read + leaf hash only",
            rows / base_s,
        )
        rows, base_s = rehash(engine)
        events, verify_s, _ = verify(engine, 1)
        line(
            f"journal verify in one process over {events:,} events in {verify_s:.1f} s",
            events / verify_s,
            "events/s",
            "read + leaf hash only",
            rows / base_s,
        )
    engine.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
