"""Ingest throughput to S3 (Ceph RGW, Object Lock) vs a plain multipart upload of the same bytes.

One SIP holding one large file is ingested by SAE's pipeline with a single S3 offer (the bytes
are read from the zip, hashed on the way — SHA-512 of the whole, SHA-256 of each part, which
signs the part — uploaded, read back and compared part by part, locked in
COMPLIANCE/GOVERNANCE, the lock read back, the catalogue and journal written); the baseline is
the same client (minio) uploading the same bytes with ``put_object`` (multipart), nothing else.
Both run ``--rounds`` times, alternating; the best of each is compared. Starts its own Ceph RGW
(root, Debian radosgw) unless ``SAE_TEST_S3_ENDPOINT`` names one. Prints one RESULT line.
Target of issue #5: ratio >= 0.8.

``--split`` runs Ceph on the last CPU and the client (baseline and SAE alike) on the others:
the stand-in for what production has (the offers are S3 services at other sites, on machines
of their own). Without it, Ceph and the client share every CPU, and whatever SAE adds to the
upload (two SHA-512 of the bytes: the SIP's and the object's) is taken from Ceph's share.

The line also gives, for where the time goes, ``S3Offer.put`` alone on the same bytes and the
time a SHA-512 of the whole SIP takes alone (``service.ingest`` hashes the SIP in a thread of
its own, beside the storing, when its caller, unlike the HTTP API, has not hashed it while
receiving it).
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
def ceph(cpus: str | None = None, memory: int = 3 * 1024**3) -> Iterator[tuple[str, str, str]]:
    """A Ceph RGW of its own (``memory`` bytes of object data), on the given CPUs (a
    ``taskset`` list) when ``cpus`` is set."""
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
        "MEMSTORE_BYTES": str(memory),
        "S3_ACCESS_KEY": "testaccess",
        "S3_SECRET_KEY": "testsecret12345",
    }
    pin = ["taskset", "-c", cpus] if cpus else []
    subprocess.run(
        [*pin, str(TOOLS / "start-ceph-rgw.sh")],
        env=env,
        check=True,
        capture_output=True,
        timeout=240,
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
    parser.add_argument("--rounds", type=int, default=3, help="plain uploads and ingests, each")
    parser.add_argument(
        "--split",
        action="store_true",
        help="run Ceph on the last CPU and the client (baseline and SAE) on the others, as a "
        "stand-in for an S3 service on machines of its own (production: the offers are remote)",
    )
    args = parser.parse_args()
    if args.split and CORES < 2:
        parser.error("--split needs at least two CPUs")
    if args.split and os.environ.get("SAE_TEST_S3_ENDPOINT"):
        parser.error("--split places the benchmark's own Ceph; a given endpoint is remote already")
    work = workdir("s3-ingest")
    payload = work / "object.bin"
    with payload.open("wb") as fh:
        for _ in range(args.mib):
            fh.write(os.urandom(1024 * 1024))
    size = payload.stat().st_size
    # The manifest needs the real digest and size: computed from the file, not held in memory.
    digest = hashlib.sha512()
    with payload.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    sips = [_sip(work / f"sip-{n}.zip", payload, digest.hexdigest()) for n in range(args.rounds)]

    ceph_cpus = str(CORES - 1) if args.split else None
    # Every object stays (locked): a warm-up, the plain uploads, the ingests, the put alone.
    memory = max(3 * 1024**3, (2 * args.rounds + 3) * size + 1024**3)
    with ceph(ceph_cpus, memory) as (endpoint, access, secret):
        if args.split:
            os.sched_setaffinity(0, set(range(CORES - 1)))  # threads started later inherit it
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
        # The same minio client SAE uses: its put_object is minio's own (SAE's subclass only
        # changes requests that bring the SHA-256 of their body).
        client = offer.client
        plain_bucket = f"plain-{uuid.uuid4().hex[:8]}"
        client.make_bucket(plain_bucket)

        def plain_upload(name: str) -> tuple[float, float]:
            t = time.perf_counter()
            busy_before = cpu_seconds()
            with payload.open("rb") as fh:
                client.put_object(plain_bucket, name, fh, length=size, part_size=offer.part_size)
            return time.perf_counter() - t, cpu_seconds() - busy_before

        data = work / "sae-data"
        runtime = Runtime.open(load_settings(data_dir=data, seda_xsd_dir=SHARED / "seda-xsd"))
        env = service.IngestEnv(settings=runtime.settings, offers=[offer])

        def sae_ingest(sip: Path) -> tuple[float, float]:
            t = time.perf_counter()
            busy_before = cpu_seconds()
            with runtime.sessions() as session:
                outcome = service.ingest(session, env, SYSTEM, sip)
                session.commit()
            assert outcome.accepted, outcome.transfer.errors
            return time.perf_counter() - t, cpu_seconds() - busy_before

        plain_upload("warm-up.bin")  # the gateway's first large write is slower: not counted
        # Rounds alternate the two, so that a slower minute of the machine weighs on both; the
        # best of each is compared (interference only ever slows a run down).
        plain_runs, sae_runs = [], []
        for n, sip in enumerate(sips):
            plain_runs.append(plain_upload(f"object-{n}.bin"))
            sae_runs.append(sae_ingest(sip))
        runtime.close()
        plain_wall, plain_cpu = min(plain_runs)
        sae_wall, sae_cpu = min(sae_runs)
        plain = size / plain_wall / 2**20
        sae = size / sae_wall / 2**20
        per_round = [p[0] / s[0] for p, s in zip(plain_runs, sae_runs, strict=True)]

        t = time.perf_counter()
        with payload.open("rb") as fh:
            offer.put("bench/put-alone", fh, retain_until=None)
        put_alone = size / (time.perf_counter() - t) / 2**20
        t = time.perf_counter()
        sip_digest = hashlib.sha512()
        with sips[0].open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                sip_digest.update(chunk)
        sip_hash = time.perf_counter() - t
    where = (
        f"Ceph on CPU {ceph_cpus}, the client on the other{'s' if CORES > 2 else ''} (as a "
        "remote offer)"
        if args.split
        else f"Ceph and the client sharing the {CORES} CPUs"
    )
    result(
        f"s3 ingest: {sae:.0f} MiB/s for one {size // 2**20} MiB object to Ceph RGW with Object "
        f"Lock ({where}; upload hashed on the way, lock read back, object read back and checked, "
        f"catalogued, journaled); baseline plain multipart put_object with the same client "
        f"{plain:.0f} MiB/s; ratio {sae / plain:.2f} (target >= 0.8; best of {args.rounds} "
        f"alternating rounds each, per round {min(per_round):.2f}-{max(per_round):.2f}); "
        f"S3Offer.put alone {put_alone:.0f} MiB/s (ratio {put_alone / plain:.2f}); SHA-512 of "
        f"the whole SIP alone {sip_hash:.2f} s (ingest hashes it in a thread beside the "
        f"storing); CPU of the whole machine (Ceph included): baseline {plain_cpu:.2f} s in "
        f"{plain_wall:.2f} s ({plain_cpu / plain_wall:.1f} of {CORES} cores), SAE {sae_cpu:.2f} "
        f"s in {sae_wall:.2f} s ({sae_cpu / sae_wall:.1f} of {CORES})"
    )


def _sip(path: Path, payload: Path, sha512: str) -> Path:
    """A SIP of one stored (not deflated) file with its declared SHA-512; its own message id."""
    spec = SipSpec(
        message_id=f"S3-{uuid.uuid4()}",
        files=[FileSpec(uri="Content/object.bin", data=b"", mime=None)],
        units=[UnitSpec(id="u", title="objet volumineux", files=[0])],
    )
    spec.files[0].digest = sha512
    spec.files[0].size = payload.stat().st_size
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("manifest.xml", manifest(spec))
        zf.write(payload, "Content/object.bin")
    return path


if __name__ == "__main__":
    _ = REPO
    main()
