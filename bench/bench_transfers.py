"""Many small transfers: N SIPs of one 100 KiB PDF each, C concurrent clients; transfers/s.

Baseline, same run, same bytes: a plain Python read + SHA-512 + write + fsync of each PDF
(files/s) — the floor of what any archive must do per document. Target (issue #7): at least 50
transfers/s on two cores with PostgreSQL.

    .venv/bin/python bench/bench_transfers.py [--database sqlite|postgresql] [--sips 2000]
        [--clients 8] [--kib 100] [--workers 1] [--witnesses 0]

``--workers`` is ``SAE_WORKERS`` (server processes, on either database): one Python process uses
one core at most, and the server's Python is what limits the rate.

``--witnesses N`` (issue #18: witnessing must not lower this row by more than 5 %) starts N real
``sae witness serve`` processes (``python -m sae.witness``) on the loopback, each trusting the
archive's note key (made before the server starts, as an operator would with ``sae journal
vkey``), and runs the server with a ``SAE_WITNESSES_FILE`` of quorum N: every head sealed during
the run is offered to them by the server's witnessing thread. The line then also gives the heads
each witness co-signed during the run (from its log) and the witnesses' own CPU per transfer —
on this machine they share the server's two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import (
    REPO,
    _cpu_seconds,
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

ORIGIN = "bench.sae.example/journal"


@dataclass
class Witnesses:
    """Running witnesses: their processes, their logs, the witnesses file naming them."""

    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]
    file: Path

    def cosigned(self) -> list[int]:
        """How many checkpoints each witness co-signed so far (its ``witness.cosigned`` lines)."""
        return [log.read_text().count("witness.cosigned") for log in self.logs]

    def cpu_seconds(self) -> float:
        return sum(sum(_cpu_seconds(p.pid)) for p in self.processes)


def _witness(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "500"}
    return subprocess.run(
        [sys.executable, "-m", "sae.witness", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )


@contextmanager
def witnesses(work: Path, count: int) -> Iterator[Witnesses]:
    """``count`` witnesses trusting the archive of ``work/sae-data``, and a witnesses file."""
    from sae.config import load_settings
    from sae.journal.notekey import load_note_key

    # The archive's note key before its first start, as an operator does: the witnesses must
    # trust it before the first head is offered to them.
    log_vkey = load_note_key(load_settings(data_dir=work / "sae-data", origin=ORIGIN)).vkey
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    entries = []
    try:
        for number in range(1, count + 1):
            data = work / f"witness{number}"
            name = f"witness{number}.bench.example/w"
            vkey = _witness("init", "--data", str(data), "--name", name).stdout.split()[-1]
            _witness("trust", "--data", str(data), "--origin", ORIGIN, "--vkey", log_vkey)
            log = work / f"witness{number}.log"
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "sae.witness", "serve", "--data", str(data)]
                        + ["--host", "127.0.0.1", "--port", "0"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "500"},
                    )
                )
            logs.append(log)
            deadline = time.monotonic() + 60
            while not (found := re.search(r"listening on (http://[0-9.]+:\d+)", log.read_text())):
                if time.monotonic() > deadline or processes[-1].poll() is not None:
                    raise RuntimeError(f"witness {number} did not start: {log.read_text()}")
                time.sleep(0.05)
            entries.append({"name": name, "url": found[1], "vkey": vkey})
        file = work / "witnesses.yaml"
        file.write_text(json.dumps({"witnesses": entries, "quorum": count}))
        yield Witnesses(processes, logs, file)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sips", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--witnesses", type=int, default=0)
    args = parser.parse_args()
    work = workdir(f"transfers-{args.database}")
    witnessed = ""
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
        with ExitStack() as stack:
            env = {}
            wit = None
            if args.witnesses:
                wit = stack.enter_context(witnesses(work, args.witnesses))
                env = {"SAE_WITNESSES_FILE": str(wit.file), "SAE_ORIGIN": ORIGIN}
            url = stack.enter_context(postgres_schema()) if args.database == "postgresql" else None
            srv = stack.enter_context(
                server(work, database_url=url, workers=args.workers, extra_env=env)
            )
            cosigned_before = wit.cosigned() if wit else []
            wit_before = wit.cpu_seconds() if wit else 0.0
            before = srv.cpu_seconds()
            wall, ok, others = deposit_all(srv.process, sips, args.clients)
            after = srv.cpu_seconds()
            peak = srv.peak_mib()
            if wit is not None:
                cosigned = [b - a for a, b in zip(cosigned_before, wit.cosigned(), strict=True)]
                wit_cpu = (wit.cpu_seconds() - wit_before) / max(ok, 1) * 1000
                witnessed = (
                    f"; {args.witnesses} witnesses, quorum {args.witnesses}: heads co-signed "
                    f"during the deposits {'/'.join(map(str, cosigned))}, witnesses' CPU "
                    f"{wit_cpu:.2f} ms per transfer"
                )
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
        f"{witnessed or '; no witnesses'}"
    )


if __name__ == "__main__":
    main()
