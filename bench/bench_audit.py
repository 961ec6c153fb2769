"""Fixity audit throughput against ``sha512sum`` over the same bytes; prints one line.

Builds a throw-away SAE (SQLite + one local WORM offer) holding N objects written through
``store_copies``, then times the real audit job (``run_audit``: DB batches, streaming reads,
SHA-512, journal) and ``sha512sum`` over the very same files. The ratio is audit throughput
divided by sha512sum throughput (1.0 = as fast as the coreutils baseline).

    .venv/bin/python bench/bench_audit.py [--objects 64] [--size-mib 4]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sae.catalog.models import DataObject, DataObjectGroup  # noqa: E402
from sae.config import load_settings  # noqa: E402
from sae.db import make_engine, make_sessionmaker, new_id, transaction  # noqa: E402
from sae.ingest.models import Transfer  # noqa: E402
from sae.migrate import upgrade  # noqa: E402
from sae.storage.audit import create_audit, get_audit, run_audit  # noqa: E402
from sae.storage.models import ObjectCopy  # noqa: E402
from sae.storage.offers import default_offers  # noqa: E402
from sae.storage.service import store_copies  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=64)
    parser.add_argument("--size-mib", type=float, default=4.0)
    args = parser.parse_args()
    if shutil.which("sha512sum") is None:
        sys.exit("sha512sum not found (coreutils)")
    size = int(args.size_mib * 1024 * 1024)
    workdir = Path(tempfile.mkdtemp(prefix="sae-bench-audit-"))
    try:
        settings = load_settings(data_dir=workdir / "data")
        settings.data_dir.mkdir(parents=True)
        engine = make_engine(settings.db_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        offer_set = default_offers(settings)
        offers = offer_set.copies()
        with transaction(sessions) as session:
            transfer = Transfer(id=new_id(), status="OK")
            session.add(transfer)
            session.flush()
            group = DataObjectGroup(id=new_id(), transfer_id=transfer.id, sip_id="G")
            session.add(group)
            session.flush()
            for i in range(args.objects):
                object_id = new_id()
                payload = os.urandom(size)
                (copy,) = store_copies(
                    offers, f"objects/{object_id}", io.BytesIO(payload), retain_until=None
                )
                assert copy.sha512 is not None
                session.add(
                    DataObject(
                        id=object_id,
                        transfer_id=transfer.id,
                        group_id=group.id,
                        sip_id=f"BDO-{i}",
                        sha512=copy.sha512,
                        size=size,
                        storage_key=copy.key,
                        status="active",
                    )
                )
                session.flush()
                session.add(
                    ObjectCopy(
                        object_id=object_id,
                        offer=copy.offer,
                        key=copy.key,
                        size=size,
                        sha512=copy.sha512,
                    )
                )
        files = sorted(
            str(p)
            for p in (settings.data_dir / "offers").rglob("*")
            if p.is_file() and "/data/" in str(p)
        )
        total = size * args.objects

        def sha512sum_all() -> None:
            # In command lines of 1,000 files, as xargs would: 10,000 paths exceed ARG_MAX.
            for start in range(0, len(files), 1000):
                subprocess.run(
                    ["sha512sum", *files[start : start + 1000]], check=True, capture_output=True
                )

        # warm the page cache equally for both: the comparison is CPU + I/O path, not disk
        sha512sum_all()

        started = time.perf_counter()
        sha512sum_all()
        baseline = time.perf_counter() - started

        with transaction(sessions) as session:
            audit_id = create_audit(session, offer_set).id
        started = time.perf_counter()
        run_audit(sessions, offer_set, audit_id)
        elapsed = time.perf_counter() - started
        with transaction(sessions) as session:
            audit, problems = get_audit(session, audit_id)
            if audit.status != "done" or audit.checked != args.objects or problems:
                sys.exit(f"audit did not check everything cleanly: {audit.status} {audit.error}")
        engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    mib = total / 1024 / 1024
    print(
        f"bench_audit: {args.objects} objects, {mib:.0f} MiB: audit {mib / elapsed:.1f} MiB/s, "
        f"sha512sum {mib / baseline:.1f} MiB/s, ratio {baseline / elapsed:.2f} "
        "(audit throughput / sha512sum throughput)"
    )


if __name__ == "__main__":
    main()
