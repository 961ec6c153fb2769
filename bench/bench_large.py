"""Large object: deposit of one 2 GiB file; throughput against ``sha512sum`` + ``cp`` of the
same bytes, and the server's peak RSS (target <= 300 MiB whatever the size: stream, never
buffer). Target (issue #7): ingest >= 0.7 x the (sha512sum + cp) throughput.

    .venv/bin/python bench/bench_large.py [--mib 2048] [--no-verify]

SAE's time is the client's wall time from the first byte sent to the 201, over the size of the
file; the SIP is a zip with the file stored (not deflated), streamed from disk by the client.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

from common import Depositor, errors_note, result, server, timed, workdir

from tests.crash.harness import download_sha512
from tests.sipfactory import FileSpec, SipSpec, UnitSpec, manifest

CHUNK = 16 << 20


def make_file(path: Path, size: int) -> str:
    """Pseudo-random bytes (incompressible, like a scan or a video); returns the SHA-512."""
    digest = hashlib.sha512()
    seed = hashlib.sha512(b"sae-bench-large").digest()
    block = (seed * (CHUNK // len(seed) + 1))[:CHUNK]
    with path.open("wb") as fh:
        written = 0
        counter = 0
        while written < size:
            # Cheap but non-repeating: a fresh 64-byte header on each 16 MiB block.
            piece = hashlib.sha512(counter.to_bytes(8, "big")).digest() + os.urandom(4096)
            data = (piece + block[len(piece) :])[: min(CHUNK, size - written)]
            fh.write(data)
            digest.update(data)
            written += len(data)
            counter += 1
    return digest.hexdigest()


def make_sip(path: Path, source: Path, size: int, sha512: str) -> None:
    uri = "Content/enregistrement-conseil-municipal.bin"
    spec = SipSpec(
        message_id="BENCH-LARGE-1",
        producer="BENCH",
        transferring="BENCH",
        files=[FileSpec(uri=uri, data=b"", digest=sha512, size=size, mime=None, in_zip=False)],
        units=[UnitSpec(id="AU-1", title="Séance du conseil (enregistrement)", files=[0])],
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("manifest.xml", manifest(spec))
        zf.write(source, uri)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=2048)
    parser.add_argument("--no-verify", action="store_true", help="skip the download check")
    args = parser.parse_args()
    size = args.mib << 20
    work = workdir("large")
    try:
        source = work / "large.bin"
        sha = make_file(source, size)
        sip = work / "large-sip.zip"
        make_sip(sip, source, size, sha)
        # Baseline on the same bytes, from the page cache like SAE's run (warm once). Each
        # contender starts with no dirty pages (sync), so that none pays for another's writes.
        subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)
        os.sync()
        t_sha = timed(
            lambda: subprocess.run(["sha512sum", str(source)], capture_output=True, check=True)
        )
        os.sync()
        t_cp = timed(lambda: subprocess.run(["cp", str(source), str(work / "copy")], check=True))
        (work / "copy").unlink()
        # A plain cp returns once the bytes are in the page cache (seen here: 430 MiB/s to 3.6
        # GiB/s from one run to the next); SAE answers once its copy is on disk. Given beside
        # the target's ratio: cp followed by an fsync of the copy (coreutils `sync FILE`).
        os.sync()
        t_cp_sync = timed(
            lambda: (
                subprocess.run(["cp", str(source), str(work / "copy")], check=True),
                subprocess.run(["sync", str(work / "copy")], check=True),
            )
        )
        (work / "copy").unlink()
        base = args.mib / (t_sha + t_cp)
        base_durable = args.mib / (t_sha + t_cp_sync)
        subprocess.run(["cat", str(sip)], stdout=subprocess.DEVNULL, check=True)
        os.sync()
        others: dict[int, int] = {}
        with server(work) as srv:
            idle = srv.peak_mib()
            with srv.process.client(timeout=3600) as c, sip.open("rb") as body:
                started = time.perf_counter()
                with Depositor(srv.process, timeout=3600) as depositor:
                    status, reply = depositor.post(body, sip.stat().st_size)
                wall = time.perf_counter() - started
                if status != 201:
                    others[status] = 1
                peak_ingest = srv.peak_mib()
                download = ""
                if status == 201 and isinstance(reply, dict) and not args.no_verify:
                    object_id = reply["objects"][0]["id"]
                    started = time.perf_counter()
                    status, got, _ = download_sha512(c, object_id)
                    seconds = time.perf_counter() - started
                    ok = "SHA-512 ok" if (status, got) == (200, sha) else f"MISMATCH {status}"
                    download = f"; download {args.mib / seconds:.0f} MiB/s ({ok})"
            peak = srv.peak_mib()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = args.mib / wall
    result(
        f"large object: {rate:.0f} MiB/s ingest of one {args.mib} MiB file in {wall:.1f} s "
        f"({errors_note(others)}); baseline sha512sum + cp {base:.0f} MiB/s "
        f"(sha512sum {args.mib / t_sha:.0f} MiB/s, cp {args.mib / t_cp:.0f} MiB/s); "
        f"ratio {rate / base:.2f} (target >= 0.7: {'met' if rate / base >= 0.7 else 'NOT met'}); "
        f"against sha512sum + cp + fsync of the copy {base_durable:.0f} MiB/s, ratio "
        f"{rate / base_durable:.2f}; "
        f"server peak RSS {peak_ingest:.0f} MiB during ingest, {peak:.0f} MiB overall "
        f"(idle {idle:.0f}; target <= 300: {'met' if peak <= 300 else 'NOT met'}){download}"
    )


if __name__ == "__main__":
    main()
