"""Storage faults against a real ``sae serve``: the S3 server dies, an offer is unreachable at
startup, copies are corrupted on disk and in the bucket, the local offer's disk is full.

Each case checks the promise of issue #7: a clean KO (or a retried success), never a partial
archive; ``/health`` naming the failing offer; the audit naming a damaged copy and repairing it
from a healthy one, journaled.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.conftest import require
from tests.crash.harness import ServerProcess, download_sha512
from tests.faults.ceph import OwnCeph, own_ceph  # noqa: F401  (fixture)
from tests.sipfactory import FileSpec, SipSpec, UnitSpec, build_zip

pytestmark = pytest.mark.timeout(600)

MiB = 1 << 20


def sip_of(message_id: str, sizes: list[int], seed: int = 0) -> tuple[bytes, list[str]]:
    """A SIP of one unit per file; returns the zip and each file's SHA-512."""
    rng = random.Random(f"{message_id}:{seed}")
    files = [
        FileSpec(uri=f"Content/f{i}.pdf", data=b"%PDF-1.4\n" + rng.randbytes(size))
        for i, size in enumerate(sizes)
    ]
    spec = SipSpec(
        message_id=message_id,
        producer="FAULTS",
        transferring="FAULTS",
        files=files,
        units=[
            UnitSpec(
                id="AU-root",
                title=f"Dossier {message_id}",
                level="File",
                children=[
                    UnitSpec(id=f"AU-{i}", title=f"Pièce {i}", files=[i]) for i in range(len(files))
                ],
            )
        ],
    )
    # Stored, not deflated: random bytes do not compress, and the test should not wait on zlib.
    return build_zip(spec), [hashlib.sha512(f.data).hexdigest() for f in files]


def post(server: ServerProcess, data: bytes, timeout: float = 300) -> httpx.Response:
    with server.client(timeout=timeout) as c:
        return c.post(
            "/api/v1/transfers", content=data, headers={"Content-Type": "application/zip"}
        )


def accepted_ids(data_dir: Path, message_id: str) -> list[str]:
    conn = sqlite3.connect(data_dir / "sae.db")
    try:
        return [
            r[0]
            for r in conn.execute(
                "select id from transfers where status='OK' and message_identifier=?",
                (message_id,),
            )
        ]
    finally:
        conn.close()


def fsck(server: ServerProcess, *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = server.cli("fsck", "--json", *args)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    return result.returncode, json.loads(result.stdout or "[]")


def assert_not_visible(server: ServerProcess, message_id: str) -> None:
    with server.client() as c:
        found = c.get("/api/v1/units", params={"title": f"Dossier {message_id}"}).json()
    assert found["items"] == [], found
    assert accepted_ids(server.data_dir, message_id) == []


def assert_clean_ko(response: httpx.Response) -> None:
    """A refusal the client can act on: 4xx/503 with a body saying why, never a bare 500."""
    assert response.status_code in (400, 409, 422, 503, 507), (
        response.status_code,
        response.text[:500],
    )
    body = response.json()
    assert body.get("errors") or body.get("detail") or body.get("code"), body


@pytest.fixture
def two_offer_server(tmp_path: Path, own_ceph: OwnCeph) -> Iterator[ServerProcess]:  # noqa: F811
    """SAE writing every object to the local directory, then to its own Ceph bucket."""
    bucket = f"sae-fault-{uuid.uuid4().hex[:10]}"
    offers = tmp_path / "offers.yaml"
    offers.write_text(
        "offers:\n"
        "  - name: local\n"
        "    kind: filesystem\n"
        f"    path: {tmp_path / 'local-offer'}\n"
        "    jurisdiction: FR\n"
        "    site: Mairie\n"
        + own_ceph.offer_yaml("ceph", bucket)
        + "strategy:\n  copies: [local, ceph]\n",
        encoding="utf-8",
    )
    server = ServerProcess(
        tmp_path / "sae-data", env={**own_ceph.env, "SAE_OFFERS_FILE": str(offers)}
    )
    server.start()
    server.bucket = bucket  # type: ignore[attr-defined]
    server.local_offer = tmp_path / "local-offer"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        if not own_ceph.gateway_up():
            own_ceph.start_gateway()


@pytest.mark.s3
def test_s3_server_killed_during_a_deposit(
    two_offer_server: ServerProcess,
    own_ceph: OwnCeph,  # noqa: F811
) -> None:
    server = two_offer_server
    local: Path = server.local_offer  # type: ignore[attr-defined]
    warm, _ = sip_of("FAULT-WARM", [1000])
    assert post(server, warm).status_code == 201

    data, _digests = sip_of("FAULT-S3-DOWN", [24 * MiB, 24 * MiB, 24 * MiB])
    before = set((local / "data").rglob("*"))
    result: dict[str, Any] = {}

    def deposit() -> None:
        try:
            result["response"] = post(server, data)
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=deposit)
    thread.start()
    # Wait until the first copy is on the local offer: the S3 upload of it is now under way.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and set((local / "data").rglob("*")) == before:
        time.sleep(0.02)
    time.sleep(0.2)
    own_ceph.kill_gateway()
    thread.join(timeout=400)
    assert not thread.is_alive(), "the deposit hung after the S3 server died"
    assert "error" not in result, f"no HTTP answer: {result.get('error')!r}"
    response: httpx.Response = result["response"]
    print(f"S3 killed mid-deposit: HTTP {response.status_code} {response.text[:300]}")

    with server.client() as c:
        health = c.get("/health")
        assert health.status_code == 503
        assert "offer:ceph" in health.json()["failing"]

    own_ceph.start_gateway()
    if response.status_code == 201:
        # A retried success: then everything must be there, on both offers.
        objects = response.json()["objects"]
        with server.client() as c:
            for o in objects:
                status, sha, _ = download_sha512(c, o["id"])
                assert (status, sha) == (200, o["sha512"])
    else:
        assert_clean_ko(response)
        assert_not_visible(server, "FAULT-S3-DOWN")
        # Whatever could not be withdrawn is an orphan that fsck finds and removes.
        code, findings = fsck(server)
        assert all(f["kind"] == "orphan" for f in findings), findings
        if findings:
            code, findings = fsck(server, "--repair")
            assert {f["kind"] for f in findings} == {"orphan_removed"}, findings
        code, findings = fsck(server)
        assert (code, findings) == (0, [])
        # Once the S3 server is back, the same SIP goes through.
        again = post(server, data)
        assert again.status_code == 201, again.text[:500]


def test_offer_unreachable_at_startup_is_named_by_health(tmp_path: Path) -> None:
    """An S3 offer whose server does not answer: SAE starts, /health says which offer."""
    from tests.crash.harness import free_port

    offers = tmp_path / "offers.yaml"
    offers.write_text(
        "offers:\n"
        "  - name: local\n"
        "    kind: filesystem\n"
        f"    path: {tmp_path / 'local-offer'}\n"
        "    jurisdiction: FR\n"
        "    site: Mairie\n"
        "  - name: cloud-down\n"
        "    kind: s3\n"
        f"    endpoint: http://127.0.0.1:{free_port()}\n"
        "    bucket: nowhere\n"
        "    access_key_env: SAE_FAULT_S3_ACCESS\n"
        "    secret_key_env: SAE_FAULT_S3_SECRET\n"
        "    region: default\n"
        "    jurisdiction: FR\n"
        "    site: Cloud\n"
        "strategy:\n  copies: [local, cloud-down]\n",
        encoding="utf-8",
    )
    server = ServerProcess(
        tmp_path / "sae-data",
        env={
            "SAE_OFFERS_FILE": str(offers),
            "SAE_FAULT_S3_ACCESS": "x",
            "SAE_FAULT_S3_SECRET": "y",
        },
    )
    server.start(healthy=False)
    try:
        with server.client() as c:
            health = c.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["failing"] == ["offer:cloud-down"], body
        by_name = {o["name"]: o for o in body["offers"]}
        assert by_name["local"]["ok"] is True
        assert by_name["cloud-down"]["ok"] is False
        assert by_name["cloud-down"]["detail"]
        # A deposit meanwhile is a clean KO, and leaves nothing on the healthy offer.
        data, _ = sip_of("FAULT-UNREACHABLE", [5000])
        response = post(server, data)
        print(f"offer unreachable: HTTP {response.status_code} {response.text[:300]}")
        assert_clean_ko(response)
        assert_not_visible(server, "FAULT-UNREACHABLE")
        leftovers = [p for p in (tmp_path / "local-offer" / "data").rglob("*") if p.is_file()]
        assert leftovers == []
    finally:
        server.stop()


@pytest.mark.s3
def test_corrupted_copies_are_named_and_repaired_by_the_audit(
    two_offer_server: ServerProcess,
    own_ceph: OwnCeph,  # noqa: F811
) -> None:
    server = two_offer_server
    local: Path = server.local_offer  # type: ignore[attr-defined]
    bucket: str = server.bucket  # type: ignore[attr-defined]
    data, digests = sip_of("FAULT-CORRUPT", [200_000, 12 * MiB])
    response = post(server, data)
    assert response.status_code == 201, response.text
    objects = {o["sip_id"]: o for o in response.json()["objects"]}
    on_disk, in_bucket = objects["BDO-0"], objects["BDO-1"]

    # A flipped byte in the local copy of the first object (same size: only the hash tells).
    path = local / "data" / "objects" / on_disk["id"]
    os.chmod(path, 0o644)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    # Other bytes under the second object's key in the bucket: a new current version, as an
    # operator's mistaken upload would make (the locked original stays underneath).
    s3 = boto3.client(
        "s3",
        endpoint_url=own_ceph.endpoint,
        aws_access_key_id="testaccess",
        aws_secret_access_key="testsecret12345",
        region_name="default",
    )
    s3.put_object(
        Bucket=bucket, Key=f"objects/{in_bucket['id']}", Body=os.urandom(in_bucket["size"])
    )

    audit = server.cli("audit", "--json")
    report = json.loads(audit.stdout)
    problems = {(p["object_id"], p["offer"]): p for p in report["problems"]}
    assert set(problems) == {(on_disk["id"], "local"), (in_bucket["id"], "ceph")}, report
    assert all(p["kind"] == "corrupt" and p["repaired"] for p in problems.values()), report
    assert audit.returncode == 0, audit.stderr[-2000:]

    # Repaired: a second audit finds nothing, the bytes on both offers are the right ones.
    again = json.loads(server.cli("audit", "--json").stdout)
    assert again["problems"] == [], again
    assert hashlib.sha512(path.read_bytes()).hexdigest() == digests[0]
    current = s3.get_object(Bucket=bucket, Key=f"objects/{in_bucket['id']}")["Body"].read()
    assert hashlib.sha512(current).hexdigest() == digests[1]
    # Journaled: damage and repair, per object and offer.
    conn = sqlite3.connect(server.data_dir / "sae.db")
    try:
        events = [
            (t, json.loads(p))
            for t, p in conn.execute(
                "select type, payload from events where type like 'storage.copy_%'"
            )
        ]
    finally:
        conn.close()
    kinds = {(t, json.dumps(p, sort_keys=True)) for t, p in events}
    for object_id, offer in problems:
        for kind in ("storage.copy_damaged", "storage.copy_repaired"):
            assert any(t == kind and object_id in p and offer in p for t, p in kinds), (
                kind,
                object_id,
                offer,
                events,
            )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for the local offer: a disk that really fills up."""
    require(os.geteuid() == 0, "mounting a small tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    require(done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def local_offer_file(directory: Path, offer: Path) -> Path:
    """An offers file (in ``directory``) whose one copy goes to a local offer at ``offer``."""
    path = directory / "offers.yaml"
    path.write_text(
        "offers:\n"
        "  - name: local\n"
        "    kind: filesystem\n"
        f"    path: {offer}\n"
        "    jurisdiction: FR\n"
        "    site: Mairie\n"
        "strategy:\n  copies: [local]\n",
        encoding="utf-8",
    )
    return path


def test_local_offer_disk_full_is_a_clean_ko(tmp_path: Path, small_disk: Path) -> None:
    offers = local_offer_file(tmp_path, small_disk / "offer")
    server = ServerProcess(tmp_path / "sae-data", env={"SAE_OFFERS_FILE": str(offers)})
    server.start()
    try:
        small, small_digests = sip_of("FAULT-FITS", [3 * MiB])
        assert post(server, small).status_code == 201
        # 3 x 5 MiB: the second or third file meets a full disk.
        big, _ = sip_of("FAULT-DISK-FULL", [5 * MiB, 5 * MiB, 5 * MiB])
        response = post(server, big)
        print(f"disk full: HTTP {response.status_code} {response.text[:300]}")
        assert_clean_ko(response)
        assert_not_visible(server, "FAULT-DISK-FULL")
        # Nothing of it stays on the offer (no published key, no temporary file); the journal's
        # segments (the first transfer's head) live beside the objects, under journal/.
        data = small_disk / "offer" / "data"
        files = [p for p in (data / "objects").rglob("*") if p.is_file()]
        files += [p for p in data.glob(".*") if p.is_file()]
        assert len(files) == 1, files
        code, findings = fsck(server)
        assert (code, findings) == (0, [])
        # The disk is not left full: a deposit that fits still goes through, and the first
        # transfer is intact.
        after, _ = sip_of("FAULT-AFTER-FULL", [2 * MiB])
        assert post(server, after).status_code == 201
        with server.client() as c:
            units = c.get("/api/v1/units", params={"title": "Dossier FAULT-FITS"}).json()["items"]
            assert len(units) == 1
    finally:
        server.stop()


def test_spool_disk_full_is_a_clean_ko(tmp_path: Path, small_disk: Path) -> None:
    """The data directory (spool, database) on a 16 MiB disk, the offer elsewhere: a 20 MiB
    SIP fills the disk while it is received. 503 naming the cause, nothing kept in the spool,
    nothing visible; the space is given back and the next deposit goes through."""
    offers = local_offer_file(tmp_path, tmp_path / "offer")
    server = ServerProcess(small_disk / "sae-data", env={"SAE_OFFERS_FILE": str(offers)})
    server.log_path = tmp_path / "server.log"
    server.start()
    try:
        big, _ = sip_of("FAULT-SPOOL-FULL", [20 * MiB])
        response = post(server, big)
        print(f"spool full: HTTP {response.status_code} {response.text[:300]}")
        assert_clean_ko(response)
        assert response.status_code == 503
        assert response.json()["code"] == "service.spool_failed"
        assert list((small_disk / "sae-data" / "tmp").iterdir()) == []
        assert_not_visible(server, "FAULT-SPOOL-FULL")
        after, _ = sip_of("FAULT-AFTER-SPOOL-FULL", [1 * MiB])
        assert post(server, after).status_code == 201
    finally:
        server.stop()
