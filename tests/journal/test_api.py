"""The journal's HTTP routes, after a real deposit, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import zipfile
from pathlib import Path

from sae.journal import merkle
from sae.journal.bundle import verify_bundle
from sae.journal.checkpoint import verify_signature
from tests.conftest import Api
from tests.sipfactory import build_zip, simple_sip


def _mounted(api: Api) -> None:
    """Mount the journal router unless the application already does."""
    from sae.journal.api import router

    paths = {getattr(r, "path", "") for r in api.client.app.routes}
    if "/api/v1/journal/head" not in paths:
        api.client.app.include_router(router, prefix="/api/v1")


def test_deposit_then_proof_head_consistency_events(api: Api, tmp_path: Path) -> None:
    _mounted(api)
    auditor = api.token("auditor")
    spec = simple_sip("MSG-JOURNAL-1")
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    object_id = response.json()["objects"][0]["id"]

    head = api.client.get("/api/v1/journal/head", headers=api.auth(auditor))
    assert head.status_code == 200, head.text
    h = head.json()
    assert {"tree_size", "root_hash", "timestamp", "signature", "tst_url"} <= set(h)
    key = api.client.get("/api/v1/journal/public-key", headers=api.auth(auditor)).content
    assert verify_signature(key, h["checkpoint"].encode(), base64.b64decode(h["signature"]))
    tst = api.client.get(h["tst_url"], headers=api.auth(auditor))
    assert tst.status_code == 200
    assert tst.headers["content-type"] == "application/timestamp-reply"

    proof = api.client.get(f"/api/v1/objects/{object_id}/proof", headers=api.auth(auditor))
    assert proof.status_code == 200, proof.text
    assert proof.headers["content-type"] == "application/zip"
    report = verify_bundle(proof.content, content=spec.files[0].data)
    assert report.valid, report.failure
    d = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(proof.content)).extractall(d)
    (d / "object.pdf").write_bytes(spec.files[0].data)
    run = subprocess.run(
        [sys.executable, "verify.py", ".", "--object", "object.pdf"],
        cwd=d,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout

    # More facts, a later head, and a consistency proof between the two.
    assert api.deposit(build_zip(simple_sip("MSG-JOURNAL-2"))).status_code == 201
    later = api.client.get("/api/v1/journal/head", headers=api.auth(auditor)).json()
    assert later["tree_size"] > h["tree_size"]
    c = api.client.get(
        "/api/v1/journal/consistency",
        params={"first": h["tree_size"], "second": later["tree_size"]},
        headers=api.auth(auditor),
    )
    assert c.status_code == 200, c.text
    body = c.json()
    assert body["first_root"] == h["root_hash"]
    assert body["second_root"] == later["root_hash"]
    assert merkle.verify_consistency(
        body["first"],
        body["second"],
        bytes.fromhex(body["first_root"]),
        bytes.fromhex(body["second_root"]),
        [bytes.fromhex(p) for p in body["proof"]],
    )

    events = api.client.get(
        "/api/v1/journal/events",
        params={"object_id": object_id},
        headers=api.auth(auditor),
    )
    assert events.status_code == 200
    found = events.json()["events"]
    assert any(e["type"] == "ingest.object_stored" for e in found)
    assert all(e["object_id"] == object_id for e in found)
    paged = api.client.get(
        "/api/v1/journal/events", params={"limit": 2}, headers=api.auth(auditor)
    ).json()
    assert [e["leaf_index"] for e in paged["events"]] == [0, 1]
    nxt = api.client.get(
        "/api/v1/journal/events",
        params={"limit": 2, "after": paged["next_after"]},
        headers=api.auth(auditor),
    ).json()
    assert [e["leaf_index"] for e in nxt["events"]] == [2, 3]


def test_bad_requests_and_roles(api: Api) -> None:
    _mounted(api)
    auditor = api.token("auditor")
    bad = api.client.get(
        "/api/v1/journal/consistency",
        params={"first": 5, "second": 2},
        headers=api.auth(auditor),
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "journal.invalid_proof_request"
    assert api.client.get("/api/v1/journal/head").status_code == 401
    depositor = api.token("depositor", ["URBANISME"])
    forbidden = api.client.get("/api/v1/journal/head", headers=api.auth(depositor))
    assert forbidden.status_code == 403
    missing = api.client.get(
        "/api/v1/objects/00000000-0000-0000-0000-000000000000/proof", headers=api.auth(auditor)
    )
    assert missing.status_code == 404
    assert api.client.get("/api/v1/journal/heads/abc", headers=api.auth(auditor)).status_code == 400


def test_out_of_range_sizes_are_400_not_500(api: Api) -> None:
    _mounted(api)
    auditor = api.token("auditor")
    huge = str(2**70)
    for url in (
        f"/api/v1/journal/heads/{huge}",
        f"/api/v1/journal/heads/-{huge}/tst",
        f"/api/v1/journal/consistency?first=1&second={huge}",
        f"/api/v1/journal/events?after={huge}",
    ):
        response = api.client.get(url, headers=api.auth(auditor))
        assert 400 <= response.status_code < 500, (url, response.status_code)
