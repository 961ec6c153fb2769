"""Concurrent deposits against a real server: every one acknowledged, none lost, no 5xx.

Eight clients deposit at once, on SQLite and on PostgreSQL, into one server process and into
two (``SAE_WORKERS=2``: on SQLite they take turns to write the same file). Both databases failed
with 500s when this test was written (issue #7): on SQLite "database is locked" at once, because
ingest's savepoint read before writing (SQLITE_BUSY_SNAPSHOT; fixed in sae/ingest/service.py),
and on PostgreSQL a duplicate journal leaf index from concurrent appenders (fixed in the journal).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_URL, _postgres_reachable, require
from tests.crash.harness import ServerProcess, download_sha512
from tests.sipfactory import build_zip, simple_sip

CLIENTS = 8
PER_CLIENT = 5


@pytest.fixture(params=["sqlite", "sqlite-2-workers", "postgresql", "postgresql-2-workers"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    env: dict[str, str] = {}
    drop = None
    if request.param.endswith("-2-workers"):
        env["SAE_WORKERS"] = "2"
    if request.param.startswith("postgresql"):
        require(_postgres_reachable(), f"PostgreSQL not reachable at {PG_URL}")
        schema = f"sae_conc_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        env["SAE_DATABASE_URL"] = (
            PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
        )

        def drop() -> None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()

    srv = ServerProcess(tmp_path / "sae-data", env=env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if drop is not None:
            drop()


def test_concurrent_deposits_all_acknowledged(server: ServerProcess) -> None:
    results: list[tuple[str, int, str, dict[str, object]]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with server.client() as c:
            for i in range(PER_CLIENT):
                message_id = f"CONC-{n}-{i}"
                payload = b"%PDF-1.4\n" + message_id.encode() * 2000 + b"\n%%EOF\n"
                sip = build_zip(simple_sip(message_id, payload=payload))
                sha = hashlib.sha512(payload).hexdigest()
                try:
                    r = c.post(
                        "/api/v1/transfers",
                        content=sip,
                        headers={"Content-Type": "application/zip"},
                    )
                except httpx.HTTPError as exc:
                    with lock:
                        results.append((message_id, 0, sha, {"code": type(exc).__name__}))
                    continue
                body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
                with lock:
                    results.append((message_id, r.status_code, sha, body))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    failed = sorted(
        (m, s, str(b.get("code") or b.get("title") or b)[:80]) for m, s, _, b in results if s != 201
    )
    assert failed == [], f"{len(failed)} of {len(results)} concurrent deposits failed: {failed}"
    with server.client() as c:
        for _message_id, _status, sha, body in results:
            objects = body["objects"]
            assert isinstance(objects, list)
            status, got, _ = download_sha512(c, objects[0]["id"])
            assert (status, got) == (200, sha)
    # One journal, whoever wrote it: every leaf in the tree, every head over it signed.
    verify = server.cli("journal", "verify")
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
