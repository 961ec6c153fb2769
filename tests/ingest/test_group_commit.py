"""Accepted transfers of concurrent deposits are committed in groups (sae.ingest.deposit).

Each test holds the first group's write until the other deposits are waiting behind it, so that
they make one group: what is checked is what a group does, not how the threads happened to run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from sae.auth.service import SYSTEM
from sae.ingest import deposit, service
from sae.ingest.errors import CommitFailed, DuplicateTransfer
from sae.journal.sealing import seal_now
from sae.journal.service import AppendedLeaf, journal_ref
from sae.journal.verification import verify_journal
from tests.conftest import Api
from tests.sipfactory import build_zip, simple_sip


def _sips(tmp_path: Path, message_ids: Sequence[str]) -> list[Path]:
    paths = []
    for i, message_id in enumerate(message_ids):
        path = tmp_path / f"sip-{i}.zip"
        path.write_bytes(build_zip(simple_sip(message_id, payload=b"%PDF-1.4 " + bytes([i]) * 64)))
        paths.append(path)
    return paths


class Held:
    """``service.write_accepted`` whose first call waits until ``waiting`` deposits queue up
    behind it; records the size of every group written."""

    def __init__(self, api: Api, waiting: int) -> None:
        self.group = deposit.group_commit(api.runtime)
        self.waiting = waiting
        self.sizes: list[int] = []
        self.original: Callable[..., list[AppendedLeaf]] = service.write_accepted

    def __call__(
        self, session: Any, accepted: Sequence[service.AcceptedTransfer]
    ) -> list[AppendedLeaf]:
        self.sizes.append(len(accepted))
        if len(self.sizes) == 1:
            deadline = time.monotonic() + 60
            while len(self.group._queue) < self.waiting:
                assert time.monotonic() < deadline, "the other deposits never queued"
                time.sleep(0.01)
        return self.original(session, accepted)


@pytest.fixture
def held(api: Api, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Held]:
    def make(waiting: int) -> Held:
        found = Held(api, waiting)
        monkeypatch.setattr(service, "write_accepted", found)
        return found

    return make


def _deposit_all(api: Api, paths: Sequence[Path]) -> list[Any]:
    """Deposit every SIP from its own thread, the first one first; each outcome or error."""
    results: list[Any] = [None] * len(paths)

    def run(i: int) -> None:
        try:
            results[i] = deposit.ingest_and_commit(api.runtime, SYSTEM, paths[i])
        except Exception as exc:
            results[i] = exc

    first = threading.Thread(target=run, args=(0,))
    first.start()
    group = deposit.group_commit(api.runtime)
    deadline = time.monotonic() + 60
    while not group._leading:  # the first deposit is writing (and held)
        assert time.monotonic() < deadline
        assert first.is_alive(), results[0]
        time.sleep(0.005)
    others = [threading.Thread(target=run, args=(i,)) for i in range(1, len(paths))]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(120)
    return results


def _count(api: Api, column: Any, **where: Any) -> int:
    with api.runtime.sessions() as session:
        query = select(func.count()).select_from(column.class_)
        for key, value in where.items():
            query = query.where(getattr(column.class_, key) == value)
        return int(session.scalar(query) or 0)


def _stored_keys(api: Api) -> set[str]:
    return set(api.runtime.offer_set.offers["local"].list_keys("objects/"))


def test_waiting_transfers_are_committed_together(
    api: Api, tmp_path: Path, held: Callable[[int], Held]
) -> None:
    from sae.catalog.models import ArchiveUnit
    from sae.journal.models import Event

    group = held(4)
    results = _deposit_all(api, _sips(tmp_path, [f"MSG-GROUP-{i}" for i in range(5)]))
    assert all(isinstance(r, service.IngestOutcome) and r.accepted for r in results), results
    assert group.sizes == [1, 4]  # the first alone, the four that waited behind it together
    # A head over every leaf now: the background sealer would otherwise seal one between the
    # two journal references compared below, and the first would have no head.
    seal_now(api.runtime.sessions, api.runtime.settings, wait=True)
    for outcome in results:
        transfer_id = outcome.transfer.id
        assert _count(api, ArchiveUnit.id, transfer_id=transfer_id) == len(outcome.units) > 0
        # its leaves: its object, then its acceptance
        assert len(outcome.objects) == 1
        assert _count(api, Event.leaf_index, transfer_id=transfer_id) == 2
        answer = api.client.get(f"/api/v1/transfers/{transfer_id}", headers=api.auth())
        assert answer.status_code == 200
        assert answer.json()["status"] == "OK"
        # The leaf the reply names is this transfer's acceptance, as the journal holds it.
        with api.runtime.sessions() as session:
            decision = session.scalars(
                select(Event).where(Event.leaf_index == outcome.leaf_index)
            ).one()
            assert (decision.type, decision.transfer_id) == ("ingest.accepted", transfer_id)
            assert journal_ref(session, transfer_id) == journal_ref(
                session, transfer_id, outcome.leaf_index
            )
    with api.runtime.sessions() as session:
        report = verify_journal(session, workers=1)
    assert report.ok, report


def test_a_duplicate_in_a_group_fails_alone(
    api: Api, tmp_path: Path, held: Callable[[int], Held]
) -> None:
    from sae.catalog.models import ArchiveUnit

    group = held(3)
    paths = _sips(tmp_path, ["MSG-FIRST", "MSG-TWICE", "MSG-OTHER", "MSG-TWICE"])
    results = _deposit_all(api, paths)
    assert group.sizes[:2] == [1, 3]  # the group of three failed on the constraint, then…
    assert group.sizes[2:] == [1, 1, 1]  # …each of its transfers alone
    refused = [r for r in results if isinstance(r, DuplicateTransfer)]
    accepted = [r for r in results if isinstance(r, service.IngestOutcome)]
    assert len(refused) == 1, results
    assert len(accepted) == 3, results
    assert {r.transfer.message_identifier for r in accepted} == {
        "MSG-FIRST",
        "MSG-TWICE",
        "MSG-OTHER",
    }
    assert _count(api, ArchiveUnit.id) == sum(len(r.units) for r in accepted)
    # the loser's copy is gone; the winners' are there
    assert _stored_keys(api) == {o.storage_key for r in accepted for o in r.objects}


def test_a_failed_group_fails_each_of_its_transfers_and_keeps_nothing(
    api: Api, tmp_path: Path, held: Callable[[int], Held], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae.catalog.models import ArchiveUnit
    from sae.ingest.models import Transfer

    group = held(2)
    original = group.original

    def broken(
        session: Any, accepted: Sequence[service.AcceptedTransfer]
    ) -> list[AppendedLeaf]:
        leaves = original(session, accepted)
        if len(accepted) > 1:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        return leaves

    group.original = broken
    paths = _sips(tmp_path, ["MSG-OK", "MSG-LOST-1", "MSG-LOST-2"])
    results = _deposit_all(api, paths)
    assert group.sizes == [1, 2]
    assert isinstance(results[0], service.IngestOutcome)
    assert results[0].accepted
    assert all(isinstance(r, CommitFailed) for r in results[1:]), results
    assert all(r.status == 503 and r.code == "ingest.commit_failed" for r in results[1:])
    assert results[1] is not results[2]  # each thread raises its own error
    assert _count(api, ArchiveUnit.id) == len(results[0].units)
    assert _count(api, Transfer.id) == 1
    assert _stored_keys(api) == {o.storage_key for o in results[0].objects}
    # The same SIPs, deposited again, are accepted.
    monkeypatch.setattr(service, "write_accepted", original)
    for path in paths[1:]:
        assert api.deposit(path.read_bytes()).status_code == 201


def test_a_commit_failure_answers_503_over_http(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(session: Any, accepted: Sequence[service.AcceptedTransfer]) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(service, "write_accepted", broken)
    (path,) = _sips(tmp_path, ["MSG-503"])
    answer = api.deposit(path.read_bytes())
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "ingest.commit_failed"
    assert _stored_keys(api) == set()
