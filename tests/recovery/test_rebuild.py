"""``sae rebuild --from OFFER``: the catalogue rebuilt from one offer alone (issue 17 item 3).

Transfers are deposited through the real API onto the local WORM offer, the API's answers are
recorded, the database is left behind (a fresh one is the target), the catalogue is rebuilt
from the offer into a new SQLite file and into a new PostgreSQL schema, and an app on the
rebuilt catalogue gives the same answers; old proof bundles still verify against it. Then what
must stop a rebuild does: an altered or missing segment, an altered description, a non-empty
target; and a rebuild killed midway resumes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from sae.config import Settings
from sae.db import make_engine
from sae.journal.bundle import verify_bundle
from sae.journal.publishing import publish_segments, verify_offer
from sae.journal.sealing import seal_now
from sae.journal.segments import PREFIX as SEGMENTS
from sae.journal.tails import PREFIX as TAILS
from sae.journal.tails import parse_tail_key
from sae.journal.verification import verify_journal
from sae.recovery import replay
from sae.recovery.errors import DescriptionInvalid, RebuildTargetNotEmpty, SegmentInvalid
from sae.recovery.rebuild import MARKS, rebuild
from sae.storage.base import StorageOffer
from sae.storage.filesystem import FilesystemOffer
from sae.storage.offers import load_offers
from tests.conftest import (
    TEST_RULES_CSV,
    Api,
    postgres_schema,
)
from tests.s3_server import S3Server, ceph_rgw_fixture  # noqa: F401  (the ceph_rgw fixture)
from tests.sipfactory import FileSpec, RuleSpec, SipSpec, UnitSpec, build_zip, simple_sip
from tests.storage.conftest import TWO_SITES

# --------------------------------------------------------------------------- helpers


#: Event types these tests journal whose owners' replays are not in this branch yet
#: (retention, storage, auth: written in parallel). They are taken as stateless here, so that
#: these tests exercise the rebuild and the ingest replays; a type that has its replay keeps it.
PENDING = ("auth.token_created", "rules.imported", "access.object_read")
#: The same for a rebuild run in a child process (``sae rebuild`` killed and resumed).
PRELUDE = (
    "import os, sys\n"
    "from sae.recovery import replay\n"
    "replay.load_all()\n"
    f"for t in {PENDING!r}:\n"
    "    if t not in replay.REPLAYS and t not in replay.NO_STATE:\n"
    "        replay.NO_STATE[t] = 'pending in this branch'\n"
)


@pytest.fixture(autouse=True)
def _other_owners_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    replay.load_all()
    for type_ in PENDING:
        if type_ not in replay.REPLAYS and type_ not in replay.NO_STATE:
            monkeypatch.setitem(replay.NO_STATE, type_, "pending in this branch")


@contextmanager
def running(settings: Settings) -> Iterator[Api]:
    """An app on ``settings`` (its own runtime, sealer and publisher), stopped at the end."""
    from fastapi.testclient import TestClient

    from sae.app import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Api(client, settings)


def publish(api: Api) -> None:
    """Seal over everything and publish the segments to the offers (the publisher's lock may
    be held by the background sealer's round for a moment)."""
    seal_now(api.runtime.sessions, api.runtime.settings, wait=True)
    for _ in range(200):
        if not publish_segments(api.runtime.sessions, api.runtime.strategy_offers).busy:
            return
        time.sleep(0.05)
    raise AssertionError("the publisher's lock was never free")


def tree_size(api: Api) -> int:
    response = api.client.get("/api/v1/journal/head", headers=api.auth())
    assert response.status_code == 200, response.text
    return int(response.json()["tree_size"])


def big_sip(message_id: str, files: int = 4) -> bytes:
    """Units in a tree, files in groups, declared rules, a unit without a file."""
    specs = [
        FileSpec(uri=f"Content/pièce {i} (copie).pdf", data=b"%PDF-1.4\n" + os.urandom(64 + i))
        for i in range(files)
    ]
    return build_zip(
        SipSpec(
            message_id=message_id,
            files=specs,
            units=[
                UnitSpec(
                    id="AU-root",
                    title=f"Dossier {message_id}",
                    level="File",
                    rules=[RuleSpec("AppraisalRule", "APP-5Y", date(2020, 1, 1), "Destroy")],
                    children=[
                        *[
                            UnitSpec(id=f"AU-{i}", title=f"Pièce n°{i} — été", files=[i])
                            for i in range(files)
                        ],
                        UnitSpec(
                            id="AU-x",
                            title="Sans fichier",
                            rules=[RuleSpec("AccessRule", "ACC-25Y", date(2021, 6, 1))],
                        ),
                    ],
                )
            ],
        )
    )


@dataclass
class Snapshot:
    """The API's answers before the loss."""

    size: int  # the journal's size when they were recorded
    transfers: dict[str, Any] = field(default_factory=dict)
    atrs: dict[str, bytes] = field(default_factory=dict)
    units: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    proofs: dict[str, bytes] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    heads: dict[int, Any] = field(default_factory=dict)
    unit_list: list[Any] = field(default_factory=list)


def get_json(api: Api, path: str, token: str | None = None) -> Any:
    response = api.client.get(path, headers=api.auth(token))
    assert response.status_code == 200, (path, response.text)
    return response.json()


def get_bytes(api: Api, path: str, token: str | None = None) -> bytes:
    response = api.client.get(path, headers=api.auth(token))
    assert response.status_code == 200, (path, response.text)
    return response.content


def events(api: Api, size: int, token: str | None = None) -> list[Any]:
    """Every event below leaf ``size``, paged as a client does."""
    out: list[Any] = []
    after = -1
    while True:
        page = get_json(api, f"/api/v1/journal/events?after={after}&limit=1000", token)
        out.extend(e for e in page["events"] if e["leaf_index"] < size)
        if page["next_after"] is None or page["next_after"] >= size:
            return out
        after = page["next_after"]


def record(api: Api, replies: Sequence[Any]) -> Snapshot:
    """The answers about the transfers of the deposits' ``replies``, their units and objects
    (content and proofs too: the reads are journaled, so they come first and the journal is
    recorded after them)."""
    snap = Snapshot(size=0)
    publish(api)  # every transfer's decision under a head: its journal reference is final
    for reply in replies:
        transfer_id = reply["transfer_id"]
        snap.transfers[transfer_id] = get_json(api, f"/api/v1/transfers/{transfer_id}")
        snap.atrs[transfer_id] = get_bytes(api, f"/api/v1/transfers/{transfer_id}/atr")
        for unit in reply["units"]:
            snap.units[unit["id"]] = get_json(api, f"/api/v1/units/{unit['id']}")
        for obj in reply["objects"]:
            snap.objects[obj["id"]] = get_json(api, f"/api/v1/objects/{obj['id']}")
            snap.contents[obj["id"]] = get_bytes(api, f"/api/v1/objects/{obj['id']}/content")
            snap.proofs[obj["id"]] = get_bytes(api, f"/api/v1/objects/{obj['id']}/proof")
    snap.unit_list = get_json(api, "/api/v1/units?limit=500")["items"]
    publish(api)
    snap.size = tree_size(api)
    snap.events = events(api, snap.size)
    for size in sorted({e["journal"]["tree_size"] for e in snap.transfers.values()} - {None}):
        snap.heads[size] = get_json(api, f"/api/v1/journal/heads/{size}")
    return snap


@dataclass
class Archive:
    """What was deposited before the loss, and the answers recorded about it."""

    settings: Settings
    accepted: list[Any]  # the deposits' replies
    refused: Any
    late: str  # acknowledged, its segment never published (removed from the offer)
    snapshot: Snapshot
    late_answer: Any
    late_reply: Any


def local_offer(settings: Settings) -> FilesystemOffer:
    offer = load_offers(settings).get("local")
    assert isinstance(offer, FilesystemOffer)
    return offer


def rewrite(offer: FilesystemOffer, key: str, data: bytes | None) -> None:
    """Change (or, with None, remove) a file behind the WORM directory's back."""
    path = offer.root / "data" / key
    os.chmod(path, 0o644)
    if data is None:
        path.unlink()
        return
    path.write_bytes(data)
    os.chmod(path, 0o444)


def segment_keys(offer: StorageOffer) -> list[str]:
    return sorted(offer.list_keys(SEGMENTS))


def deposit_all(api: Api) -> tuple[list[Any], Any]:
    """Three accepted transfers (several heads between them) and a refused one: their
    replies."""
    accepted = []
    for n, data in enumerate(
        [big_sip("MSG-REB-1", 5), build_zip(simple_sip("MSG-REB-2")), big_sip("MSG-REB-3", 2)]
    ):
        response = api.deposit(data)
        assert response.status_code == 201, response.text
        accepted.append(response.json())
        if n != 1:
            publish(api)  # several heads, so several segments
    bad = simple_sip("MSG-REB-KO")
    bad.files[0].digest = "0" * 128
    response = api.deposit(build_zip(bad))
    assert response.status_code in (400, 422), response.text
    assert response.json()["status"] == "KO", response.json()
    return accepted, response.json()


@pytest.fixture
def archive(settings: Settings) -> Archive:
    """Three accepted transfers and a refused one, their answers recorded; a fourth accepted
    after, whose journal segments never reached the offer; then the service stopped."""
    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        accepted, refused = deposit_all(api)
        snapshot = record(api, [*accepted, refused])
        response = api.deposit(big_sip("MSG-REB-LATE", 2))
        assert response.status_code == 201, response.text
        late_reply = response.json()
        late = late_reply["transfer_id"]
        late_answer = get_json(api, f"/api/v1/transfers/{late}")
        publish(api)
    # The database is lost now; the segments published after the snapshot never were (the
    # 10 seconds between two publications), nor the late deposit's tail (an offer refused
    # it: its depositor had a 503, not a 201; or an earlier version, which wrote no tails):
    # removed from the offer. Its description alone brings it back.
    offer = local_offer(settings)
    for key in segment_keys(offer):
        if int(key.removeprefix(SEGMENTS).split("-")[0]) >= snapshot.size:
            rewrite(offer, key, None)
    for key in list(offer.list_keys(TAILS)):
        span = parse_tail_key(key)
        if span is not None and span[1] > snapshot.size:
            rewrite(offer, key, None)
    return Archive(settings, accepted, refused, late, snapshot, late_answer, late_reply)


def sqlite_target(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / f'rebuilt-{uuid.uuid4().hex[:6]}.db'}"


def postgres_target() -> AbstractContextManager[str]:
    """A fresh PostgreSQL schema to rebuild into."""
    return postgres_schema("sae_rebuild")


def rebuilt_settings(archive: Archive, url: str) -> Settings:
    return archive.settings.model_copy(update={"database_url": url})


def check_same_answers(archive: Archive, url: str, token_path: Path) -> None:
    """An app on the rebuilt catalogue answers as the lost one did."""
    snap = archive.snapshot
    with running(rebuilt_settings(archive, url)) as api:
        token = token_path.read_text().strip()
        for transfer_id, before in snap.transfers.items():
            assert get_json(api, f"/api/v1/transfers/{transfer_id}", token) == before
            assert (
                get_bytes(api, f"/api/v1/transfers/{transfer_id}/atr", token)
                == (snap.atrs[transfer_id])
            )
        for unit_id, before in snap.units.items():
            after = get_json(api, f"/api/v1/units/{unit_id}", token)
            assert referential_free(after) == referential_free(before)
        for object_id, before in snap.objects.items():
            assert get_json(api, f"/api/v1/objects/{object_id}", token) == before
            content = get_bytes(api, f"/api/v1/objects/{object_id}/content", token)
            assert content == snap.contents[object_id]
            # The proof issued before the loss verifies, and its head is the rebuilt one.
            old = verify_bundle(snap.proofs[object_id], content=content)
            assert old.valid, old.failure
            head = json.loads(
                zipfile.ZipFile(io.BytesIO(snap.proofs[object_id])).read("tree-head.json")
            )
            rebuilt_head = get_json(api, f"/api/v1/journal/heads/{head['tree_size']}", token)
            assert rebuilt_head["root_hash"] == head["root_hash"]
            fresh = verify_bundle(
                get_bytes(api, f"/api/v1/objects/{object_id}/proof", token), content=content
            )
            assert fresh.valid, fresh.failure
        late_units = {u["id"] for u in archive.late_reply["units"]}
        units = get_json(api, "/api/v1/units?limit=500", token)["items"]
        assert [u for u in units if u["id"] not in late_units] == snap.unit_list
        assert events(api, snap.size, token) == snap.events
        for size, head in snap.heads.items():
            assert get_json(api, f"/api/v1/journal/heads/{size}", token) == head
        # The transfer acknowledged after the last published segment is back, its journal
        # reference now the leaf that recorded its recovery.
        late = get_json(api, f"/api/v1/transfers/{archive.late}", token)
        assert {k: v for k, v in late.items() if k != "journal"} == {
            k: v for k, v in archive.late_answer.items() if k != "journal"
        }
        recovered = get_json(api, f"/api/v1/journal/events?transfer_id={archive.late}", token)[
            "events"
        ]
        assert [e["type"] for e in recovered] == ["rebuild.transfer_recovered"]
        assert late["journal"]["leaf_index"] == recovered[0]["leaf_index"]
        # Its objects' own leaves were never published: no proof bundle, said plainly.
        late_object = archive.late_reply["objects"][0]["id"]
        proof = api.client.get(f"/api/v1/objects/{late_object}/proof", headers=api.auth(token))
        assert proof.status_code == 404, proof.text
        assert late["journal"]["tree_size"] is not None  # sealed by the rebuild
        assert recovered[0]["sha512"] == {
            o["id"]: o["sha512"] for o in archive.late_reply["objects"]
        }
        # The whole journal verifies from the rebuilt catalogue.
        with api.runtime.sessions() as session:
            verdict = verify_journal(session, check_objects=True, workers=1)
        assert verdict.ok, verdict.problems[:3]


#: What a unit's answer computes from the referential (``rules``), whose replay
#: (``rules.imported``) is the retention owner's.
FROM_REFERENTIAL = ("rules", "end_dates", "appraisal_end", "access_end", "communicable")


def referential_free(unit: dict[str, Any]) -> dict[str, Any]:
    """The unit's answer, less what comes from the referential while its replay is not in this
    branch (all of it once it is)."""
    if "rules.imported" in replay.REPLAYS:
        return unit
    return {k: v for k, v in unit.items() if k not in FROM_REFERENTIAL}


# --------------------------------------------------------------------------- tests


def test_rebuilt_catalogue_answers_as_before_on_sqlite_and_postgresql(
    archive: Archive, tmp_path: Path
) -> None:
    offer = local_offer(archive.settings)
    assert verify_offer(offer).ok
    # What the ingest identified (PRONOM) is in the answers compared after the rebuild.
    assert any(obj["format_puid"] for obj in archive.snapshot.objects.values())
    target = sqlite_target(tmp_path)
    with postgres_target() as url:
        # Both rebuilt before either serves: a service on a rebuilt catalogue publishes its
        # new heads (the recovered transfer's leaf among them) to the offer.
        reports = [rebuild(archive.settings, "local", t) for t in (target, url)]
        for report in reports:
            assert report.recovered == [archive.late]
            assert report.counts["transfers"] == 5
            assert report.segments >= 3
            assert report.leaves >= archive.snapshot.size
            assert report.admin_token_path is not None
            assert report.admin_token_path.is_file()
        assert reports[0].counts == reports[1].counts
        for report, where in zip(reports, (target, url), strict=True):
            assert report.admin_token_path is not None
            check_same_answers(archive, where, report.admin_token_path)
    # Rebuilt again from the offer, which now holds the first rebuild's segments: the
    # recovered transfer comes back through its rebuild.transfer_recovered leaf.
    again = rebuild(archive.settings, "local", sqlite_target(tmp_path))
    assert again.recovered == []
    assert again.counts["transfers"] == 5


def test_a_non_empty_target_is_refused(archive: Archive, tmp_path: Path) -> None:
    target = sqlite_target(tmp_path)
    rebuild(archive.settings, "local", target)
    with pytest.raises(RebuildTargetNotEmpty):
        rebuild(archive.settings, "local", target)
    # A running service's catalogue is not empty either.
    with pytest.raises(RebuildTargetNotEmpty, match="not empty"):
        rebuild(archive.settings, "local", archive.settings.db_url)


def test_an_altered_segment_stops_the_rebuild_naming_it(archive: Archive, tmp_path: Path) -> None:
    offer = local_offer(archive.settings)
    key = segment_keys(offer)[1]
    data = b"".join(offer.get(key))
    header, first, rest = data.split(b"\n", 2)
    doc = json.loads(first)
    doc["actor"] = "token:someone-else:admin"
    altered = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    rewrite(offer, key, b"\n".join([header, altered.encode(), rest]))
    target = sqlite_target(tmp_path)
    with pytest.raises(SegmentInvalid) as stopped:
        rebuild(archive.settings, "local", target)
    assert stopped.value.key == key
    assert stopped.value.kind == "root"
    # What came before is committed, marked as a rebuild in progress; the same command,
    # once the segment is put back, resumes and finishes.
    rewrite(offer, key, data)
    report = rebuild(archive.settings, "local", target)
    assert report.segments_before == 1
    assert report.recovered == [archive.late]


def test_a_missing_segment_is_said(archive: Archive, tmp_path: Path) -> None:
    offer = local_offer(archive.settings)
    keys = segment_keys(offer)
    rewrite(offer, keys[1], None)
    with pytest.raises(SegmentInvalid) as stopped:
        rebuild(archive.settings, "local", sqlite_target(tmp_path))
    assert stopped.value.key == keys[2]
    assert stopped.value.kind == "gap"
    assert "missing" in stopped.value.detail


def test_an_altered_description_stops_the_rebuild_naming_it(
    archive: Archive, tmp_path: Path
) -> None:
    """A description rewritten whole (a valid zip, a title changed) contradicts the SHA-512
    its ingest.accepted leaf gives."""
    offer = local_offer(archive.settings)
    key = f"transfers/{archive.accepted[0]['transfer_id']}.zip"
    data = b"".join(offer.get(key))
    with zipfile.ZipFile(io.BytesIO(data)) as original:
        members = {info.filename: (info, original.read(info)) for info in original.infolist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as forged:
        for name, (info, content) in members.items():
            if name == "record.json":
                content = content.replace("Pièce n°0".encode(), "Pièce n°9".encode())
            forged.writestr(info, content)
    rewrite(offer, key, buffer.getvalue())
    with pytest.raises(DescriptionInvalid) as stopped:
        rebuild(archive.settings, "local", sqlite_target(tmp_path))
    assert stopped.value.key == key
    assert stopped.value.kind == "digest"


def test_a_rebuild_killed_midway_resumes(archive: Archive, tmp_path: Path) -> None:
    """The rebuild process is killed (SIGKILL) after its first segment's commit; the same
    command run again finishes, and the result is the same as an uninterrupted rebuild's."""
    target = sqlite_target(tmp_path)
    script = PRELUDE + (
        "from sae.config import load_settings\n"
        "from sae.recovery.rebuild import rebuild\n"
        "rebuild(load_settings(), 'local', sys.argv[1],"
        " after_segment=lambda key: os.kill(os.getpid(), 9))\n"
    )
    env = {
        **os.environ,
        "SAE_DATA_DIR": str(archive.settings.data_dir),
        "SAE_DATABASE_URL": archive.settings.db_url,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    if archive.settings.seda_xsd_dir is not None:
        env["SAE_SEDA_XSD_DIR"] = str(archive.settings.seda_xsd_dir)
    killed = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, target], env=env, check=False, capture_output=True
    )
    assert killed.returncode == -9, killed.stderr.decode()
    engine = make_engine(target)
    with engine.connect() as conn:
        marks = {n: v for n, v in conn.execute(text("SELECT name, value FROM journal_state"))}
        heads = conn.execute(text("SELECT count(*) FROM tree_heads")).scalar_one()
    engine.dispose()
    assert set(MARKS) <= set(marks)
    assert heads == 1
    # The sae command itself, run again with the same arguments, resumes.
    command = PRELUDE + "from sae.cli import app\napp(sys.argv[1:])\n"
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-c",
            command,
            "rebuild",
            "--from",
            "local",
            "--database",
            target,
            "--json",
        ],
        env=env,
        check=False,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["segments_before"] == 1
    assert report["recovered"] == [archive.late]
    assert report["admin_token_path"]
    check_same_answers(archive, target, Path(report["admin_token_path"]))
    engine = make_engine(target)
    with engine.connect() as conn:
        left = conn.execute(
            select(text("name"))
            .select_from(text("journal_state"))
            .where(text("name LIKE 'rebuild_%'"))
        ).all()
    engine.dispose()
    assert left == []


@pytest.mark.s3
def test_rebuild_from_s3_on_ceph(
    settings: Settings,
    tmp_path: Path,
    ceph_rgw: S3Server,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same from an S3 offer with Object Lock on the real Ceph RGW."""
    monkeypatch.setenv("SAE_TEST_CEPH_ACCESS", ceph_rgw.access_key)
    monkeypatch.setenv("SAE_TEST_CEPH_SECRET", ceph_rgw.secret_key)
    offers_file = tmp_path / "offers.yaml"
    offers_file.write_text(
        f"""
offers:
  - name: ceph
    kind: s3
    endpoint: {ceph_rgw.endpoint}
    bucket: {ceph_rgw.new_bucket_name()}
    access_key_env: SAE_TEST_CEPH_ACCESS
    secret_key_env: SAE_TEST_CEPH_SECRET
    region: {ceph_rgw.region}
    jurisdiction: FR
    site: "Datacentre départemental"
    create_bucket: true
strategy:
  copies: [ceph]
""",
        encoding="utf-8",
    )
    on_ceph = settings.model_copy(update={"offers_file": offers_file})
    load_offers(on_ceph).get("ceph").check()  # creates the Object Lock bucket
    with running(on_ceph) as api:
        api.load_rules(TEST_RULES_CSV)
        accepted, refused = deposit_all(api)
        snapshot = record(api, [*accepted, refused])
    archive = Archive(on_ceph, accepted, refused, "", snapshot, None, None)
    target = sqlite_target(tmp_path)
    report = rebuild(on_ceph, "ceph", target)
    assert report.recovered == []
    assert report.admin_token_path is not None
    with running(rebuilt_settings(archive, target)) as api:
        token = report.admin_token_path.read_text().strip()
        for transfer_id, before in snapshot.transfers.items():
            assert get_json(api, f"/api/v1/transfers/{transfer_id}", token) == before
        for object_id, before in snapshot.objects.items():
            assert get_json(api, f"/api/v1/objects/{object_id}", token) == before
            content = get_bytes(api, f"/api/v1/objects/{object_id}/content", token)
            assert content == snapshot.contents[object_id]
            assert verify_bundle(snapshot.proofs[object_id], content=content).valid
        assert events(api, snapshot.size, token) == snapshot.events


def test_a_rebuild_interrupted_while_recovering_transfers_resumes(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after the recovered transfer's commit, before the end: the marker followed
    the journal, so the same rebuild resumes and does not recover the transfer twice."""
    from sae.recovery import rebuild as module

    finish = module._Rebuild._finish

    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(module._Rebuild, "_finish", interrupted)
    target = sqlite_target(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        rebuild(archive.settings, "local", target)
    monkeypatch.setattr(module._Rebuild, "_finish", finish)
    report = rebuild(archive.settings, "local", target)
    assert report.recovered == []  # recovered by the first run, committed
    assert report.counts["transfers"] == 5
    assert report.admin_token_path is not None
    check_same_answers(archive, target, report.admin_token_path)


def test_the_command_prints_a_summary_and_refuses_what_it_must(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from sae.cli import app as cli

    runner = CliRunner()
    monkeypatch.setenv("SAE_DATA_DIR", str(archive.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", archive.settings.db_url)
    target = sqlite_target(tmp_path)
    done = runner.invoke(cli, ["rebuild", "--from", "local", "--database", target])
    assert done.exit_code == 0, done.output
    out = " ".join(done.output.split())
    assert "catalogue rebuilt from offer local" in out
    assert "archive_units: " in out
    assert "1 transfer(s) acknowledged after the last published journal segment" in out
    assert "Tokens are not rebuilt: a new admin token was written to" in out
    # A non-empty target: exit 2, said with its code.
    again = runner.invoke(cli, ["rebuild", "--from", "local", "--database", target])
    assert again.exit_code == 2
    assert "rebuild.target_not_empty" in again.output
    # An unknown offer: exit 2 too.
    unknown = runner.invoke(cli, ["rebuild", "--from", "nowhere", "--database", target])
    assert unknown.exit_code == 2
    # The configured database (no --database), lost: the new admin token replaces the old
    # one where a first start writes it.
    token_file = archive.settings.data_dir / "admin.token"
    old_token = token_file.read_text()
    monkeypatch.setenv("SAE_DATABASE_URL", sqlite_target(tmp_path))
    in_place = runner.invoke(cli, ["rebuild", "--from", "local"])
    assert in_place.exit_code == 0, in_place.output
    assert str(token_file) in "".join(in_place.output.split())
    assert token_file.read_text() != old_token
    # A segment that does not verify: exit 1, named.
    offer = local_offer(archive.settings)
    key = segment_keys(offer)[0]
    data = b"".join(offer.get(key))
    rewrite(offer, key, data.replace(b'"actor":"', b'"actor":"x', 1))  # a leaf's actor
    stopped = runner.invoke(
        cli, ["rebuild", "--from", "local", "--database", sqlite_target(tmp_path)]
    )
    assert stopped.exit_code == 1
    said = "".join(stopped.output.split())  # Rich folds long lines
    assert f"rebuildstopped:{key}:root:" in said


def test_an_empty_offer_is_not_a_rebuild(settings: Settings, tmp_path: Path) -> None:
    from sae.recovery.errors import RebuildStopped

    with pytest.raises(RebuildStopped, match="no journal segment and no description"):
        rebuild(settings, "local", sqlite_target(tmp_path))


def _forge_head(
    archive: Archive, tmp_path: Path, *, new_key: bool, new_tsa: bool
) -> tuple[str, bytes]:
    """The first segment with its head re-signed by another key and/or re-stamped by another
    TSA: self-consistent (``sae journal verify --offer`` passes it), but not this SAE's."""
    import base64

    from sae.journal.checkpoint import SigningKey, format_time
    from sae.journal.tsa import BuiltinTSA

    offer = local_offer(archive.settings)
    key = segment_keys(offer)[0]
    data = b"".join(offer.get(key))
    first, rest = data.split(b"\n", 1)
    header = json.loads(first)
    checkpoint = base64.b64decode(header["checkpoint"])
    if new_key:
        signer = SigningKey.generate()
        header["signature"] = base64.b64encode(signer.sign(checkpoint)).decode()
        header["public_key_pem"] = signer.public_pem.decode()
    if new_tsa:
        tsa = BuiltinTSA.load(tmp_path / "another-tsa")
        token = tsa.timestamp(checkpoint)
        header["tsr"] = base64.b64encode(token.tsr).decode()
        header["tsa_chain_pem"] = token.chain_pem.decode()
        header["tsa_time"] = format_time(token.gen_time)
    line = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    rewrite(offer, key, line.encode() + b"\n" + rest)
    return key, data


@pytest.mark.parametrize("forged", ["key", "tsa"])
def test_a_head_signed_or_stamped_by_others_stops_the_rebuild(
    archive: Archive, tmp_path: Path, forged: str
) -> None:
    key, _ = _forge_head(archive, tmp_path, new_key=forged == "key", new_tsa=forged == "tsa")
    assert verify_offer(local_offer(archive.settings)).ok  # consistent in itself
    with pytest.raises(SegmentInvalid) as stopped:
        rebuild(archive.settings, "local", sqlite_target(tmp_path))
    assert stopped.value.key == key
    assert stopped.value.kind == "head"
    said = "not this SAE's" if forged == "key" else "a TSA this SAE does not trust"
    assert said in stopped.value.detail


def test_a_description_contradicting_older_leaves_stops_the_rebuild(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaves written before ``description_sha512`` existed: the record is then checked field
    by field against the transfer's leaves, and a unit's title changed is found."""
    import dataclasses

    from sae.ingest import replay as ingest_replay

    def without_digest(context: replay.ReplayContext, event: replay.LeafEvent) -> None:
        payload = {k: v for k, v in event.payload.items() if k != "description_sha512"}
        ingest_replay.replay_accepted(context, dataclasses.replace(event, payload=payload))

    monkeypatch.setitem(replay.REPLAYS, "ingest.accepted", without_digest)
    offer = local_offer(archive.settings)
    key = f"transfers/{archive.accepted[0]['transfer_id']}.zip"
    data = b"".join(offer.get(key))
    with zipfile.ZipFile(io.BytesIO(data)) as original:
        members = [(info, original.read(info)) for info in original.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as forged:
        for info, content in members:
            if info.filename == "record.json":
                content = content.replace("Pièce n°0".encode(), "Pièce n°9".encode())
            forged.writestr(info, content)
    rewrite(offer, key, buffer.getvalue())
    with pytest.raises(DescriptionInvalid) as stopped:
        rebuild(archive.settings, "local", sqlite_target(tmp_path))
    assert stopped.value.key == key
    assert stopped.value.kind == "objects"
    assert "title" in stopped.value.detail


class _Stop(Exception):
    """Raised by a test's ``after_segment`` to stop a rebuild at a chosen segment."""


def test_replay_journal_catches_a_restored_catalogue_up(archive: Archive, tmp_path: Path) -> None:
    """``sae restore``'s catch-up (``replay_journal``): a catalogue holding the journal up to a
    leaf inside a segment (as a backup taken between a leaf's commit and its head's seal)
    is caught up from the offer: the straddling segment verified whole, its leaves the
    catalogue holds compared, every later one replayed, the late transfer recovered."""
    from sae.auth.service import create_token
    from sae.db import make_sessionmaker, transaction
    from sae.journal.keys import load_journal_keys
    from sae.recovery.rebuild import replay_journal

    offer = local_offer(archive.settings)
    # A segment of more than one leaf whose last leaf changes nothing a replay restores.
    chosen: tuple[str, int, int] | None = None
    for key in segment_keys(offer):
        first, end = (int(n) for n in key.removeprefix(SEGMENTS).split(".")[0].split("-"))
        last = json.loads(b"".join(offer.get(key)).rstrip(b"\n").rsplit(b"\n", 1)[1])
        # (A staff read, e.g. access.object_read without a ``register``, writes no row.)
        changes_nothing = last["type"] in replay.NO_STATE or (
            last["type"].startswith("access.") and "register" not in last["data"]
        )
        if end - first > 1 and changes_nothing:
            chosen = (key, first, end)
    assert chosen is not None
    key, first, end = chosen

    target = backup_inside(archive, tmp_path, key, end)
    engine = make_engine(target)
    sessions = make_sessionmaker(engine)
    keys = load_journal_keys(archive.settings)
    result = replay_journal(
        sessions, offer, start_leaf=end - 1, keys=keys, settings=archive.settings
    )
    assert result.leaves >= 1
    assert result.recovered == [archive.late]
    # The restore journals and seals; here, a token and a head.
    with transaction(sessions) as session:
        _, secret = create_token(session, role="admin")
    with transaction(sessions) as session:
        from sae.journal.service import seal

        seal(session, signer=keys.signer, tsa=keys.tsa, origin=keys.origin, wait=True)
    engine.dispose()
    token_path = tmp_path / "restored.token"
    token_path.write_text(secret)
    check_same_answers(archive, target, token_path)
    # A leaf the catalogue holds that differs from the offer's stops the catch-up.
    first_key = segment_keys(offer)[0]
    first_end = int(first_key.removeprefix(SEGMENTS).split(".")[0].split("-")[1])
    other = backup_inside(archive, tmp_path, first_key, first_end)
    engine = make_engine(other)
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET leaf = :b WHERE leaf_index = 0"), {"b": b"{}"})
    with pytest.raises(SegmentInvalid, match="leaf 0 differs") as stopped:
        replay_journal(
            make_sessionmaker(engine),
            offer,
            start_leaf=first_end - 1,
            keys=keys,
            settings=archive.settings,
        )
    engine.dispose()
    assert stopped.value.key == first_key


def backup_inside(archive: Archive, tmp_path: Path, key: str, end: int) -> str:
    """A catalogue as a backup taken inside segment ``key`` (ending at leaf ``end``) holds it:
    rebuilt up to that segment, then its last leaf, the nodes it completed, its head and its
    copy removed. Returns its URL."""

    def stop(done: str) -> None:
        if done == key:
            raise _Stop

    target = sqlite_target(tmp_path)
    with pytest.raises(_Stop):
        rebuild(archive.settings, "local", target, after_segment=stop)
    engine = make_engine(target)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE leaf_index = :i"), {"i": end - 1})
        for level in range(1, 64):
            if end % (1 << level) == 0:
                conn.execute(
                    text('DELETE FROM journal_nodes WHERE level = :l AND "index" = :i'),
                    {"l": level, "i": (end >> level) - 1},
                )
        conn.execute(text("DELETE FROM tree_heads WHERE tree_size = :s"), {"s": end})
        conn.execute(text("DELETE FROM metadata_copies WHERE key = :k"), {"k": key})
        conn.execute(text("DELETE FROM journal_state WHERE name LIKE 'rebuild_%'"))
        conn.execute(
            text("UPDATE journal_state SET value = :v WHERE name = 'tree_size'"), {"v": end - 1}
        )
    engine.dispose()
    return target


def test_a_scratch_rebuild_leaves_the_journal_as_the_offer_holds_it(
    archive: Archive, tmp_path: Path
) -> None:
    """``sae drill``'s rebuild: no summary event, no token, no head: the journal is the
    offer's (and the recovered transfer's leaf)."""
    report = rebuild(archive.settings, "local", sqlite_target(tmp_path), scratch=True)
    assert report.admin_token_path is None
    assert report.head_size is None
    assert report.recovered == [archive.late]
    assert report.tree_size == report.leaves + 1  # the recovered transfer's leaf
    assert report.counts["events"] == report.tree_size
    assert report.counts["tree_heads"] == report.segments


def test_an_offer_behind_another_is_refused_the_other_rebuilds(
    settings: Settings, tmp_path: Path
) -> None:
    """Site A missed the last segments (it was down when they were published): rebuilding
    from it would recover the late transfer under leaf indices site B's journal already
    gives to other leaves — a fork. The rebuild says to use site B, which rebuilds."""
    offers_file = tmp_path / "offers.yaml"
    offers_file.write_text(TWO_SITES.format(root=tmp_path / "offers"), encoding="utf-8")
    two = settings.model_copy(update={"offers_file": offers_file})
    with running(two) as api:
        api.load_rules(TEST_RULES_CSV)
        accepted, _ = deposit_all(api)
        publish(api)
        size = tree_size(api)
        late = api.deposit(big_sip("MSG-REB-LATE", 1))
        assert late.status_code == 201, late.text
        publish(api)
    site_a = load_offers(two).get("site-a")
    assert isinstance(site_a, FilesystemOffer)
    for key in segment_keys(site_a):
        if int(key.removeprefix(SEGMENTS).split("-")[0]) >= size:
            rewrite(site_a, key, None)
    # Its tails too (the late deposit's would have given it those leaves): say the site was
    # put back from an older copy of its disks.
    for key in list(site_a.list_keys(TAILS)):
        span = parse_tail_key(key)
        if span is not None and span[1] > size:
            rewrite(site_a, key, None)
    with pytest.raises(SegmentInvalid) as stopped:
        rebuild(two, "site-a", sqlite_target(tmp_path))
    assert stopped.value.kind == "behind"
    assert "rebuild from site-b" in stopped.value.detail
    report = rebuild(two, "site-b", sqlite_target(tmp_path))
    assert report.recovered == []
    assert report.counts["transfers"] == len(accepted) + 2  # and the refused one


def test_a_rebuild_accepts_the_keys_of_the_history_it_replays(
    settings: Settings, tmp_path: Path
) -> None:
    """Heads before a ``sae journal rotate-key`` are signed by the old key, those after by the
    new: the rebuild learns the new key from the rotation leaf it replays (signed by the old
    one), and refuses a history that does not end with this SAE's key."""
    from sae.journal.checkpoint import SigningKey
    from sae.journal.keyhistory import fingerprint
    from sae.journal.rotation import rotate_key

    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        assert api.deposit(build_zip(simple_sip("MSG-ROT-1"))).status_code == 201
        publish(api)
        rotation = rotate_key(settings, api.runtime.sessions)
        assert api.deposit(build_zip(simple_sip("MSG-ROT-2"))).status_code == 201
        publish(api)
    url = sqlite_target(tmp_path)
    report = rebuild(settings, "local", url)
    assert report.leaves > 0
    engine = make_engine(url)
    try:
        from sqlalchemy.orm import Session

        with Session(engine) as session:
            verdict = verify_journal(session, workers=1)
        assert verdict.ok, verdict.problems
        assert [k.fingerprint for k in verdict.keys][-1] == rotation.new_fingerprint
    finally:
        engine.dispose()

    # Another SAE (its own key, no retired key of this one; the same TSA) does not take it.
    import shutil

    stranger = settings.model_copy(update={"data_dir": tmp_path / "stranger"})
    SigningKey.load_or_create(stranger.data_dir / "keys")
    shutil.copytree(settings.data_dir / "tsa", stranger.data_dir / "tsa")
    (stranger.data_dir / "offers").mkdir()
    (stranger.data_dir / "offers" / "local").symlink_to(settings.data_dir / "offers" / "local")
    with pytest.raises(SegmentInvalid, match="not this SAE's"):
        rebuild(stranger, "local", sqlite_target(tmp_path))
    assert fingerprint(
        SigningKey.load(stranger.data_dir / "keys" / "journal-signing.key").public_pem
    )


def test_a_head_published_twice_from_one_watermark_is_read_once(
    archive: Archive, tmp_path: Path
) -> None:
    """Two publishers that raced wrote [a, c) beside [a, b) and [b, c): the rebuild imports
    [a, c) past b, after checking [a, b) against what it holds, and finds [b, c) wholly
    imported with the very head it holds."""
    from sae.db import make_engine, make_sessionmaker
    from sae.journal.models import TreeHead
    from sae.journal.publishing import _write
    from sae.journal.segments import SegmentHead, segment_key

    offer = local_offer(archive.settings)
    spans = [
        tuple(int(n) for n in key.removeprefix(SEGMENTS).removesuffix(".jsonl").split("-"))
        for key in segment_keys(offer)
    ]
    assert len(spans) >= 3
    (a, b), (b2, c) = spans[1], spans[2]
    assert b == b2
    engine = make_engine(archive.settings.db_url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        head = session.scalar(select(TreeHead).where(TreeHead.tree_size == c))
        live = sorted(session.scalars(select(TreeHead.tree_size)))
    assert head is not None
    assert _write(sessions, offer, segment_key(a, c), a, SegmentHead.of(head)) is not None
    engine.dispose()
    target = sqlite_target(tmp_path)
    rebuild(archive.settings, "local", target)
    rebuilt = make_engine(target)
    with make_sessionmaker(rebuilt)() as session:
        held = sorted(session.scalars(select(TreeHead.tree_size)))
    rebuilt.dispose()
    assert [n for n in held if n <= c] == [n for n in live if n <= c]
