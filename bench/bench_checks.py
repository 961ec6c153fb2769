"""What the ingest's checks cost per file on the a3m corpus: PRONOM identification and clamd.

Identification: the CPU time (this thread's) of ``sae.ingest.identify`` on each record's first
and last 128 KiB (what the ingest keeps while it streams a file; 64 KiB too, DROID's window),
against fido's own ``match_formats`` on the same 128 KiB (what SAE's compiled index
replaces), median of three passes over the corpus. Set against the server's CPU per record
when the corpus is deposited as one SIP (``bench_corpus.py``'s measure, taken here in the same
run), the target being <= 10 %.

Antivirus (``--clamd``): the same SIP deposited into a server without clamd and into one with
``SAE_CLAMD_SOCKET`` on a clamd started here with a generated signature database (as the tests
do: the scan's protocol and clamd's parsing of each file, not the official database's
millions of signatures, which make clamd slower still and take 1 GiB of memory).

    .venv/bin/python bench/bench_checks.py [--records 500] [--repeat 3] [--clamd]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from common import BENCH_DIR, SHARED, deposit_all, result, server, sip_of_files, warm, workdir

from sae.ingest import identify
from sae.ingest.hashing import IDENTIFY_BYTES


def cpu_per_file(fn: Callable[[bytes], object], blobs: Sequence[bytes], repeat: int) -> float:
    """Median over ``repeat`` passes of this thread's CPU seconds per file."""
    runs = []
    for _ in range(repeat):
        started = time.thread_time()
        for data in blobs:
            fn(data)
        runs.append((time.thread_time() - started) / len(blobs))
    return statistics.median(runs)


@contextmanager
def clamd() -> Iterator[str]:
    """A clamd on a Unix socket, with one generated hash signature (no download)."""
    base = Path(tempfile.mkdtemp(prefix="clamd-", dir=BENCH_DIR))
    (base / "db").mkdir()
    marker = b"sae bench: not a virus\n"
    md5 = hashlib.md5(marker, usedforsecurity=False).hexdigest()
    (base / "db" / "bench.hdb").write_text(f"{md5}:{len(marker)}:SAE.Bench\n")
    sock = base / "clamd.sock"
    (base / "clamd.conf").write_text(
        f"Foreground yes\nLocalSocket {sock}\nDatabaseDirectory {base / 'db'}\n"
        f"LogFile {base / 'clamd.log'}\nStreamMaxLength 100M\n"
    )
    with (base / "clamd.err").open("wb") as err:
        process = subprocess.Popen(
            ["/usr/sbin/clamd", "-c", str(base / "clamd.conf")],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(sock))
                    s.sendall(b"zPING\0")
                    if s.recv(8).startswith(b"PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("clamd did not start: " + (base / "clamd.err").read_text())
            time.sleep(0.1)
        yield str(sock)
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(base, ignore_errors=True)


def deposit_rate(
    sips: list[list[bytes]], records: int, extra_env: dict[str, str] | None = None
) -> tuple[float, float]:
    """(records/s median, server CPU ms per record) of the measured SIPs after one warm-up."""
    work = workdir("checks")
    try:
        with server(work, extra_env=extra_env) as srv:
            deposit_all(srv.process, sips[0], 1)  # warm-up
            before = srv.cpu_seconds()
            runs = [deposit_all(srv.process, round_, 1) for round_ in sips[1:]]
            after = srv.cpu_seconds()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for _, ok, others in runs:
        if ok != 1 or others:
            raise SystemExit(f"a deposit failed: {others}")
    rate = statistics.median(records / wall for wall, _, _ in runs)
    cpu = (sum(after) - sum(before)) / (records * len(runs)) * 1000
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clamd", action="store_true", help="also deposit with clamd")
    args = parser.parse_args()
    corpus = BENCH_DIR / f"corpus-{args.records}"
    if not (corpus / "records").is_dir():
        subprocess.run(
            [
                sys.executable,
                str(SHARED / "bench" / "make_corpus.py"),
                str(corpus),
                "--records",
                str(args.records),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    files = sorted((corpus / "records").rglob("*.pdf"))
    warm(files)
    blobs = [f.read_bytes() for f in files]

    ident = identify.identifier()
    n = IDENTIFY_BYTES
    # With the file's size, as the ingest calls it (the bytes head and tail share, once).
    ours = cpu_per_file(lambda d: ident.identify(d[:n], d[-n:], len(d)), blobs, args.repeat)
    half = n // 2
    ours_64 = cpu_per_file(
        lambda d: ident.identify(d[:half], d[-half:], len(d)), blobs, args.repeat
    )
    from fido.fido import Fido
    from fido.versions import get_local_versions

    versions = get_local_versions()
    fido = Fido(
        quiet=True,
        handle_matches=lambda *a: None,
        format_files=[versions.pronom_signature, versions.fido_extension_signature],
    )
    big = fido.bufsize
    theirs = cpu_per_file(lambda d: fido.match_formats(d[:big], d[-big:]), blobs, 1)

    named = [(f.name, d) for f, d in zip(files, blobs, strict=True)]

    def rounds(prefix: str) -> list[list[bytes]]:
        return [[sip_of_files(f"{prefix}-{i}", named)] for i in range(args.repeat + 1)]

    rate, cpu = deposit_rate(rounds("BENCH-CHECKS"), args.records)
    share = ours * 1000 / cpu * 100
    line = (
        f"PRONOM identification, a3m corpus ({args.records} one-page PDFs): "
        f"{ours * 1000:.2f} ms CPU per file ({n // 1024} KiB head and tail; {half // 1024} KiB: "
        f"{ours_64 * 1000:.2f} ms; fido's own match_formats on {big // 1024} KiB: "
        f"{theirs * 1000:.2f} ms) "
        f"against the ingest's server CPU of {cpu:.2f} ms per record (one SIP, "
        f"{rate:.0f} records/s, median of {args.repeat}): {share:.0f} % "
        f"(target <= 10 %: {'met' if share <= 10 else 'NOT met'})"
    )
    if args.clamd:
        with clamd() as sock:
            scanned_rate, scanned_cpu = deposit_rate(
                rounds("BENCH-CLAMD"), args.records, {"SAE_CLAMD_SOCKET": sock}
            )
        line += (
            f"; with clamd (generated database): {scanned_rate:.0f} records/s, server CPU "
            f"{scanned_cpu:.2f} ms per record (without: {rate:.0f} records/s)"
        )
    result(line)


if __name__ == "__main__":
    main()
