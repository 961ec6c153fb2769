"""``sae fsck --repair`` fills the offers of the strategy that lack something (issue 17 item 6):
a third site added to a two-site strategy receives the whole archive — objects, transfers'
descriptions, journal segments — copied from healthy copies, checked, locked, recorded and
journaled."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from sae.catalog.models import ArchiveUnit, DataObject
from sae.db import transaction
from sae.ingest.transfer_record import transfer_record_key
from sae.journal.models import Event
from sae.journal.publishing import publish_segments
from sae.journal.sealing import seal_now
from sae.journal.tails import PREFIX as TAILS
from sae.storage.cli import audit_command, fsck_command
from sae.storage.filesystem import FilesystemOffer
from sae.storage.fill import fill_offers, plan_fill
from sae.storage.models import MetadataCopy, ObjectCopy
from sae.storage.offers import OfferSet
from tests.conftest import Api
from tests.storage.conftest import OfferFactory, deposit
from tests.storage.helpers import FailingOffer, flip_byte

PAYLOAD = b"%PDF-1.4\n" + b"filled" * 300 + b"\n%%EOF\n"

THREE_SITES = """
offers:
  - name: site-a
    kind: filesystem
    path: {root}/site-a
    jurisdiction: FR
    site: "Hôtel de ville"
  - name: site-b
    kind: filesystem
    path: {root}/site-b
    jurisdiction: FR
    site: "Centre technique municipal"
  - name: site-c
    kind: filesystem
    path: {root}/site-c
    jurisdiction: FR
    site: "Archives départementales"
strategy:
  copies: [site-a, site-b, site-c]
  production: true
"""


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("audit")(audit_command)
    app.command("fsck")(fsck_command)
    return app


def _with_site_c(api: Api, tmp_path: Path) -> tuple[dict[str, str], FilesystemOffer]:
    """The environment of a `sae` command whose strategy has a third, empty site."""
    offers_file = tmp_path / "offers-3.yaml"
    offers_file.write_text(THREE_SITES.format(root=tmp_path / "offers"), encoding="utf-8")
    env = {
        "SAE_DATA_DIR": str(api.settings.data_dir),
        "SAE_DATABASE_URL": api.settings.db_url,
        "SAE_OFFERS_FILE": str(offers_file),
    }
    site_c = FilesystemOffer("site-c", tmp_path / "offers" / "site-c", quarantine_days=1)
    return env, site_c


def _archive(api: Api) -> list[str]:
    """Three transfers and their journal segments on both sites; the objects' ids."""
    objects = [deposit(api, f"MSG-FILL-{n}", PAYLOAD + str(n).encode()) for n in range(3)]
    seal_now(api.runtime.sessions, api.runtime.settings, wait=True)
    for _ in range(200):
        if not publish_segments(api.runtime.sessions, api.runtime.strategy_offers).busy:
            break
        time.sleep(0.05)
    return objects


def _offer(api: Api, name: str) -> FilesystemOffer:
    offer = api.runtime.offer_set.offers[name]
    assert isinstance(offer, FilesystemOffer)
    return offer


def _fsck(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = CliRunner().invoke(_cli(), ["fsck", "--json", *args], env=env)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def _filled_events(api: Api) -> list[Event]:
    with transaction(api.runtime.sessions) as session:
        query = select(Event).where(Event.type == "storage.copy_filled").order_by(Event.leaf_index)
        return list(session.scalars(query))


def test_a_site_added_later_receives_the_whole_archive(two_sites: Api, tmp_path: Path) -> None:
    objects = _archive(two_sites)
    site_a = _offer(two_sites, "site-a")
    env, site_c = _with_site_c(two_sites, tmp_path)
    # Everything but the journal's tails: redundant once a segment holds their leaves, they are
    # recorded nowhere and not filled (docs/recovery.md).
    expected = sorted(k for k in site_a.list_keys() if not k.startswith(TAILS))
    assert any(k.startswith("journal/segments/") for k in expected)
    assert len([k for k in expected if k.startswith("transfers/")]) == 3
    assert list(site_c.list_keys()) == []

    # Without --repair: reported, nothing written.
    code, findings = _fsck(env)
    assert code == 1
    assert {f["kind"] for f in findings} >= {"under_replicated"}
    assert list(site_c.list_keys()) == []

    code, findings = _fsck(env, "--repair")
    assert code == 0, findings
    filled = sorted(f["key"] for f in findings if f["kind"] == "filled")
    assert filled == expected
    details = {f["detail"] for f in findings}
    assert details == {"copied from site-a, SHA-512 checked"}, findings
    assert sorted(site_c.list_keys()) == expected

    for key in expected:
        # Byte for byte, locked as long as the source copy, in site-c's own quarantine.
        assert b"".join(site_c.get(key)) == b"".join(site_a.get(key)), key
        source, copy = site_a.head(key), site_c.head(key)
        assert source is not None
        assert copy is not None
        assert copy.retain_until == source.retain_until, key
        assert copy.lock_mode == "GOVERNANCE"
    with transaction(two_sites.runtime.sessions) as session:
        copies = {
            c.object_id: c for c in session.scalars(select(ObjectCopy)) if c.offer == "site-c"
        }
        metadata = {m.key: m for m in session.scalars(select(MetadataCopy)) if m.offer == "site-c"}
    assert sorted(copies) == sorted(objects)
    for object_id, copy in copies.items():
        data = b"".join(site_c.get(f"objects/{object_id}"))
        assert copy.sha512 == hashlib.sha512(data).hexdigest()
        assert copy.quarantine_ends_at is not None
    assert sorted(metadata) == [k for k in expected if not k.startswith("objects/")]
    for key, row in metadata.items():
        assert row.sha512 == hashlib.sha512(b"".join(site_c.get(key))).hexdigest()
        if key.startswith("transfers/"):
            assert row.kind == "transfer"
            assert key == transfer_record_key(row.transfer_id or "")
        else:
            assert (row.kind, row.tree_size is not None) == ("journal_segment", True)
    # One event per copy, naming its source and carrying its row.
    events = _filled_events(two_sites)
    assert sorted(e.payload["key"] for e in events) == expected
    assert {e.payload["from_offer"] for e in events} == {"site-a"}
    assert all(e.payload["offer"] == "site-c" for e in events)

    # Filled: nothing left to find, and a second run has nothing to do.
    code, findings = _fsck(env)
    assert (code, [f for f in findings if not f["key"].startswith("journal/")]) == (0, [])
    code, findings = _fsck(env, "--repair")
    assert code == 0
    assert not [f for f in findings if f["kind"] == "filled"]


def test_a_damaged_source_is_not_used_the_other_copy_is(two_sites: Api, tmp_path: Path) -> None:
    objects = _archive(two_sites)
    env, site_c = _with_site_c(two_sites, tmp_path)
    victim = f"objects/{objects[0]}"
    flip_byte(_offer(two_sites, "site-a"), victim, offset=20)
    healthy = b"".join(_offer(two_sites, "site-b").get(victim))

    code, findings = _fsck(env, "--repair")
    assert code == 0, findings
    (found,) = [f for f in findings if f["key"] == victim]
    assert (found["kind"], found["detail"]) == ("filled", "copied from site-b, SHA-512 checked")
    assert b"".join(site_c.get(victim)) == healthy
    (event,) = [e for e in _filled_events(two_sites) if e.payload["key"] == victim]
    assert event.payload["from_offer"] == "site-b"
    assert event.object_id == objects[0]


def test_no_healthy_copy_is_reported_and_nothing_written(two_sites: Api, tmp_path: Path) -> None:
    objects = _archive(two_sites)
    env, site_c = _with_site_c(two_sites, tmp_path)
    victim = f"objects/{objects[1]}"
    flip_byte(_offer(two_sites, "site-a"), victim, offset=20)
    flip_byte(_offer(two_sites, "site-b"), victim, offset=30)

    code, findings = _fsck(env, "--repair")
    assert code == 1
    (failed,) = [f for f in findings if f["kind"] == "fill_failed"]
    assert failed["key"] == victim
    assert failed["offer"] == "site-c"
    assert "site-a" in failed["detail"]
    assert "site-b" in failed["detail"]
    # Nothing of it on site-c, nor recorded, nor journaled; everything else filled.
    assert site_c.head(victim) is None
    assert victim not in set(site_c.list_keys())
    with transaction(two_sites.runtime.sessions) as session:
        rows = session.scalars(select(ObjectCopy.offer).where(ObjectCopy.object_id == objects[1]))
        assert sorted(rows) == ["site-a", "site-b"]
    assert victim not in {e.payload["key"] for e in _filled_events(two_sites)}
    assert {f"objects/{o}" for o in objects} - {victim} <= set(site_c.list_keys())
    # Still reported by plain fsck: the site lacks it.
    code, findings = _fsck(env)
    assert code == 1
    assert ("site-c", victim, "under_replicated") in {
        (f["offer"], f["key"], f["kind"]) for f in findings
    }


def test_a_copy_already_on_the_offer_is_adopted_a_different_one_left_alone(
    two_sites: Api, tmp_path: Path
) -> None:
    objects = _archive(two_sites)
    env, site_c = _with_site_c(two_sites, tmp_path)
    site_a = _offer(two_sites, "site-a")
    # A run interrupted after its write, before its record: the same bytes are there.
    same, other = f"objects/{objects[0]}", f"objects/{objects[1]}"
    site_c.put(same, io.BytesIO(b"".join(site_a.get(same))), retain_until=None)
    # Something else under a key SAE wants to write: never overwritten.
    site_c.put(other, io.BytesIO(b"not the archived bytes"), retain_until=None)

    code, findings = _fsck(env, "--repair")
    assert code == 1
    by_key = {f["key"]: f for f in findings if f["kind"] in ("filled", "fill_failed")}
    assert by_key[same]["kind"] == "filled"
    assert by_key[same]["detail"].startswith("already on the offer")
    assert by_key[other]["kind"] == "fill_failed"
    assert "left alone" in by_key[other]["detail"]
    assert b"".join(site_c.get(other)) == b"not the archived bytes"
    with transaction(two_sites.runtime.sessions) as session:
        on_c = set(session.scalars(select(ObjectCopy.key).where(ObjectCopy.offer == "site-c")))
    assert same in on_c
    assert other not in on_c
    (adopted,) = [e for e in _filled_events(two_sites) if e.payload["key"] == same]
    assert adopted.payload["from_offer"] is None


def test_the_human_report_says_what_was_filled(two_sites: Api, tmp_path: Path) -> None:
    _archive(two_sites)
    env, _ = _with_site_c(two_sites, tmp_path)
    result = CliRunner().invoke(_cli(), ["fsck", "--repair"], env=env)
    assert result.exit_code == 0, result.output
    assert "filled" in result.stdout
    assert "site-c" in result.stdout


@pytest.mark.s3
def test_a_ceph_site_added_later_is_filled_with_locks_and_holds(
    two_sites: Api,
    s3_factory: OfferFactory,
) -> None:
    """On the real Ceph RGW (Object Lock): same retain-until as the source, legal hold carried,
    a damaged source avoided."""
    objects = _archive(two_sites)
    archivist = two_sites.token("archivist")
    with transaction(two_sites.runtime.sessions) as session:
        held_unit = session.scalars(
            select(ArchiveUnit.id)
            .join(DataObject, DataObject.group_id == ArchiveUnit.data_object_group_id)
            .where(DataObject.id == objects[2])
        ).one()
    hold = two_sites.client.post(
        "/api/v1/holds",
        json={"unit_ids": [held_unit], "reason": "contentieux"},
        headers=two_sites.auth(archivist),
    )
    assert hold.status_code == 201, hold.text
    flip_byte(_offer(two_sites, "site-a"), f"objects/{objects[0]}", offset=5)
    runtime = two_sites.runtime
    ceph = s3_factory(name="site-c")
    three = OfferSet(
        offers={**runtime.offer_set.offers, "site-c": ceph},
        strategy=[*runtime.offer_set.strategy, "site-c"],
    )

    outcomes = fill_offers(runtime.sessions, three, plan_fill(runtime.sessions, three))

    assert all(o.filled for o in outcomes), [o.detail for o in outcomes if not o.filled]
    site_a = _offer(two_sites, "site-a")
    filled = sorted(k for k in site_a.list_keys() if not k.startswith(TAILS))
    assert sorted(ceph.list_keys()) == filled
    by_key = {o.gap.key: o for o in outcomes}
    assert by_key[f"objects/{objects[0]}"].source == "site-b"
    for key in filled:
        source, copy = site_a.head(key), ceph.head(key)
        assert source is not None
        assert copy is not None
        assert source.retain_until is not None
        assert copy.retain_until is not None
        # S3 keeps the date to the second (or millisecond): the same instant, as stored.
        assert abs((copy.retain_until - source.retain_until).total_seconds()) < 1, key
        assert copy.legal_hold == source.legal_hold, key
    assert ceph.head(f"objects/{objects[2]}").legal_hold  # type: ignore[union-attr]
    assert b"".join(ceph.get(f"objects/{objects[0]}")) == b"".join(
        _offer(two_sites, "site-b").get(f"objects/{objects[0]}")
    )


def test_a_target_that_fails_is_not_asked_again_and_nothing_is_recorded(
    two_sites: Api, tmp_path: Path
) -> None:
    objects = _archive(two_sites)
    runtime = two_sites.runtime
    site_c = FilesystemOffer("site-c", tmp_path / "site-c", quarantine_days=1)
    broken = FailingOffer(site_c, fail_after=10)
    three = OfferSet(
        offers={**runtime.offer_set.offers, "site-c": broken},  # type: ignore[dict-item]
        strategy=[*runtime.offer_set.strategy, "site-c"],
    )
    gaps = plan_fill(runtime.sessions, three)
    assert len(gaps) > 2
    outcomes = fill_offers(runtime.sessions, three, gaps)
    assert not any(o.filled for o in outcomes)
    # The first gap found the target down; the others were not tried.
    assert outcomes[0].target_down
    assert "site-c" in outcomes[0].detail
    assert all(o.detail.startswith("not tried: ") for o in outcomes[1:])
    assert list(site_c.list_keys()) == []
    with transaction(runtime.sessions) as session:
        assert not list(session.scalars(select(ObjectCopy).where(ObjectCopy.offer == "site-c")))
    assert _filled_events(two_sites) == []
    assert objects


def test_a_held_source_gives_its_hold_to_the_new_copy_adopted_or_written(
    two_sites: Api, tmp_path: Path
) -> None:
    objects = _archive(two_sites)
    with transaction(two_sites.runtime.sessions) as session:
        units = list(session.scalars(select(ArchiveUnit.id)))
    hold = two_sites.client.post(
        "/api/v1/holds",
        json={"unit_ids": units, "reason": "contentieux"},
        headers=two_sites.auth(two_sites.token("archivist")),
    )
    assert hold.status_code == 201, hold.text
    env, site_c = _with_site_c(two_sites, tmp_path)
    site_a = _offer(two_sites, "site-a")
    # One left by an interrupted run: written, neither held nor recorded.
    interrupted = f"objects/{objects[0]}"
    site_c.put(interrupted, io.BytesIO(b"".join(site_a.get(interrupted))), retain_until=None)
    assert not site_c.head(interrupted).legal_hold  # type: ignore[union-attr]

    code, findings = _fsck(env, "--repair")
    assert code == 0, findings
    for object_id in objects:
        key = f"objects/{object_id}"
        assert site_a.head(key).legal_hold  # type: ignore[union-attr]
        assert site_c.head(key).legal_hold, key  # type: ignore[union-attr]
