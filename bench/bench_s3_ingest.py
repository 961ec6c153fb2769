"""Ingest throughput to S3 (Ceph RGW, Object Lock) vs a plain multipart upload of the same bytes.

One SIP holding one large file is ingested by SAE's pipeline with a single S3 offer (the bytes
are read from the zip, hashed, uploaded, locked in COMPLIANCE/GOVERNANCE, the lock read back,
the object read back and its SHA-512 checked, the catalogue and journal written); the baseline
is the same client (minio) uploading the same bytes with ``put_object`` (multipart), nothing
else. Starts its own Ceph RGW (root, Debian radosgw) unless ``SAE_TEST_S3_ENDPOINT`` names one.
Prints one RESULT line. Target of issue #5: ratio >= 0.8.

The line also gives, for where the time goes, ``S3Offer.put`` alone on the same bytes (read
from the file, hashed on the way, read back and checked, locked, lock read back) and the time a
SHA-512 of the whole SIP takes alone (``service.ingest`` hashes the SIP in a thread of its own,
beside the storing, when its caller, unlike the HTTP API, has not hashed it while receiving it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import REPO, SHARED, result, workdir

from sae.auth.service import SYSTEM
from sae.config import load_settings
from sae.ingest import service
from sae.runtime import Runtime
from sae.storage.s3 import S3Offer
from tests.sipfactory import FileSpec, SipSpec, UnitSpec, manifest

TOOLS = SHARED / "tools"
CORES = os.cpu_count() or 1


def cpu_seconds() -> float:
    """CPU time the whole machine has spent working (every process, Ceph's too), from /proc/stat;
    time the hypervisor gave to others (steal) is not counted."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@contextmanager
def ceph() -> Iterator[tuple[str, str, str]]:
    given = os.environ.get("SAE_TEST_S3_ENDPOINT")
    if given:
        yield (
            given,
            os.environ.get("SAE_TEST_S3_ACCESS_KEY", "testaccess"),
            os.environ.get("SAE_TEST_S3_SECRET_KEY", "testsecret12345"),
        )
        return
    import socket

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    directory = Path(tempfile.mkdtemp(prefix="sae-bceph-", dir="/tmp"))
    port = free()
    env = {
        **os.environ,
        "CEPH_RGW_DIR": str(directory),
        "RGW_PORT": str(port),
        "MON_PORT": str(free()),
        "MEMSTORE_BYTES": str(3 * 1024**3),
        "S3_ACCESS_KEY": "testaccess",
        "S3_SECRET_KEY": "testsecret12345",
    }
    subprocess.run(
        [str(TOOLS / "start-ceph-rgw.sh")], env=env, check=True, capture_output=True, timeout=240
    )
    try:
        yield f"http://127.0.0.1:{port}", "testaccess", "testsecret12345"
    finally:
        subprocess.run(
            [str(TOOLS / "stop-ceph-rgw.sh")],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    work = workdir("s3-ingest")
    payload = work / "object.bin"
    with payload.open("wb") as fh:
        for _ in range(args.mib):
            fh.write(os.urandom(1024 * 1024))
    size = payload.stat().st_size
    spec = SipSpec(
        message_id=f"S3-{uuid.uuid4()}",
        files=[FileSpec(uri="Content/object.bin", data=b"", mime=None)],
        units=[UnitSpec(id="u", title="objet volumineux", files=[0])],
    )
    # The manifest needs the real digest and size: computed from the file, not held in memory.
    digest = hashlib.sha512()
    with payload.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    spec.files[0].digest = digest.hexdigest()
    spec.files[0].size = size
    sip = work / "sip.zip"
    with zipfile.ZipFile(sip, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("manifest.xml", manifest(spec))
        zf.write(payload, "Content/object.bin")

    with ceph() as (endpoint, access, secret):
        offer = S3Offer(
            "bench-s3",
            endpoint=endpoint,
            bucket=f"sae-bench-{uuid.uuid4().hex[:8]}",
            access_key=access,
            secret_key=secret,
            region="default",
            quarantine_days=1,
            create_bucket=True,
        )
        offer.check()  # creates the bucket with Object Lock, as at startup
        client = offer.client  # the same minio client SAE uses
        plain_bucket = f"plain-{uuid.uuid4().hex[:8]}"
        client.make_bucket(plain_bucket)
        # Best of two plain uploads (the first also warms the gateway): a fair baseline.
        timings = []
        for attempt in range(2):
            t = time.perf_counter()
            busy_before = cpu_seconds()
            with payload.open("rb") as fh:
                client.put_object(
                    plain_bucket,
                    f"object-{attempt}.bin",
                    fh,
                    length=size,
                    part_size=offer.part_size,
                )
            timings.append((time.perf_counter() - t, cpu_seconds() - busy_before))
        plain_wall, plain_cpu = min(timings)
        plain = size / plain_wall / 2**20

        data = work / "sae-data"
        runtime = Runtime.open(load_settings(data_dir=data, seda_xsd_dir=SHARED / "seda-xsd"))
        env = service.IngestEnv(settings=runtime.settings, offers=[offer])
        t = time.perf_counter()
        busy_before = cpu_seconds()
        with runtime.sessions() as session:
            outcome = service.ingest(session, env, SYSTEM, sip)
            session.commit()
        elapsed = time.perf_counter() - t
        sae_cpu = cpu_seconds() - busy_before
        runtime.close()
        assert outcome.accepted, outcome.transfer.errors
        sae = size / elapsed / 2**20

        t = time.perf_counter()
        with payload.open("rb") as fh:
            offer.put("bench/put-alone", fh, retain_until=None)
        put_alone = size / (time.perf_counter() - t) / 2**20
        t = time.perf_counter()
        sip_digest = hashlib.sha512()
        with sip.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                sip_digest.update(chunk)
        sip_hash = time.perf_counter() - t
    result(
        f"s3 ingest: {sae:.0f} MiB/s for one {size // 2**20} MiB object to Ceph RGW with Object "
        f"Lock (upload, lock read back, object read back and SHA-512 checked, catalogued, "
        f"journaled); baseline plain multipart put_object with the same client {plain:.0f} "
        f"MiB/s; ratio {sae / plain:.2f} (target >= 0.8); S3Offer.put alone {put_alone:.0f} "
        f"MiB/s (ratio {put_alone / plain:.2f}); SHA-512 of the whole SIP alone {sip_hash:.2f} s "
        f"(ingest hashes it in a thread beside the storing); CPU of the whole machine (Ceph "
        f"included): baseline {plain_cpu:.2f} s in {plain_wall:.2f} s ({plain_cpu / plain_wall:.1f}"
        f" of {CORES} cores), SAE {sae_cpu:.2f} s in {elapsed:.2f} s "
        f"({sae_cpu / elapsed:.1f} of {CORES})"
    )


if __name__ == "__main__":
    _ = REPO
    main()
