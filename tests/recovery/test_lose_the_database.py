"""Issue 17, "Tests that must exist": the catalogue database lost, the archive rebuilt.

One scenario, through the API as users would, on an app whose strategy writes to two offers:
the local WORM directory and S3 on the real Ceph RGW of the test suite. Deposits (a transfer of
1,001 units, one with a 20 MiB object, small ones), a backup taken halfway, then a referential
version that changes a rule in use (1,001 units recomputed), a hold placed and another lifted, a
disposal list through approval, visa and execution (destruction), a list kept permanently, a
transfer withdrawn in quarantine, proof bundles fetched; then ``sae drill`` on the healthy
system. Every API answer is recorded; the database is deleted; and each of these must give the
same answers, byte for byte (JSON compared as parsed):

- ``sae restore`` of the backup taken halfway (the rest caught up from the offers);
- ``sae rebuild --from local`` in place, then ``sae rebuild --from ceph`` into the other kind
  of database.

The service's catalogue is the embedded SQLite file, then a PostgreSQL schema (dropped for the
loss; ``sae backup`` refuses it, pointing to pg_dump: no restore there).

Old proof bundles verify against the rebuilt journals; destroyed objects answer 410, naming
the certificate's list.

Excluded from the comparison, as documented (docs/recovery.md): the journal's events and heads
after the loss (a restore or rebuild journals itself; reads are journaled), and tokens (not
rebuilt: the rebuilt catalogue is opened with its new admin token).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from sae.cli import app as sae_app
from sae.config import Settings, load_settings
from sae.journal import merkle
from sae.journal.bundle import verify_bundle
from sae.journal.sealing import seal_now
from tests.conftest import PG_URL, TEST_RULES_CSV, XSD_DIR, Api
from tests.recovery.test_rebuild import postgres_target
from tests.retention.helpers import dossier_sip
from tests.s3_server import S3Server, ceph_rgw_fixture  # noqa: F401  (the ceph_rgw fixture)
from tests.sipfactory import build_zip, simple_sip

pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(1800)]

runner = CliRunner()

OFFERS = """offers:
  - name: local
    kind: filesystem
    path: {root}/offers/local
    jurisdiction: FR
    site: "Hôtel de ville"
  - name: ceph
    kind: s3
    endpoint: {endpoint}
    bucket: {bucket}
    access_key_env: SAE_S3_E2E_ACCESS_KEY
    secret_key_env: SAE_S3_E2E_SECRET_KEY
    region: {region}
    jurisdiction: FR
    site: "Centre technique municipal"
    create_bucket: true
strategy:
  copies: [local, ceph]
  production: true
"""

PIECES = 1_000
BIG_OBJECT = 20 * 1024 * 1024
VISA_PDF = b"%PDF-1.4\n% visa des Archives departementales\n%%EOF\n"
#: APP-10Y, used by the 1,001 units of the large transfer, becomes 6 years.
SIX_YEARS = TEST_RULES_CSV.replace(
    "APP-10Y,AppraisalRule,Dossiers 10 ans,,10,YEAR", "APP-10Y,AppraisalRule,Dossiers 6 ans,,6,YEAR"
)


@dataclass
class Facts:
    """What the scenario made, and what the API answered about it before the loss."""

    transfers: list[str] = field(default_factory=list)
    units: set[str] = field(default_factory=set)
    objects: set[str] = field(default_factory=set)
    contents: set[str] = field(default_factory=set)  # objects whose content is read
    destroyed: set[str] = field(default_factory=set)
    lists: list[str] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)
    proofs: dict[str, bytes] = field(default_factory=dict)
    backup: Path | None = None
    drill: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    size: int = 0


class Site:
    """A data directory, its offers file (local + Ceph) and the real commands, one process."""

    def __init__(
        self,
        root: Path,
        ceph: S3Server,
        patch: pytest.MonkeyPatch,
        live: tuple[str, str] | None = None,
    ) -> None:
        """``live``: the PostgreSQL catalogue (its URL, its schema); None: the SQLite file."""
        self.root = root
        self.live = live
        self.data_dir = root / "sae-data"
        self.offers_file = root / "etc" / "offers.yaml"
        self.offers_file.parent.mkdir(parents=True)
        self.offers_file.write_text(
            OFFERS.format(
                root=root,
                endpoint=ceph.endpoint,
                bucket=ceph.new_bucket_name(),
                region=ceph.region,
            ),
            encoding="utf-8",
        )
        patch.setenv("SAE_S3_E2E_ACCESS_KEY", ceph.access_key)
        patch.setenv("SAE_S3_E2E_SECRET_KEY", ceph.secret_key)
        patch.setenv("SAE_DATA_DIR", str(self.data_dir))
        patch.setenv("SAE_OFFERS_FILE", str(self.offers_file))
        patch.setenv("COLUMNS", "1000")
        if live is None:
            patch.delenv("SAE_DATABASE_URL", raising=False)
        else:
            patch.setenv("SAE_DATABASE_URL", live[0])
        if (XSD_DIR / "2.2" / "seda-2.2-main.xsd").is_file():
            patch.setenv("SAE_SEDA_XSD_DIR", str(XSD_DIR))

    def settings(self, database_url: str | None = None) -> Settings:
        extra: dict[str, Any] = {}
        if database_url is None and self.live is not None:
            database_url = self.live[0]
        if database_url is not None:
            extra["database_url"] = database_url
        return load_settings(data_dir=self.data_dir, offers_file=self.offers_file, **extra)

    @contextmanager
    def api(self, database_url: str | None = None) -> Iterator[Api]:
        from fastapi.testclient import TestClient

        from sae.app import create_app

        with TestClient(
            create_app(self.settings(database_url)), raise_server_exceptions=False
        ) as client:
            yield Api(client, self.settings(database_url))

    def cli(self, *args: str) -> Any:
        result = runner.invoke(sae_app, list(args))
        # The keys are cached per data directory for the life of a process; a server started
        # after a restore or a rebuild is a new process, which reads them again.
        import sae.journal.keys

        sae.journal.keys._cache.clear()
        return result

    def lose_the_database(self) -> None:
        if self.live is None:
            for name in ("sae.db", "sae.db-wal", "sae.db-shm"):
                (self.data_dir / name).unlink(missing_ok=True)
            return
        schema = self.live[1]
        admin = create_engine(PG_URL)
        try:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        finally:
            admin.dispose()


# --------------------------------------------------------------------------- the scenario


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _deposit(api: Api, facts: Facts, data: bytes) -> dict[str, Any]:
    reply: dict[str, Any] = _ok(api.deposit(data), 201)
    facts.transfers.append(reply["transfer_id"])
    facts.units |= {u["id"] for u in reply["units"]}
    facts.objects |= {o["id"] for o in reply["objects"]}
    return reply


def _titles(reply: dict[str, Any]) -> dict[str, str]:
    return {u["title"]: u["id"] for u in reply["units"]}


def first_half(api: Api, facts: Facts) -> dict[str, Any]:
    """Deposits: 1,001 units, a 20 MiB object, small files to destroy, keep, hold, withdraw."""
    api.load_rules(TEST_RULES_CSV)
    big = _deposit(
        api,
        facts,
        dossier_sip(
            "MSG-E2E-BIG", rule="APP-10Y", start=date(2024, 1, 1), pieces=PIECES, title="Mandats"
        ),
    )
    large = _deposit(
        api, facts, build_zip(simple_sip("MSG-E2E-20MIB", payload=os.urandom(BIG_OBJECT)))
    )
    due = _deposit(api, facts, dossier_sip("MSG-E2E-DUE", pieces=3, title="Factures 2013"))
    kept = _deposit(
        api,
        facts,
        dossier_sip("MSG-E2E-KEEP", final_action="Keep", title="Délibérations 2013"),
    )
    held = _deposit(api, facts, dossier_sip("MSG-E2E-HELD", title="Factures auditées"))
    mistake = _deposit(api, facts, build_zip(simple_sip("MSG-E2E-ERREUR")))
    facts.contents |= {
        large["objects"][0]["id"],
        big["objects"][0]["id"],
        big["objects"][-1]["id"],
        kept["objects"][0]["id"],
        mistake["objects"][0]["id"],
        *(o["id"] for o in due["objects"]),
    }
    return {"big": big, "due": due, "kept": kept, "held": held, "mistake": mistake}


def second_half(api: Api, facts: Facts, made: dict[str, Any]) -> None:
    """A new referential, holds, destruction and permanent keeping, a withdrawal, proofs."""
    h = api.auth(api.token("archivist"))
    second = api.auth(api.token("archivist"))  # four eyes: another archivist approves
    post = api.client.post
    summary = _ok(
        api.client.put(
            "/api/v1/rules",
            content=SIX_YEARS.encode(),
            headers={**api.auth(), "Content-Type": "text/csv"},
        )
    )
    assert summary, summary
    held = _titles(made["held"])["Factures auditées"]
    big = _titles(made["big"])
    facts.holds.append(
        _ok(
            post(
                "/api/v1/holds",
                headers=h,
                json={"unit_ids": [held], "reason": "Contrôle CRC", "until": "2030-01-01"},
            ),
            201,
        )["id"]
    )
    brief = _ok(
        post(
            "/api/v1/holds",
            headers=h,
            json={"unit_ids": [big["Mandats — pièce 7"]], "reason": "Vérification"},
        ),
        201,
    )["id"]
    facts.holds.append(brief)
    _ok(api.client.delete(f"/api/v1/holds/{brief}", headers=h))

    # Destruction: approval, visa (one piece excluded), execution, certificate.
    due = _titles(made["due"])
    lst = _ok(
        post(
            "/api/v1/disposal-lists",
            headers=h,
            json={"final_action": "Destroy", "producer": "FINANCES"},
        ),
        201,
    )
    assert set(lst["units"]) == set(due.values()), lst["units"]
    list_id = lst["id"]
    facts.lists.append(list_id)
    _ok(post(f"/api/v1/disposal-lists/{list_id}/submit", headers=h, json={"comment": ""}))
    _ok(post(f"/api/v1/disposal-lists/{list_id}/approve", headers=second, json={"comment": "Vu"}))
    _ok(
        post(
            f"/api/v1/disposal-lists/{list_id}/visa",
            headers=h,
            files={"document": ("visa signé.pdf", VISA_PDF, "application/pdf")},
            data={
                "reference": "AD93-2026-017",
                "decision_date": "2026-11-30",
                "excluded": [due["Factures 2013 — pièce 2"]],
            },
        )
    )
    assert _ok(post(f"/api/v1/disposal-lists/{list_id}/execute", headers=h))["state"] == "executed"
    excluded = due["Factures 2013 — pièce 2"]
    facts.destroyed |= {
        o["id"] for o in made["due"]["objects"] if o["id"] not in _objects_of(api, excluded)
    }
    assert len(facts.destroyed) == 2, facts.destroyed

    # Permanent keeping.
    keep = _ok(post("/api/v1/disposal-lists", headers=h, json={"final_action": "Keep"}), 201)
    assert set(keep["units"]) == set(_titles(made["kept"]).values()), keep["units"]
    facts.lists.append(keep["id"])
    _ok(post(f"/api/v1/disposal-lists/{keep['id']}/approve", headers=h, json={"comment": "AD"}))
    assert _ok(post(f"/api/v1/disposal-lists/{keep['id']}/execute", headers=h))["state"] == (
        "executed"
    )

    # A transfer deposited by mistake, withdrawn while its copies are in quarantine.
    mistake = made["mistake"]["transfer_id"]
    withdrawn = _ok(
        post(
            f"/api/v1/transfers/{mistake}/withdrawal",
            headers=h,
            json={"reason": "Versement en double, retiré"},
        )
    )
    assert withdrawn["status"] == "WITHDRAWN", withdrawn

    # Proof bundles of objects still there, under a sealed head.
    seal_now(api.runtime.sessions, api.runtime.settings, wait=True)
    for object_id in sorted(
        facts.contents - facts.destroyed - {o["id"] for o in made["mistake"]["objects"]}
    ):
        response = api.client.get(f"/api/v1/objects/{object_id}/proof", headers=api.auth())
        assert response.status_code == 200, response.text
        facts.proofs[object_id] = response.content


def _objects_of(api: Api, unit_id: str) -> set[str]:
    unit = _ok(api.client.get(f"/api/v1/units/{unit_id}", headers=api.auth()))
    return {o["id"] for o in unit["objects"]}


# --------------------------------------------------------------------------- the answers


def _answer(api: Api, token: str, path: str) -> Any:
    """(status, body): parsed JSON, or the SHA-512 of other bytes."""
    response = api.client.get(path, headers=api.auth(token))
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/json") or kind.startswith("application/problem+json"):
        return response.status_code, response.json()
    return response.status_code, hashlib.sha512(response.content).hexdigest()


def answers(api: Api, token: str, facts: Facts, size: int | None = None) -> dict[str, Any]:
    """Every answer of the API about what the scenario made. Content and reads first (they are
    journaled), then the journal up to ``size`` (default: all of it, sealed)."""
    out: dict[str, Any] = {}
    for object_id in sorted(facts.contents):
        out[f"/objects/{object_id}/content"] = _answer(
            api, token, f"/api/v1/objects/{object_id}/content"
        )
    pages = []
    cursor = None
    while True:
        query = "/api/v1/units?limit=500" + (f"&cursor={cursor}" if cursor else "")
        page = _ok(api.client.get(query, headers=api.auth(token)))
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    out["/units (pages)"] = pages
    listed = {u["id"] for p in pages for u in p["items"]}
    for unit_id in sorted(facts.units | listed):
        out[f"/units/{unit_id}"] = _answer(api, token, f"/api/v1/units/{unit_id}")
    objects = set(facts.objects)
    for unit_id in listed:
        status, body = out[f"/units/{unit_id}"]
        if status == 200:
            objects |= {o["id"] for o in body["objects"]}
    for object_id in sorted(objects):
        out[f"/objects/{object_id}"] = _answer(api, token, f"/api/v1/objects/{object_id}")
    for transfer_id in facts.transfers:
        out[f"/transfers/{transfer_id}"] = _answer(api, token, f"/api/v1/transfers/{transfer_id}")
        out[f"/transfers/{transfer_id}/atr"] = _answer(
            api, token, f"/api/v1/transfers/{transfer_id}/atr"
        )
    out["/rules"] = _answer(api, token, "/api/v1/rules")
    out["/holds"] = _answer(api, token, "/api/v1/holds")
    for hold_id in facts.holds:
        out[f"/holds/{hold_id}"] = _answer(api, token, f"/api/v1/holds/{hold_id}")
    out["/disposal-lists"] = _answer(api, token, "/api/v1/disposal-lists")
    for list_id in facts.lists:
        for tail in ("", "/certificate", "/bordereau"):
            out[f"/disposal-lists/{list_id}{tail}"] = _answer(
                api, token, f"/api/v1/disposal-lists/{list_id}{tail}"
            )
    if size is None:
        seal_now(api.runtime.sessions, api.runtime.settings, wait=True)
        size = int(
            _ok(api.client.get("/api/v1/journal/head", headers=api.auth(token)))["tree_size"]
        )
    events: list[Any] = []
    after = -1
    while True:
        page = _ok(
            api.client.get(
                f"/api/v1/journal/events?after={after}&limit=1000", headers=api.auth(token)
            )
        )
        events.extend(e for e in page["events"] if e["leaf_index"] < size)
        if page["next_after"] is None or page["next_after"] >= size:
            break
        after = page["next_after"]
    out["/journal/events"] = events
    heads = {
        body["journal"]["tree_size"]
        for key, (status, body) in (
            (k, v) for k, v in out.items() if k.startswith("/transfers/") and "/atr" not in k
        )
        if status == 200 and body.get("journal", {}).get("tree_size")
    }
    for proof in facts.proofs.values():
        heads.add(
            json.loads(zipfile.ZipFile(io.BytesIO(proof)).read("tree-head.json"))["tree_size"]
        )
    for tree_size in sorted(heads):
        out[f"/journal/heads/{tree_size}"] = _answer(
            api, token, f"/api/v1/journal/heads/{tree_size}"
        )
    out["size"] = size
    return out


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The paths whose answers differ, each with its first differing key."""
    found = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a != b:
            found.append(f"{path}: {_first_difference(a, b)}")
    return found


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return f"{where}: {len(a)} items before, {len(b)} after"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where}: {str(a)[:300]} != {str(b)[:300]}"


def check_after_the_loss(api: Api, token: str, facts: Facts) -> None:
    """The same answers; old proofs verify against this journal; destroyed objects are 410."""
    after = answers(api, token, facts, facts.size)
    assert differences(facts.answers, after) == []
    for object_id, proof in facts.proofs.items():
        content = _ok_bytes(api, token, f"/api/v1/objects/{object_id}/content")
        verdict = verify_bundle(proof, content=content)
        assert verdict.valid, (object_id, verdict.failure)
        head = json.loads(zipfile.ZipFile(io.BytesIO(proof)).read("tree-head.json"))
        rebuilt = _ok(
            api.client.get(f"/api/v1/journal/heads/{head['tree_size']}", headers=api.auth(token))
        )
        assert rebuilt["root_hash"] == head["root_hash"]
        # The rebuilt journal extends the head the old proof was given under (RFC 9162).
        now = _ok(api.client.get("/api/v1/journal/head", headers=api.auth(token)))
        proof_of = _ok(
            api.client.get(
                f"/api/v1/journal/consistency?first={head['tree_size']}&second={now['tree_size']}",
                headers=api.auth(token),
            )
        )
        assert proof_of["first_root"] == head["root_hash"]
        assert merkle.verify_consistency(
            head["tree_size"],
            now["tree_size"],
            bytes.fromhex(head["root_hash"]),
            bytes.fromhex(now["root_hash"]),
            [bytes.fromhex(h) for h in proof_of["proof"]],
        )
    for object_id in facts.destroyed:
        status, body = after[f"/objects/{object_id}/content"]
        assert status == 410, body
        assert body["code"] == "catalog.object_destroyed", body
        assert facts.lists[0] in json.dumps(body), body


def _ok_bytes(api: Api, token: str, path: str) -> bytes:
    response = api.client.get(path, headers=api.auth(token))
    assert response.status_code == 200, response.text
    return response.content


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    ceph_rgw: S3Server,  # noqa: F811
) -> Iterator[Site]:
    """The service's catalogue in the embedded SQLite file, or in a PostgreSQL schema."""
    patch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp(f"lose-the-database-{request.param}")
    try:
        if request.param == "sqlite":
            yield Site(root, ceph_rgw, patch)
            return
        with postgres_target() as url:
            schema = url.rsplit("%3D", 1)[1]
            yield Site(root, ceph_rgw, patch, live=(url, schema))
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def facts(site: Site) -> Facts:
    """The scenario, a backup halfway, the drill, every answer; then the database lost."""
    facts = Facts()
    with site.api() as api:
        made = first_half(api, facts)
        backup = site.cli("backup", str(site.root / "backups"))
        if site.live is None:
            assert backup.exit_code == 0, backup.output
            (facts.backup,) = sorted((site.root / "backups").glob("sae-backup-*"))
        else:  # PostgreSQL's own tools save it (docs/recovery.md): refused, saying so
            assert backup.exit_code != 0, backup.output
            assert "pg_dump" in backup.output, backup.output
        second_half(api, facts, made)
    sealed = site.cli("journal", "seal")
    assert sealed.exit_code == 0, sealed.output
    drill = site.cli("drill", "--json")
    facts.drill = {"exit_code": drill.exit_code, "output": drill.output}
    with site.api() as api:
        facts.answers = answers(api, api.admin, facts)
        facts.size = facts.answers["size"]
    # What is compared is what the scenario made (a comparison of nothing would pass).
    recorded = facts.answers
    assert sum(len(p["items"]) for p in recorded["/units (pages)"]) > PIECES
    assert len(recorded["/units (pages)"]) > 2  # the API's pagination was followed
    assert len(recorded["/journal/events"]) == facts.size > PIECES
    assert sum(1 for k in recorded if k.startswith("/journal/heads/")) >= 2
    assert {recorded[f"/objects/{o}/content"][0] for o in facts.destroyed} == {410}
    assert len(facts.proofs) >= 5
    types = {e["type"] for e in recorded["/journal/events"]}
    for needed in (
        "rules.end_dates_recomputed",
        "hold.placed",
        "hold.lifted",
        "disposal.visa_recorded",
        "disposal.object_destroyed",
        "retention.permanent",
        "transfer.withdrawn",
        "recovery.drill_completed",
        *(["catalog.backed_up"] if site.live is None else []),
    ):
        assert needed in types, needed
    # Everything under a head and on both offers (a stopping server publishes; the command
    # seals what the last reads journaled and publishes it).
    sealed = site.cli("journal", "seal")
    assert sealed.exit_code == 0, sealed.output
    site.lose_the_database()
    return facts


# --------------------------------------------------------------------------- tests


def test_the_drill_on_the_healthy_system_says_identical(facts: Facts) -> None:
    assert facts.drill["exit_code"] == 0, facts.drill["output"]
    report = json.loads(facts.drill["output"][facts.drill["output"].index("{") :])
    assert report["outcome"] == "identical", report


def test_restore_a_backup_taken_halfway_then_the_rest_from_the_offers(
    site: Site, facts: Facts
) -> None:
    if site.live is not None:
        pytest.skip("sae backup copies the embedded SQLite catalogue only (PostgreSQL: pg_dump)")
    site.lose_the_database()
    assert facts.backup is not None
    restored = site.cli("restore", str(facts.backup))
    assert restored.exit_code == 0, restored.output
    with site.api() as api:
        check_after_the_loss(api, api.admin, facts)


@pytest.mark.parametrize("offer", ["local", "ceph"])
def test_rebuild_from_each_offer(site: Site, facts: Facts, offer: str) -> None:
    """``local`` in place (the configured catalogue, deleted); ``ceph`` into the other kind
    of database (SQLite into PostgreSQL, PostgreSQL into SQLite)."""
    site.lose_the_database()
    with target_for(site, offer) as url:
        args = ["rebuild", "--from", offer, "--json"]
        if url is not None:
            args += ["--database", url]
        rebuilt = site.cli(*args)
        assert rebuilt.exit_code == 0, rebuilt.output
        report = json.loads(rebuilt.output[rebuilt.output.index("{") :])
        token = Path(report["admin_token_path"]).read_text().strip()
        with site.api(url) as api:
            check_after_the_loss(api, token, facts)
        if offer == "ceph":
            # The service on the rebuilt catalogue (its leaves published when the app stopped):
            # its drill from the other offer says identical. Last, since a drill archives its
            # report (new units the answers above would show).
            assert url is not None
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("SAE_DATABASE_URL", url)
                drill = site.cli("drill", "--offer", "local", "--json")
            assert drill.exit_code == 0, drill.output
            assert json.loads(drill.output[drill.output.index("{") :])["outcome"] == "identical"


@contextmanager
def target_for(site: Site, offer: str) -> Iterator[str | None]:
    if offer == "local":
        yield None
    elif site.live is not None:
        yield f"sqlite:///{site.root / f'rebuilt-from-{offer}.db'}"
    else:
        with postgres_target() as url:
            yield url
