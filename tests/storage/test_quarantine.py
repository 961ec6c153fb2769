"""Quarantines end on time: copies in GOVERNANCE are sealed into COMPLIANCE once due, journaled."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from sae.db import transaction, utcnow
from sae.journal.models import Event
from sae.storage.errors import OfferUnavailable
from sae.storage.filesystem import FilesystemOffer
from sae.storage.models import ObjectCopy
from sae.storage.quarantine import LEASE, _claim, end_quarantines
from tests.conftest import Api, upgrade_to
from tests.storage.conftest import deposit

PAYLOAD = b"%PDF-1.4\n" + b"quarantined" * 100 + b"\n%%EOF\n"


def _copies(api: Api, object_id: str) -> list[ObjectCopy]:
    with transaction(api.runtime.sessions) as session:
        rows = session.scalars(
            select(ObjectCopy).where(ObjectCopy.object_id == object_id).order_by(ObjectCopy.offer)
        )
        return list(rows)


def _offers(api: Api) -> list[FilesystemOffer]:
    offers = [api.runtime.offer_set.offers[name] for name in ("site-a", "site-b")]
    assert all(isinstance(o, FilesystemOffer) for o in offers)
    return offers  # type: ignore[return-value]


def _later(api: Api, monkeypatch: pytest.MonkeyPatch, days: float) -> datetime:
    """Move every offer's clock ``days`` ahead; that moment."""
    moment = utcnow() + timedelta(days=days)
    for offer in _offers(api):
        monkeypatch.setattr(offer, "_clock", lambda: moment)
    return moment


def _ended(api: Api) -> list[Event]:
    with transaction(api.runtime.sessions) as session:
        return list(session.scalars(select(Event).where(Event.type == "storage.quarantine_ended")))


def test_each_copy_records_when_its_quarantine_ends(two_sites: Api) -> None:
    before = utcnow()
    object_id = deposit(two_sites, "MSG-Q-1", PAYLOAD)
    copies = _copies(two_sites, object_id)
    assert [c.offer for c in copies] == ["site-a", "site-b"]
    for copy in copies:
        head = two_sites.runtime.offer_set.offers[copy.offer].head(copy.key)
        assert head is not None
        assert head.lock_mode == "GOVERNANCE"
        assert copy.quarantine_ends_at == head.quarantine_ends_at
        assert copy.quarantine_ends_at is not None
        assert before + timedelta(days=1) <= copy.quarantine_ends_at <= utcnow() + timedelta(1)


def test_due_quarantines_are_sealed_journaled_and_cleared(
    two_sites: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    object_id = deposit(two_sites, "MSG-Q-2", PAYLOAD)
    sessions, offer_set = two_sites.runtime.sessions, two_sites.runtime.offer_set
    # Not due yet: nothing asked of the offers, nothing changed.
    assert end_quarantines(sessions, offer_set) == 0
    assert all(c.quarantine_ends_at is not None for c in _copies(two_sites, object_id))

    moment = _later(two_sites, monkeypatch, days=2)
    assert end_quarantines(sessions, offer_set, now=moment) == 2
    for copy in _copies(two_sites, object_id):
        assert copy.quarantine_ends_at is None
        head = offer_set.offers[copy.offer].head(copy.key)
        assert head is not None
        assert head.lock_mode == "COMPLIANCE"
    events = _ended(two_sites)
    assert sorted(e.payload["offer"] for e in events) == ["site-a", "site-b"]
    assert {e.object_id for e in events} == {object_id}
    assert all(e.payload["lock_mode"] == "COMPLIANCE" for e in events)
    # Once sealed, never again: no second event, no offer call.
    assert end_quarantines(sessions, offer_set, now=moment + timedelta(days=1)) == 0
    assert len(_ended(two_sites)) == 2


def test_a_longer_window_on_the_offer_is_waited_for(
    two_sites: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalogue thought the window was over; the offer (its clock, its quarantine) says
    not yet: nothing sealed, and the copy is due again when the offer says."""
    object_id = deposit(two_sites, "MSG-Q-3", PAYLOAD)
    sessions, offer_set = two_sites.runtime.sessions, two_sites.runtime.offer_set
    for offer in _offers(two_sites):
        monkeypatch.setattr(offer, "quarantine_days", 10)
    moment = utcnow() + timedelta(days=2)
    assert end_quarantines(sessions, offer_set, now=moment) == 0
    for copy in _copies(two_sites, object_id):
        head = offer_set.offers[copy.offer].head(copy.key)
        assert head is not None
        assert head.lock_mode == "GOVERNANCE"
        assert copy.quarantine_ends_at == head.quarantine_ends_at
        assert copy.quarantine_ends_at is not None
        assert copy.quarantine_ends_at > utcnow() + timedelta(days=9)
    assert _ended(two_sites) == []


def test_an_unreachable_offer_is_tried_again_after_a_lease(
    two_sites: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    object_id = deposit(two_sites, "MSG-Q-4", PAYLOAD)
    sessions, offer_set = two_sites.runtime.sessions, two_sites.runtime.offer_set
    moment = _later(two_sites, monkeypatch, days=2)
    site_b = offer_set.offers["site-b"]

    def down(key: str) -> bool:
        raise OfferUnavailable("site-b", "connection refused (simulated)")

    monkeypatch.setattr(site_b, "seal", down)
    assert end_quarantines(sessions, offer_set, now=moment) == 1
    by_offer = {c.offer: c for c in _copies(two_sites, object_id)}
    assert by_offer["site-a"].quarantine_ends_at is None
    assert by_offer["site-b"].quarantine_ends_at == moment + LEASE
    assert end_quarantines(sessions, offer_set, now=moment) == 0  # within the lease: not asked
    monkeypatch.undo()
    moment = _later(two_sites, monkeypatch, days=3)
    assert end_quarantines(sessions, offer_set, now=moment) == 1
    assert all(c.quarantine_ends_at is None for c in _copies(two_sites, object_id))
    assert len(_ended(two_sites)) == 2


def test_two_processes_never_claim_the_same_copies(two_sites: Api) -> None:
    deposit(two_sites, "MSG-Q-5", PAYLOAD)
    deposit(two_sites, "MSG-Q-6", PAYLOAD + b" ")
    moment = utcnow() + timedelta(days=2)
    first = _claim(two_sites.runtime.sessions, moment, batch=3)
    second = _claim(two_sites.runtime.sessions, moment, batch=3)
    assert len(first) == 3
    assert len(second) == 1
    assert not {c.id for c in first} & {c.id for c in second}
    assert _claim(two_sites.runtime.sessions, moment, batch=3) == []


def test_the_audit_cli_ends_due_quarantines(two_sites: Api) -> None:
    """Installations that audit from cron, without `sae serve`, still see quarantines end."""
    from typer.testing import CliRunner

    from sae.cli import app

    deposit(two_sites, "MSG-Q-7", PAYLOAD)
    with transaction(two_sites.runtime.sessions) as session:
        session.execute(
            sa.update(ObjectCopy).values(quarantine_ends_at=utcnow() - timedelta(seconds=1))
        )
    # The CLI opens its own runtime, with offers of their own (real clocks): the same offers
    # with a window of zero days, so that copies written a moment ago are past it.
    settings = two_sites.settings
    assert settings.offers_file is not None
    offers_file = settings.offers_file.with_name("offers-no-window.yaml")
    offers_file.write_text(
        settings.offers_file.read_text().replace(
            "jurisdiction: FR", "jurisdiction: FR\n    quarantine_days: 0"
        )
    )
    env = {
        "SAE_DATABASE_URL": settings.database_url,
        "SAE_DATA_DIR": str(settings.data_dir),
        "SAE_OFFERS_FILE": str(offers_file),
    }
    if settings.seda_xsd_dir is not None:
        env["SAE_SEDA_XSD_DIR"] = str(settings.seda_xsd_dir)
    result = CliRunner().invoke(app, ["audit", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert '"quarantines_ended": 2' in result.output
    assert len(_ended(two_sites)) == 2


def test_upgrade_makes_copies_written_before_it_due(tmp_path: Path) -> None:
    """Copies from before the revision: their lock was never recorded; each is due at once."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to(engine, "0005_merge")
    stored_at = "2026-11-01 10:00:00.000000"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO object_copies (object_id, offer, key, size, sha512, stored_at) "
                "VALUES ('o1', 'site-a', 'objects/o1', 3, 'ab', :at)"
            ),
            {"at": stored_at},
        )
    upgrade_to(engine, "head")
    with engine.connect() as conn:
        due = conn.execute(sa.text("SELECT quarantine_ends_at FROM object_copies")).scalar_one()
    engine.dispose()
    assert str(due).startswith("2026-11-01 10:00:00")


def test_a_backlog_is_worked_off_over_several_rounds(
    two_sites: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        deposit(two_sites, f"MSG-Q-BACKLOG-{n}", PAYLOAD + bytes([n]))
    sessions, offer_set = two_sites.runtime.sessions, two_sites.runtime.offer_set
    moment = _later(two_sites, monkeypatch, days=2)
    # Six copies due, two per batch, two batches per round: four now, two at the next round.
    assert end_quarantines(sessions, offer_set, batch=2, max_batches=2, now=moment) == 4
    assert end_quarantines(sessions, offer_set, batch=2, max_batches=2, now=moment) == 2
    assert end_quarantines(sessions, offer_set, batch=2, max_batches=2, now=moment) == 0
    assert len(_ended(two_sites)) == 6


def test_an_auditor_round_seals_only_the_copies_whose_quarantine_ended(
    two_sites: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #21: an audit once asked the offer to seal every healthy copy it checked (a HEAD
    and a lock request per copy). The round seals the copies that are due and not yet sealed,
    and the audit, which reads every copy, seals none."""
    from sae.background import Auditor
    from sae.storage.models import Audit

    due_object = deposit(two_sites, "MSG-Q-DUE", PAYLOAD)
    with transaction(two_sites.runtime.sessions) as session:
        session.execute(
            sa.update(ObjectCopy)
            .where(ObjectCopy.object_id == due_object)
            .values(quarantine_ends_at=utcnow() - timedelta(seconds=1))
        )
    _later(two_sites, monkeypatch, days=2)  # the offers agree: that window is over
    fresh_object = deposit(two_sites, "MSG-Q-FRESH", PAYLOAD)  # its window is still running
    sealed: list[tuple[str, str]] = []
    for name, offer in zip(("site-a", "site-b"), _offers(two_sites), strict=True):

        def counted(key: str, name: str = name, original: Any = offer.seal) -> bool:
            sealed.append((name, key))  # the offer still seals: it is only counted
            return bool(original(key))

        monkeypatch.setattr(offer, "seal", counted)
    settings = two_sites.runtime.settings
    settings.audit_sample_rate = 1.0
    auditor = Auditor(
        two_sites.runtime.sessions, settings, two_sites.runtime.offer_set, check_seconds=3600
    )
    done = auditor.run_once()
    assert len(done) == 1
    with transaction(two_sites.runtime.sessions) as session:
        audit = session.get(Audit, done[0])
        assert audit is not None
        assert audit.checked == 4  # every copy read
    due_keys = {c.key for c in _copies(two_sites, due_object)}
    assert sorted(sealed) == sorted((o, k) for o in ("site-a", "site-b") for k in due_keys)
    assert all(c.quarantine_ends_at is not None for c in _copies(two_sites, fresh_object))
    # Sealed once: a later round with another full audit asks the offers for nothing.
    with transaction(two_sites.runtime.sessions) as session:
        session.execute(sa.update(Audit).values(created_at=utcnow() - timedelta(days=2)))
    assert len(auditor.run_once()) == 1
    assert len(sealed) == 2
