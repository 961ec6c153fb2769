"""Reconciliation (``sae fsck``) and the ``sae audit`` command, on a two-site configuration."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from sae.db import transaction
from sae.journal.models import Event
from sae.storage.cli import audit_command, fsck_command
from sae.storage.filesystem import FilesystemOffer
from sae.storage.fsck import reconcile
from sae.storage.models import ObjectCopy
from tests.conftest import Api
from tests.storage.conftest import deposit
from tests.storage.helpers import flip_byte, remove_copy

PAYLOAD = b"%PDF-1.4\nfsck\n%%EOF\n"


def _offer(api: Api, name: str) -> FilesystemOffer:
    offer = api.runtime.offer_set.offers[name]
    assert isinstance(offer, FilesystemOffer)
    return offer


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("audit")(audit_command)
    app.command("fsck")(fsck_command)
    return app


def _env(api: Api) -> dict[str, str]:
    settings = api.settings
    assert settings.offers_file is not None
    return {
        "SAE_DATA_DIR": str(settings.data_dir),
        "SAE_DATABASE_URL": settings.db_url,
        "SAE_OFFERS_FILE": str(settings.offers_file),
    }


def test_fsck_reports_orphans_and_missing_and_repairs_only_orphans(two_sites: Api) -> None:
    object_id = deposit(two_sites, "MSG-FSCK-1", PAYLOAD)
    key = f"objects/{object_id}"
    site_a, site_b = _offer(two_sites, "site-a"), _offer(two_sites, "site-b")
    # a crash between storage and catalog leaves copies nobody references
    site_a.put(
        "objects/orphan-free",
        io.BytesIO(b"o"),
        retain_until=datetime.now(UTC) + timedelta(seconds=1),
    )
    # written past its quarantine (COMPLIANCE): the lock keeps it whatever fsck wants
    FilesystemOffer("site-b", site_b.root, quarantine_days=0).put(
        "objects/orphan-locked",
        io.BytesIO(b"o"),
        retain_until=datetime.now(UTC) + timedelta(days=1),
    )
    remove_copy(site_b, key)
    runtime = two_sites.runtime
    # The sealer thread publishes the deposit's journal segment about a second later, while
    # fsck may be listing an offer (then reported, informational, as unrecorded_metadata until
    # recorded): stopped here, it publishes and records what it sealed before it returns.
    assert runtime.sealer is not None
    runtime.sealer.stop()

    with transaction(runtime.sessions) as session:
        findings = reconcile(session, runtime.offer_set)
    assert sorted((f.offer, f.key, f.kind) for f in findings) == sorted(
        [
            ("site-a", "objects/orphan-free", "orphan"),
            ("site-b", "objects/orphan-locked", "orphan"),
            ("site-b", key, "missing"),
        ]
    )
    time.sleep(1.2)
    with transaction(runtime.sessions) as session:
        findings = reconcile(session, runtime.offer_set, repair=True)
    assert sorted((f.offer, f.key, f.kind) for f in findings) == sorted(
        [
            ("site-a", "objects/orphan-free", "orphan_removed"),
            ("site-b", "objects/orphan-locked", "orphan_locked"),
            ("site-b", key, "missing"),
        ]
    )
    assert site_a.head("objects/orphan-free") is None
    with transaction(runtime.sessions) as session:
        removed = list(session.scalars(select(Event).where(Event.type == "storage.orphan_removed")))
    assert [e.payload["key"] for e in removed] == ["objects/orphan-free"]
    assert site_b.head("objects/orphan-locked") is not None
    # the missing copy is reported, never "fixed" by forgetting it
    assert site_b.head(key) is None
    with transaction(runtime.sessions) as session:
        assert session.scalar(select(func.count()).where(ObjectCopy.object_id == object_id)) == 2

    result = CliRunner().invoke(_cli(), ["fsck", "--json"], env=_env(two_sites))
    assert result.exit_code == 1, result.output
    kinds = {(f["key"], f["kind"]) for f in json.loads(result.stdout)}
    assert kinds == {("objects/orphan-locked", "orphan"), (key, "missing")}

    # the audit restores the missing copy from site-a; then only the locked orphan remains
    result = CliRunner().invoke(_cli(), ["audit"], env=_env(two_sites))
    assert result.exit_code == 0, result.output
    assert "2 copies checked" in result.stdout
    assert site_b.head(key) is not None
    result = CliRunner().invoke(
        _cli(), ["fsck", "--repair", "--offer", "site-a"], env=_env(two_sites)
    )
    assert result.exit_code == 0, result.output
    assert "agree" in result.stdout


def test_fsck_clean_and_audit_exit_codes(two_sites: Api, tmp_path: Path) -> None:
    object_id = deposit(two_sites, "MSG-FSCK-2", PAYLOAD)
    runner = CliRunner()
    assert runner.invoke(_cli(), ["fsck"], env=_env(two_sites)).exit_code == 0
    flip_byte(_offer(two_sites, "site-a"), f"objects/{object_id}")
    flip_byte(_offer(two_sites, "site-b"), f"objects/{object_id}", offset=3)
    result = runner.invoke(_cli(), ["audit", "--json"], env=_env(two_sites))
    assert result.exit_code == 1  # nothing healthy to repair from
    report = json.loads(result.stdout)
    assert report["status"] == "done"
    assert {(p["offer"], p["kind"], p["repaired"]) for p in report["problems"]} == {
        ("site-a", "corrupt", False),
        ("site-b", "corrupt", False),
    }
    bad = runner.invoke(_cli(), ["audit", "--offer", "nowhere"], env=_env(two_sites))
    assert bad.exit_code != 0
    refused = runner.invoke(
        _cli(), ["fsck"], env={**_env(two_sites), "SAE_OFFERS_FILE": str(tmp_path / "none.yaml")}
    )
    assert refused.exit_code == 2
