"""``sae backup`` and ``sae restore`` (issue 17 item 5), as an operator runs them.

The backup is taken from a real server process while it accepts deposits; the restores run the
real commands on real files, with the offer in its own directory beside the data directory (a
data directory lost does not take the offer with it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sae.cli import app
from sae.config import load_settings
from tests.conftest import PG_URL, TEST_RULES_CSV, Api, postgres_schema
from tests.crash.harness import ServerProcess
from tests.sipfactory import build_zip, simple_sip

runner = CliRunner()

ONE_SITE = """offers:
  - name: site-a
    kind: filesystem
    path: {root}
    jurisdiction: FR
    site: "Hôtel de ville"
strategy:
  copies: [site-a]
"""


def _backups(dest: Path) -> list[Path]:
    return sorted(p for p in dest.iterdir() if p.name.startswith("sae-backup-"))


def _sha512sum_check(backup: Path) -> subprocess.CompletedProcess[str]:
    sha512sum = shutil.which("sha512sum")
    assert sha512sum is not None, "sha512sum (coreutils) is needed"
    return subprocess.run(
        [sha512sum, "-c", "SHA512SUMS"],
        cwd=backup,
        capture_output=True,
        text=True,
        check=False,
    )


# --------------------------------------------------------------------------- taking a backup


def test_backup_while_a_server_is_depositing(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "sae-data")
    server.start()
    dest = tmp_path / "backups"
    stop = threading.Event()
    statuses: list[int] = []

    def deposit() -> None:
        with server.client() as client:
            n = 0
            while not stop.is_set():
                n += 1
                sip = build_zip(simple_sip(f"BACKUP-LIVE-{n}", payload=b"%PDF-1.4\n" * (n + 50)))
                response = client.post(
                    "/api/v1/transfers",
                    content=sip,
                    headers={"Content-Type": "application/zip"},
                )
                statuses.append(response.status_code)

    depositor = threading.Thread(target=deposit)
    try:
        depositor.start()
        while len(statuses) < 3:  # deposits are flowing before the copy starts
            stop.wait(0.05)
        taken = [server.cli("backup", str(dest)) for _ in range(2)]
        during = len(statuses)
        while len(statuses) < during + 3:  # and still flowing after it
            stop.wait(0.05)
    finally:
        stop.set()
        depositor.join()
        server.stop()
    for result in taken:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PRIVATE KEYS" in result.stderr
    assert set(statuses) == {201}, statuses
    backups = _backups(dest)
    assert len(backups) == 2
    assert [Path(r.stdout.strip().splitlines()[-1]) for r in taken] == backups
    for backup in backups:
        check = _sha512sum_check(backup)
        assert check.returncode == 0, check.stdout + check.stderr
        # Secret: the owner alone reads it.
        assert stat.S_IMODE(backup.stat().st_mode) == 0o700
        for path in backup.rglob("*"):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), path
        manifest = json.loads((backup / "MANIFEST.json").read_text())
        assert manifest["format"] == "sae-backup/1"
        assert manifest["contains_private_keys"] is True
        roles = {f["path"]: f["role"] for f in manifest["files"]}
        assert roles["keys/journal-signing.key"] == "signing_key"
        assert roles["tsa/tsa.key"] == "tsa_key"
        for entry in manifest["files"]:
            data = (backup / entry["path"]).read_bytes()
            assert (hashlib.sha512(data).hexdigest(), len(data)) == (
                entry["sha512"],
                entry["size"],
            )
        with sqlite3.connect(backup / "database" / "sae.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            leaves = db.execute("SELECT count(*), max(leaf_index) FROM events").fetchone()
            accepted = db.execute("SELECT count(*) FROM transfers WHERE status = 'OK'").fetchone()
        assert not (backup / "database" / "sae.db-wal").exists()
        database = manifest["database"]
        assert (database["tree_size"], database["last_leaf_index"]) == (
            leaves[0],
            leaves[0] - 1,
        )
        assert database["accepted_transfers"] == accepted[0] > 0
    # Each backup is journaled, after what it copied.
    with sqlite3.connect(server.data_dir / "sae.db") as live:
        journaled = live.execute(
            "SELECT leaf_index, payload FROM events WHERE type = 'catalog.backed_up' "
            "ORDER BY leaf_index"
        ).fetchall()
    assert [json.loads(p)["backup"] for _, p in journaled] == [b.name for b in backups]
    for (leaf, payload), backup in zip(journaled, backups, strict=True):
        manifest = json.loads((backup / "MANIFEST.json").read_text())
        assert json.loads(payload)["tree_size"] == manifest["database"]["tree_size"] <= leaf


def test_backup_refused_inside_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(tmp_path / "sae-data"))
    monkeypatch.delenv("SAE_DATABASE_URL", raising=False)
    monkeypatch.delenv("SAE_OFFERS_FILE", raising=False)
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["backup", str(tmp_path / "sae-data" / "backups")])
    assert result.exit_code == 1
    # Rich wraps the message at the terminal's width, wherever the temporary path ends.
    assert "inside the data directory" in " ".join(result.output.split())
    assert not (tmp_path / "sae-data" / "backups").exists()


def test_a_backup_that_cannot_be_written_says_so_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(tmp_path / "sae-data"))
    monkeypatch.delenv("SAE_DATABASE_URL", raising=False)
    monkeypatch.delenv("SAE_OFFERS_FILE", raising=False)
    monkeypatch.setenv("COLUMNS", "1000")
    assert runner.invoke(app, ["init"]).exit_code == 0
    not_a_directory = tmp_path / "backups"
    not_a_directory.write_bytes(b"a file where the backups should go")
    result = runner.invoke(app, ["backup", str(not_a_directory)])
    assert result.exit_code == 1
    assert "could not be written" in result.output
    assert "Traceback" not in result.output
    assert not_a_directory.read_bytes() == b"a file where the backups should go"


def test_backup_of_a_postgresql_catalogue_refused_with_the_procedure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAE_DATA_DIR", str(tmp_path / "sae-data"))
    monkeypatch.setenv("SAE_DATABASE_URL", PG_URL)
    result = runner.invoke(app, ["backup", str(tmp_path / "backups")])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "PostgreSQL" in said
    assert "pg_dump" in said
    assert "docs/recovery.md" in said
    assert "--keys-only" in said
    assert not (tmp_path / "backups").exists()


# --------------------------------------------------------------------------- restoring


class Site:
    """A data directory and its offer, in separate directories, driven by the real commands."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.offer = root / "offer-site-a"
        self.offers_file = root / "etc" / "offers.yaml"
        self.offers_file.parent.mkdir(parents=True)
        self.offers_file.write_text(ONE_SITE.format(root=self.offer), encoding="utf-8")
        self.monkeypatch = monkeypatch
        self.admin_token: str | None = None
        self.settings_overrides: dict[str, Any] = {}
        self.use(root / "sae-data")

    def use(self, data_dir: Path) -> None:
        """Point the commands (the environment) at ``data_dir``."""
        self.data_dir = data_dir
        self.monkeypatch.setenv("SAE_DATA_DIR", str(data_dir))
        self.monkeypatch.setenv("COLUMNS", "1000")  # Rich does not fold what tests look for
        self.monkeypatch.setenv("SAE_OFFERS_FILE", str(self.offers_file))
        self.monkeypatch.delenv("SAE_DATABASE_URL", raising=False)

    @property
    def settings(self) -> Any:
        return load_settings(
            data_dir=self.data_dir, offers_file=self.offers_file, **self.settings_overrides
        )

    @contextmanager
    def api(self) -> Iterator[Api]:
        from fastapi.testclient import TestClient

        from sae.app import create_app

        settings = self.settings
        if self.admin_token is not None:
            # A backup holds no token (the catalogue holds their hashes): the operator keeps
            # theirs, and it still opens the restored catalogue.
            self.data_dir.mkdir(exist_ok=True)
            (self.data_dir / "admin.token").write_text(self.admin_token)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            api = Api(client, settings)
            self.admin_token = self.admin_token or api.admin
            yield api

    def deposit(self, *message_ids: str) -> list[str]:
        """Deposit, then seal over the deposits: a transfer's answer names its covering head,
        which must not change between the answer recorded and the one compared with it."""
        ids = []
        with self.api() as api:
            if not api.client.get("/api/v1/rules", headers=api.auth()).json():
                api.load_rules(TEST_RULES_CSV)
            for message_id in message_ids:
                response = api.deposit(build_zip(simple_sip(message_id)))
                assert response.status_code == 201, response.text
                ids.append(response.json()["transfer_id"])
        sealed = self.cli("journal", "seal")
        assert sealed.exit_code == 0, sealed.output
        return ids

    def transfers(self, ids: list[str]) -> dict[str, Any]:
        """The API's answers for each transfer (its JSON, its ATR) and the units."""
        out: dict[str, Any] = {}
        with self.api() as api:
            for transfer_id in ids:
                body = api.client.get(f"/api/v1/transfers/{transfer_id}", headers=api.auth())
                assert body.status_code == 200, body.text
                atr = api.client.get(f"/api/v1/transfers/{transfer_id}/atr", headers=api.auth())
                assert atr.status_code == 200, atr.text
                out[transfer_id] = (body.json(), atr.content)
            units = api.client.get("/api/v1/units", headers=api.auth())
            assert units.status_code == 200, units.text
            out["units"] = units.json()
        return out

    def cli(self, *args: str) -> Any:
        result = runner.invoke(app, list(args))
        if args[0] == "restore":
            # The keys are cached per data directory for the life of a process; a server
            # started after a restore is a new process, which reads the keys put back.
            import sae.journal.keys

            sae.journal.keys._cache.clear()
        return result


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    return Site(tmp_path, monkeypatch)


def _backup(site: Site) -> Path:
    result = site.cli("backup", str(site.root / "backups"))
    assert result.exit_code == 0, result.output
    return _backups(site.root / "backups")[-1]


def test_restore_into_an_empty_data_directory_gives_the_same_transfers(site: Site) -> None:
    ids = site.deposit("RESTORE-1", "RESTORE-2", "RESTORE-3")
    before = site.transfers(ids)
    backup = _backup(site)

    site.use(site.root / "new-sae-data")
    restored = site.cli("restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert f"backup {backup.name} restored" in restored.output
    assert site.transfers(ids) == before
    for name in ("journal-signing.key", "journal-signing.pub.pem"):
        assert (site.data_dir / "keys" / name).read_bytes() == (
            site.root / "sae-data" / "keys" / name
        ).read_bytes()
    assert stat.S_IMODE((site.data_dir / "keys" / "journal-signing.key").stat().st_mode) == 0o600
    assert (site.data_dir / "tsa" / "tsa.key").read_bytes() == (
        site.root / "sae-data" / "tsa" / "tsa.key"
    ).read_bytes()
    # The restored journal is whole, and the restore is in it.
    verify = site.cli("journal", "verify")
    assert verify.exit_code == 0, verify.output
    with sqlite3.connect(site.data_dir / "sae.db") as db:
        (payload,) = db.execute(
            "SELECT payload FROM events WHERE type = 'catalog.restored'"
        ).fetchone()
    assert json.loads(payload)["backup"] == backup.name
    # Later deposits go on where the backup left off.
    site.deposit("RESTORE-4")


def test_restore_puts_the_offers_file_back(site: Site) -> None:
    site.deposit("OFFERS-1")
    backup = _backup(site)
    original = site.offers_file.read_bytes()
    site.offers_file.unlink()
    site.use(site.root / "new-sae-data")
    restored = site.cli("restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert site.offers_file.read_bytes() == original


@pytest.mark.parametrize(
    "member", ["database/sae.db", "keys/journal-signing.key", "tsa/tsa.key", "MANIFEST.json"]
)
def test_a_corrupted_backup_is_refused_naming_the_file(site: Site, member: str) -> None:
    site.deposit("CORRUPT-1")
    backup = _backup(site)
    path = backup / member
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert _sha512sum_check(backup).returncode != 0  # what the operator's own check says too

    site.use(site.root / "new-sae-data")
    refused = site.cli("restore", str(backup))
    assert refused.exit_code == 1
    said = " ".join(refused.output.split())
    assert "recovery.backup_invalid" in said
    assert member in said
    assert not (site.data_dir / "sae.db").exists()
    assert not (site.data_dir / "keys").exists()


def test_a_backup_with_a_file_added_or_another_format_is_refused(site: Site) -> None:
    site.deposit("FORMAT-1")
    backup = _backup(site)
    site.use(site.root / "new-sae-data")

    (backup / "keys" / "extra.pem").write_bytes(b"not listed")
    refused = site.cli("restore", str(backup))
    assert refused.exit_code == 1
    assert "keys/extra.pem" in refused.output
    (backup / "keys" / "extra.pem").unlink()

    manifest = json.loads((backup / "MANIFEST.json").read_text())
    manifest["format"] = "sae-backup/99"
    data = json.dumps(manifest).encode()
    (backup / "MANIFEST.json").write_bytes(data)
    sums = (backup / "SHA512SUMS").read_text().splitlines()
    sums = [
        f"{hashlib.sha512(data).hexdigest()}  MANIFEST.json" if s.endswith("  MANIFEST.json") else s
        for s in sums
    ]
    (backup / "SHA512SUMS").write_text("\n".join(sums) + "\n")
    refused = site.cli("restore", str(backup))
    assert refused.exit_code == 1
    assert "sae-backup/99" in refused.output
    assert not (site.data_dir / "sae.db").exists()


def test_restore_onto_a_catalogue_refused_without_force_and_moved_aside_with_it(
    site: Site,
) -> None:
    ids = site.deposit("ASIDE-1")
    before = site.transfers(ids)
    backup = _backup(site)
    # Another catalogue and other keys where the backup goes.
    another = Site(site.root / "another", site.monkeypatch)
    another.deposit("OTHER-1")
    other = another.data_dir
    site.use(other)
    old_db = (other / "sae.db").read_bytes()
    old_key = (other / "keys" / "journal-signing.key").read_bytes()

    refused = site.cli("restore", str(backup))
    assert refused.exit_code == 1
    said = " ".join(refused.output.split())
    assert "recovery.restore_refused" in said
    assert str(other / "sae.db") in said
    assert "--force" in said
    assert (other / "sae.db").read_bytes() == old_db

    forced = site.cli("restore", "--force", str(backup))
    assert forced.exit_code == 0, forced.output
    aside = sorted(other.glob("sae.db.replaced-by-restore-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == old_db
    (keys_aside,) = other.glob("keys.replaced-by-restore-*")
    assert (keys_aside / "journal-signing.key").read_bytes() == old_key

    # Forced again (the catalogue put back has journaled its restore since): what was set
    # aside the first time is kept too, whatever the second.
    again = site.cli("restore", "--force", str(backup))
    assert again.exit_code == 0, again.output
    set_aside = sorted(other.glob("sae.db.replaced-by-restore-*"))
    assert len(set_aside) == 2
    assert old_db in {p.read_bytes() for p in set_aside}
    assert site.transfers(ids) == before


def test_a_data_directory_that_lost_only_its_catalogue_needs_no_force(site: Site) -> None:
    ids = site.deposit("LOST-1")
    before = site.transfers(ids)
    backup = _backup(site)
    for name in ("sae.db", "sae.db-wal", "sae.db-shm"):
        (site.data_dir / name).unlink(missing_ok=True)
    restored = site.cli("restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert "moved aside" not in restored.output  # same keys: nothing replaced
    assert site.transfers(ids) == before


def test_a_stale_wal_beside_the_target_is_a_conflict(site: Site) -> None:
    """SQLite would replay a -wal left beside the catalogue put back into it."""
    site.deposit("WAL-1")
    backup = _backup(site)
    target = site.root / "new-sae-data"
    target.mkdir()
    (target / "sae.db-wal").write_bytes(b"stale")
    site.use(target)
    refused = site.cli("restore", str(backup))
    assert refused.exit_code == 1
    assert "sae.db-wal" in refused.output


def test_a_backup_taken_before_half_the_steps_then_everything_after_replayed(
    site: Site,
) -> None:
    first = site.deposit("HALF-1", "HALF-2")
    assert site.cli("journal", "seal").exit_code == 0
    backup = _backup(site)
    later = site.deposit("HALF-3", "HALF-4")
    assert site.cli("journal", "seal").exit_code == 0
    before = site.transfers(first + later)

    # The catalogue is lost; the offer and the backup remain.
    shutil.rmtree(site.data_dir)
    site.use(site.root / "sae-data")
    restored = site.cli("restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert site.transfers(first + later) == before
    verify = site.cli("journal", "verify")
    assert verify.exit_code == 0, verify.output
    with sqlite3.connect(site.data_dir / "sae.db") as db:
        (payload,) = db.execute(
            "SELECT payload FROM events WHERE type = 'catalog.restored'"
        ).fetchone()
    counts = json.loads(payload)
    assert counts["transfers_replayed"] == 2
    assert counts["leaves_replayed"] > 0


def test_a_backup_holding_leaves_not_yet_sealed_is_caught_up(site: Site) -> None:
    """A running server's catalogue usually holds leaves no head covers yet: the segment
    sealed later straddles the backup's tree size, its first leaves already in the backup."""
    first = site.deposit("UNSEALED-1")
    _backup(site)  # its catalog.backed_up leaf is not sealed: the next backup holds it
    backup = _backup(site)
    manifest = json.loads((backup / "MANIFEST.json").read_text())["database"]
    assert manifest["tree_size"] > manifest["last_sealed_tree_size"]
    later = site.deposit("UNSEALED-2")
    before = site.transfers(first + later)

    shutil.rmtree(site.data_dir)
    restored = site.cli("restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert site.transfers(first + later) == before
    verify = site.cli("journal", "verify")
    assert verify.exit_code == 0, verify.output


def _seal_and_publish(runtime: Any) -> int:
    """What a server's sealer does in its turn: a head over every committed leaf, published."""
    from sae.journal.publishing import publish_segments
    from sae.journal.sealing import seal_now

    head = seal_now(runtime.sessions, runtime.settings, wait=True)
    assert head is not None
    publish_segments(runtime.sessions, runtime.strategy_offers)
    return int(head.tree_size)


def _sealed_between_copy_and_leaf(monkeypatch: pytest.MonkeyPatch, seal: Any) -> list[int]:
    """Make ``sae backup`` meet a head sealed after its copy of the catalogue and before its
    ``catalog.backed_up`` leaf: where a running server's sealer, poked by the last deposit,
    takes its turn now and then (tests/recovery/test_lose_the_database.py failed so). The
    sizes of the heads so sealed are appended to the list returned."""
    import sae.recovery.backup

    copy = sae.recovery.backup.take_backup
    sealed: list[int] = []

    def copy_then_seal(*args: Any, **kwargs: Any) -> Any:
        result = copy(*args, **kwargs)
        sealed.append(seal())
        return result

    monkeypatch.setattr(sae.recovery.backup, "take_backup", copy_then_seal)
    return sealed


def _head_row(database: Path, size: int) -> tuple[Any, ...] | None:
    with sqlite3.connect(database) as db:
        row: tuple[Any, ...] | None = db.execute(
            "SELECT tree_size, root_hash, checkpoint, signature, tsr, timestamp FROM tree_heads"
            " WHERE tree_size = ?",
            (size,),
        ).fetchone()
    return row


def test_a_head_sealed_between_the_copy_and_its_leaf_is_restored(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head covering the last deposit, sealed by the server after the backup's copy: its
    segment ends at the backup's tree size exactly, over leaves the backup holds. The catch-up
    used to skip it as a segment the backup held, so the transfer's reply named a head the
    restored catalogue answered 404 (its leaves under the next head instead)."""
    first = site.deposit("BETWEEN-1")
    # The server's sealer waits for the spacing after that head: the test says when it seals.
    site.settings_overrides["seal_spacing_seconds"] = 3600
    with site.api() as api:
        response = api.deposit(build_zip(simple_sip("BETWEEN-2")))
        assert response.status_code == 201, response.text
        second = response.json()["transfer_id"]
        sealed = _sealed_between_copy_and_leaf(monkeypatch, lambda: _seal_and_publish(api.runtime))
        backup = _backup(site)
        head = api.client.get(f"/api/v1/journal/heads/{sealed[0]}", headers=api.auth())
        assert head.status_code == 200, head.text
    # (the server's stop sealed and published the backup's own leaf: the offer holds more)
    size = json.loads((backup / "MANIFEST.json").read_text())["database"]["tree_size"]
    assert sealed == [size]
    before = site.transfers([*first, second])
    assert before[second][0]["journal"]["tree_size"] == size

    shutil.rmtree(site.data_dir)
    restored = site.cli("restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert "1 signed head(s) sealed after the backup's copy" in restored.output
    assert site.transfers([*first, second]) == before
    with site.api() as api:
        again = api.client.get(f"/api/v1/journal/heads/{size}", headers=api.auth())
        assert again.status_code == 200, again.text
        assert again.json() == head.json()
    verify = site.cli("journal", "verify")
    assert verify.exit_code == 0, verify.output


def test_a_head_sealed_after_the_copy_is_restored_when_the_offer_holds_nothing_after_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same head, and the database lost before the backup's own leaf was sealed: the
    offer holds no leaf after the backup's tree size, only a head the backup lacks. The
    restore used to find nothing to catch up."""
    from sae.runtime import Runtime

    site.deposit("ALONE-1")
    _backup(site)  # its catalog.backed_up leaf is not sealed: the next copy holds it

    def seal() -> int:
        runtime = Runtime.open(site.settings, check_keys=False)
        try:
            return _seal_and_publish(runtime)
        finally:
            runtime.close()

    sealed = _sealed_between_copy_and_leaf(monkeypatch, seal)
    backup = _backup(site)
    manifest = json.loads((backup / "MANIFEST.json").read_text())["database"]
    assert sealed == [manifest["tree_size"]]
    assert manifest["last_sealed_tree_size"] < manifest["tree_size"]
    head = _head_row(site.data_dir / "sae.db", manifest["tree_size"])
    assert head is not None

    shutil.rmtree(site.data_dir)
    restored = site.cli("restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert _head_row(site.data_dir / "sae.db", manifest["tree_size"]) == head
    verify = site.cli("journal", "verify")
    assert verify.exit_code == 0, verify.output


def test_restore_refuses_an_offer_whose_journal_is_not_the_backups(
    site: Site, tmp_path: Path
) -> None:
    """Replaying another journal's leaves onto the backup would fork it: refused, named."""
    from sae.recovery.backup import check_backup, plan_catch_up
    from sae.recovery.errors import RestoreRefused
    from sae.storage.offers import parse_offers

    site.deposit("FORK-1")
    assert site.cli("journal", "seal").exit_code == 0
    backup = check_backup(_backup(site))
    own = parse_offers(site.offers_file).get("site-a")
    assert plan_catch_up(backup, own).common_head > 0
    # Another SAE on another offer: its journal is another tree.
    other = Site(tmp_path / "elsewhere", site.monkeypatch)
    other.deposit("FORK-OTHER-1", "FORK-OTHER-2")
    assert other.cli("journal", "seal").exit_code == 0
    with pytest.raises(RestoreRefused, match="not the backup's"):
        plan_catch_up(backup, parse_offers(other.offers_file).get("site-a"))


def test_keys_only_backup_holds_the_keys_and_puts_them_back(site: Site) -> None:
    """What a PostgreSQL site keeps beside its pg_dump (docs/recovery.md)."""
    site.deposit("KEYS-1")
    result = site.cli("backup", "--keys-only", str(site.root / "keys-backups"))
    assert result.exit_code == 0, result.output
    (backup,) = _backups(site.root / "keys-backups")
    assert _sha512sum_check(backup).returncode == 0
    manifest = json.loads((backup / "MANIFEST.json").read_text())
    assert manifest["keys_only"] is True
    assert manifest["database"] is None
    assert sorted(f["path"] for f in manifest["files"]) == [
        "keys/journal-note.key",
        "keys/journal-signing.key",
        "keys/journal-signing.pub.pem",
        "offers/offers.yaml",
        "tsa/root.pem",
        "tsa/tsa.key",
        "tsa/tsa.pem",
    ]
    assert not (backup / "database").exists()

    site.use(site.root / "new-sae-data")
    restored = site.cli("restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert (site.data_dir / "keys" / "journal-signing.key").read_bytes() == (
        site.root / "sae-data" / "keys" / "journal-signing.key"
    ).read_bytes()
    assert (site.data_dir / "tsa" / "tsa.key").is_file()
    assert not (site.data_dir / "sae.db").exists()  # no catalogue made beside the offers' journal


def test_restore_refuses_segments_after_the_backup_signed_by_another_key(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment carries its own public key: one that continues the journal but is signed by
    a key that is not the backup's is not replayed."""
    import sae.journal.keys
    import sae.journal.service
    from sae.recovery.backup import check_backup, plan_catch_up
    from sae.recovery.errors import RestoreRefused
    from sae.storage.offers import parse_offers

    site.deposit("SIGNED-1")
    backup = check_backup(_backup(site))
    offer = parse_offers(site.offers_file).get("site-a")
    # The key is replaced (someone else's): the next heads are signed by a new one. SAE itself
    # refuses to start or seal with a key the journal does not pin: an intruder's copy of SAE
    # without those checks does it here.
    monkeypatch.setattr(sae.journal.keys, "check_keys_at_start", lambda *a, **k: None)
    monkeypatch.setattr(sae.journal.service, "expected_fingerprint", lambda *a, **k: None)
    (site.data_dir / "keys").rename(site.data_dir / "keys.lost")
    sae.journal.keys._cache.clear()
    try:
        site.deposit("SIGNED-2")
    finally:
        sae.journal.keys._cache.clear()
    with pytest.raises(RestoreRefused, match="signed by a key that is neither the backup's"):
        plan_catch_up(backup, offer)


def test_segments_signed_after_a_rotation_continue_the_backup(site: Site) -> None:
    """A key rotated after the backup (``sae journal rotate-key``): the segments after it are
    signed by the new key, which the rotation leaf — signed by the backup's key — introduces.
    They continue the backup's journal; a forged rotation does not."""
    from sae.recovery.backup import check_backup, plan_catch_up
    from sae.storage.offers import parse_offers

    site.deposit("ROTATED-1")
    backup = check_backup(_backup(site))
    rotated = site.cli("journal", "rotate-key")
    assert rotated.exit_code == 0, rotated.output
    site.deposit("ROTATED-2")
    assert site.cli("journal", "seal").exit_code == 0
    offer = parse_offers(site.offers_file).get("site-a")
    assert plan_catch_up(backup, offer).common_head > 0


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL schema of its own."""
    with postgres_schema("sae_backup") as url:
        yield url


def test_postgresql_keeps_its_keys_with_keys_only(
    site: Site, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the catalogue is pg_dump's; `--keys-only` saves what must be beside it."""
    from sqlalchemy import create_engine, text

    site.deposit("PG-SQLITE-1")
    sqlite_backup = _backup(site)
    # Another catalogue, on an offer of its own: one offer holds one journal (its tails and
    # segments would name the same leaves differently, and the deposit would be refused).
    pg_offers = site.root / "etc" / "pg-offers.yaml"
    pg_offers.write_text(ONE_SITE.format(root=site.root / "pg-offer"), encoding="utf-8")
    site.offers_file = pg_offers
    site.use(site.root / "pg-sae-data")
    monkeypatch.setenv("SAE_DATABASE_URL", pg_url)
    site.settings_overrides = {"database_url": pg_url}
    site.admin_token = None  # another catalogue: its own first-start token
    site.deposit("PG-1")  # the first seal makes the keys

    refused = site.cli("backup", str(site.root / "pg-backups"))
    assert refused.exit_code == 1
    assert "pg_dump" in refused.output

    result = site.cli("backup", "--keys-only", str(site.root / "pg-backups"))
    assert result.exit_code == 0, result.output
    (backup,) = _backups(site.root / "pg-backups")
    assert _sha512sum_check(backup).returncode == 0
    manifest = json.loads((backup / "MANIFEST.json").read_text())
    assert manifest["database"] is None
    assert manifest["source"]["database"] == "postgresql"
    assert "keys/journal-signing.key" in {f["path"] for f in manifest["files"]}
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            payload = conn.execute(
                text("SELECT payload FROM events WHERE type = 'catalog.backed_up'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert (payload if isinstance(payload, dict) else json.loads(payload))["keys_only"] is True

    # A SQLite catalogue cannot be restored into PostgreSQL (pg_restore restores a dump).
    wrong = site.cli("restore", str(sqlite_backup))
    assert wrong.exit_code == 1
    assert "not a SQLite file" in wrong.output
