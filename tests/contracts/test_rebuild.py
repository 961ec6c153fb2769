"""Contracts and profiles are archival configuration: a rebuild from an offer restores them
(their journal leaves carry the whole contract and the whole profile document)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from sae.contracts.models import ArchivalProfile, Contract
from sae.recovery import replay
from sae.recovery.compare import TABLES
from sae.recovery.rebuild import rebuild
from tests.conftest import Api
from tests.contracts.helpers import TEST_PROFILE, add_contract, add_profile
from tests.recovery.test_rebuild import PENDING, publish, sqlite_target
from tests.sipfactory import RuleSpec, build_zip, simple_sip


@pytest.fixture(autouse=True)
def _other_owners_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    replay.load_all()
    for type_ in PENDING:
        if type_ not in replay.REPLAYS and type_ not in replay.NO_STATE:
            monkeypatch.setitem(replay.NO_STATE, type_, "pending in this branch")


def _rows(session: Session) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    contracts = [
        {**c.clauses(), "created_at": c.created_at, "updated_at": c.updated_at}
        for c in session.scalars(select(Contract).order_by(Contract.id))
    ]
    profiles = [
        {
            "id": p.id,
            "name": p.name,
            "document": p.document,
            "sha512": p.sha512,
            "size": p.size,
            "status": p.status,
            "created_at": p.created_at,
            "updated_at": p.updated_at,
        }
        for p in session.scalars(select(ArchivalProfile).order_by(ArchivalProfile.id))
    ]
    return contracts, profiles


def test_rebuild_restores_contracts_and_profiles(api: Api, tmp_path: Path) -> None:
    assert add_profile(api, "PROFIL-TEST", TEST_PROFILE, name="Profil de test").status_code == 201
    replaced = add_profile(api, "PROFIL-TEST", TEST_PROFILE + b"\n", replace="true")
    assert replaced.status_code == 201, replaced.text
    add_contract(
        api,
        profiles=["PROFIL-TEST"],
        record_types=["APP-5Y"],
        formats=["fmt/18", "application/pdf"],
        max_object_bytes=1_000_000,
        valid_from="2026-01-01",
        antivirus_required=False,
    )
    add_contract(api, id="CONV-EC", name="État civil", producers=["ETAT-CIVIL"])
    assert api.client.post("/api/v1/contracts/CONV-EC/disable", headers=api.auth()).is_success
    spec = simple_sip(
        "MSG-REBUILD-C", rules=[RuleSpec("AppraisalRule", "APP-5Y", final_action="Keep")]
    )
    spec.profile = "PROFIL-TEST"
    assert api.deposit(build_zip(spec)).status_code == 201
    publish(api)
    with api.runtime.sessions() as session:
        before = _rows(session)
    assert len(before[0]) == 2
    assert len(before[1]) == 1
    target = sqlite_target(tmp_path)
    report = rebuild(api.settings, "local", target)
    assert report.counts["contracts"] == 2
    assert report.counts["archival_profiles"] == 1
    engine = create_engine(target)
    try:
        with Session(engine) as session:
            after = _rows(session)
    finally:
        engine.dispose()
    assert after == before
    # `sae drill` compares these tables too.
    assert {Contract, ArchivalProfile} <= set(TABLES)


def test_a_profile_leaf_whose_document_was_altered_stops_the_replay() -> None:
    from datetime import UTC, datetime

    from sae.contracts.errors import ContractReplayMismatch
    from sae.contracts.replay import replay_profile_saved
    from sae.recovery.replay import LeafEvent, ReplayContext

    event = LeafEvent(
        index=7,
        type="profiles.saved",
        actor="token:x:archivist",
        occurred_at=datetime(2026, 12, 6, tzinfo=UTC),
        transfer_id=None,
        unit_id=None,
        object_id=None,
        digests={},
        payload={
            "profile": {"id": "P", "name": "P", "sha512": "00" * 64, "size": 3},
            "document": "<a/>",
        },
        leaf=b"",
    )
    with pytest.raises(ContractReplayMismatch, match="leaf 7"):
        replay_profile_saved(ReplayContext(session=None, offer=None), event)  # type: ignore[arg-type]
