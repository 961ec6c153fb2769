"""The journal's segments on every offer: published after deposits, verified from one offer."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import delete, select

from sae.db import transaction
from sae.ingest.transfer_record import KIND as TRANSFER
from sae.journal.models import TreeHead
from sae.journal.publishing import PublishCounts, publish_segments, verify_offer
from sae.journal.sealing import seal_now
from sae.journal.segments import KIND, PREFIX
from sae.journal.service import append_event
from sae.storage.base import StorageOffer
from sae.storage.errors import OfferUnavailable
from sae.storage.filesystem import FilesystemOffer
from sae.storage.fsck import reconcile
from sae.storage.models import MetadataCopy
from tests.conftest import Api
from tests.s3_server import ceph_rgw_fixture  # noqa: F401  (the ceph_rgw fixture)
from tests.storage.conftest import (  # noqa: F401  (fixtures)
    OfferFactory,
    deposit,
    s3_factory,
    two_sites,
)

PAYLOAD = b"%PDF-1.4\nsegments\n%%EOF\n"


def _offer(api: Api, name: str) -> FilesystemOffer:
    offer = api.runtime.offer_set.offers[name]
    assert isinstance(offer, FilesystemOffer)
    return offer


def publish(api: Api, offers: Sequence[StorageOffer] | None = None) -> PublishCounts:
    """Seal over everything, then publish to ``offers`` (default: the strategy's), waiting for
    the background sealer's round when it holds the publisher's lock."""
    seal_now(api.runtime.sessions, api.runtime.settings, wait=True)
    for _ in range(200):
        counts = publish_segments(api.runtime.sessions, offers or api.runtime.strategy_offers)
        if not counts.busy:
            return counts
        time.sleep(0.05)
    raise AssertionError("the publisher lock was never free")


def _deposits(api: Api, count: int) -> None:
    for n in range(count):
        deposit(api, f"MSG-SEG-{n}", PAYLOAD + str(n).encode())
        publish(api)  # one head (one segment) per transfer at least


def _head_root(api: Api, size: int) -> bytes:
    with api.runtime.sessions() as session:
        root = session.scalar(select(TreeHead.root_hash).where(TreeHead.tree_size == size))
    assert root is not None
    return root


def _rows(api: Api, offer: str, *, kinds: tuple[str, ...] = (KIND,)) -> list[MetadataCopy]:
    """The offer's copies of journal segments (and of other metadata kinds if asked: the
    transfers' descriptions are recorded in the same table)."""
    with api.runtime.sessions() as session:
        query = select(MetadataCopy).where(
            MetadataCopy.offer == offer, MetadataCopy.kind.in_(kinds)
        )
        return list(session.scalars(query.order_by(MetadataCopy.tree_size, MetadataCopy.key)))


def _rewrite(offer: FilesystemOffer, key: str, data: bytes) -> None:
    """Change a segment behind the offer's back (the WORM directory makes files read-only)."""
    path = offer.root / "data" / key
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def test_every_offer_holds_a_verifiable_journal(two_sites: Api) -> None:  # noqa: F811
    _deposits(two_sites, 3)
    with two_sites.runtime.sessions() as session:
        last = session.scalar(select(TreeHead.tree_size).order_by(TreeHead.tree_size.desc()))
    assert last is not None
    for name in ("site-a", "site-b"):
        offer = _offer(two_sites, name)
        keys = sorted(offer.list_keys(PREFIX))
        assert len(keys) >= 3
        assert [row.key for row in _rows(two_sites, name)] == keys
        verdict = verify_offer(offer)
        assert verdict.ok, verdict.problems
        assert verdict.tree_size == last
        assert verdict.root_hash == _head_root(two_sites, last)
        head = offer.head(keys[0])
        assert head is not None
        assert head.lock_mode == "GOVERNANCE"  # the offers' quarantine, as for content
    # Published once: a second round finds nothing to do.
    assert publish(two_sites).published == 0
    # fsck knows the segments: no orphan, nothing unrecorded.
    with transaction(two_sites.runtime.sessions) as session:
        findings = reconcile(session, two_sites.runtime.offer_set)
    assert [f for f in findings if f.key.startswith("journal/")] == []


def test_an_altered_leaf_or_a_missing_segment_is_named(two_sites: Api) -> None:  # noqa: F811
    _deposits(two_sites, 3)
    site_a, site_b = _offer(two_sites, "site-a"), _offer(two_sites, "site-b")
    keys = sorted(site_a.list_keys(PREFIX))
    altered = keys[1]
    data = b"".join(site_a.get(altered))
    header, first_leaf, rest = data.split(b"\n", 2)
    _rewrite(site_a, altered, b"\n".join([header, first_leaf.replace(b'"v":1', b'"v":2'), rest]))
    verdict = verify_offer(site_a)
    assert [(p.key, p.kind) for p in verdict.problems] == [(altered, "root")]

    (site_b.root / "data" / keys[1]).unlink()
    verdict = verify_offer(site_b)
    assert [(p.key, p.kind) for p in verdict.problems] == [(keys[2], "gap")]
    assert keys[0] in verdict.problems[0].message
    with transaction(two_sites.runtime.sessions) as session:
        findings = reconcile(session, two_sites.runtime.offer_set, offers=["site-b"])
    assert [(f.key, f.kind) for f in findings] == [(keys[1], "missing")]


def test_an_offer_down_catches_up_later_without_holding_the_others(
    two_sites: Api,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site_b = _offer(two_sites, "site-b")

    def down(*_args: object, **_kwargs: object) -> None:
        raise OfferUnavailable("site-b", "unplugged (simulated)")

    _deposits(two_sites, 1)
    with monkeypatch.context() as patch:
        patch.setattr(site_b, "put", down)
        with transaction(two_sites.runtime.sessions) as session:
            append_event(session, type="test.fact", actor="system:test", payload={})
        counts = publish(two_sites)
        assert counts.failed_offers == 1
        assert _rows(two_sites, "site-a")
        assert len(list(site_b.list_keys(PREFIX))) == len(_rows(two_sites, "site-a")) - 1
    counts = publish(two_sites)
    assert counts.published >= 1
    assert [r.key for r in _rows(two_sites, "site-b")] == [
        r.key for r in _rows(two_sites, "site-a")
    ]
    assert verify_offer(site_b).ok


def test_a_segment_already_there_is_recorded_if_identical_refused_if_not(
    two_sites: Api,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    _deposits(two_sites, 2)
    keys = [row.key for row in _rows(two_sites, "site-a")]
    # A crash between the write and the record: the rows are lost, the objects stay.
    with transaction(two_sites.runtime.sessions) as session:
        session.execute(delete(MetadataCopy).where(MetadataCopy.kind == KIND))
    site_b = _offer(two_sites, "site-b")
    tampered = keys[-1]
    _rewrite(site_b, tampered, b"".join(site_b.get(tampered)).replace(b'"v":1', b'"v":3'))
    with caplog.at_level(logging.ERROR, logger="sae.journal"):
        counts = publish(two_sites)
    assert counts.published == 0
    assert counts.already_there == 2 * len(keys) - 1
    assert counts.conflicts == 1
    assert [r.key for r in _rows(two_sites, "site-a")] == keys
    assert [r.key for r in _rows(two_sites, "site-b")] == keys[:-1]
    assert any("journal.segment_conflict" in r.getMessage() for r in caplog.records)
    with transaction(two_sites.runtime.sessions) as session:
        findings = reconcile(session, two_sites.runtime.offer_set, offers=["site-b"])
    assert [(f.key, f.kind) for f in findings] == [(tampered, "unrecorded_metadata")]
    assert [p.key for p in verify_offer(site_b).problems] == [tampered]


def test_sae_journal_verify_from_one_offer(
    two_sites: Api,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from sae.journal.cli import journal_app

    settings = two_sites.settings
    assert settings.offers_file is not None
    monkeypatch.setenv("SAE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("SAE_OFFERS_FILE", str(settings.offers_file))
    _deposits(two_sites, 2)
    runner = CliRunner()
    result = runner.invoke(journal_app, ["verify", "--offer", "site-a"])
    assert result.exit_code == 0, result.output
    assert "journal on offer site-a OK" in result.output
    assert "not yet published" not in result.output

    # A head sealed but not yet published: said, not a failure.
    with transaction(two_sites.runtime.sessions) as session:
        append_event(session, type="test.fact", actor="system:test", payload={})
    seal_now(two_sites.runtime.sessions, settings, wait=True)
    result = runner.invoke(journal_app, ["verify", "--offer", "site-a"])
    # (Nothing pokes the background sealer here, and the auditor's first round is a minute away.)
    # The command's own start journaled a config.changed (the rules the fixture loaded): two.
    assert result.exit_code == 0, result.output
    assert "2 not yet published" in result.output

    site_b = _offer(two_sites, "site-b")
    key = sorted(site_b.list_keys(PREFIX))[0]
    (site_b.root / "data" / key).unlink()
    result = runner.invoke(journal_app, ["verify", "--offer", "site-b"])
    assert result.exit_code == 1, result.output
    assert "INVALID" in result.output
    assert "gap" in result.output

    result = runner.invoke(journal_app, ["verify", "--offer", "nowhere"])
    assert result.exit_code == 1


def test_segment_copies_leave_quarantine_in_compliance(
    two_sites: Api,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta

    from sae.db import utcnow
    from sae.storage.quarantine import end_metadata_quarantines

    _deposits(two_sites, 1)
    # Segments and the transfer's description: both leave their quarantine the same way.
    every = (KIND, TRANSFER)
    rows = _rows(two_sites, "site-a", kinds=every) + _rows(two_sites, "site-b", kinds=every)
    assert {row.kind for row in rows} == set(every)
    assert all(row.quarantine_ends_at is not None for row in rows)
    sessions, offer_set = two_sites.runtime.sessions, two_sites.runtime.offer_set
    assert end_metadata_quarantines(sessions, offer_set) == 0  # not due yet

    moment = utcnow() + timedelta(days=2)
    for name in ("site-a", "site-b"):
        monkeypatch.setattr(_offer(two_sites, name), "_clock", lambda: moment)
    assert end_metadata_quarantines(sessions, offer_set, now=moment) == len(rows)
    for row in _rows(two_sites, "site-a", kinds=every) + _rows(two_sites, "site-b", kinds=every):
        assert row.quarantine_ends_at is None
        head = offer_set.offers[row.offer].head(row.key)
        assert head is not None
        assert head.lock_mode == "COMPLIANCE"


@pytest.mark.s3
def test_segments_published_to_ceph_verify_from_it(
    api: Api,
    s3_factory: OfferFactory,  # noqa: F811
) -> None:
    """The same segments on the real Ceph RGW (Object Lock bucket), verified from it alone."""
    deposit(api, "MSG-SEG-S3", PAYLOAD)
    s3 = s3_factory()
    counts = publish(api, [s3])
    assert counts.published >= 1
    assert counts.failed_offers == 0
    verdict = verify_offer(s3)
    assert verdict.ok, verdict.problems
    assert verdict.root_hash == _head_root(api, verdict.tree_size)
    # Published again: already there, nothing written, nothing recorded twice.
    assert publish(api, [s3]).published == 0
