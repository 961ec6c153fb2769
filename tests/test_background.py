"""Background work: scheduled fixity audits, waiting audits resumed, heads sealed on request."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from sae.background import SCHEDULER, Auditor
from sae.db import transaction
from sae.runtime import Runtime
from sae.storage.audit import create_audit
from sae.storage.models import Audit
from tests.conftest import Api
from tests.sipfactory import build_zip, simple_sip


def _auditor(api: Api) -> Auditor:
    runtime = api.runtime
    return Auditor(runtime.sessions, runtime.settings, runtime.offer_set, check_seconds=3600)


def test_a_scheduled_audit_runs_once_per_interval(api: Api) -> None:
    assert api.deposit(build_zip(simple_sip("MSG-AUDIT"))).status_code == 201
    api.runtime.settings.audit_sample_rate = 1.0
    auditor = _auditor(api)
    done = auditor.run_once()
    assert len(done) == 1
    with api.runtime.sessions() as session:
        audit = session.get(Audit, done[0])
        assert audit is not None
        assert audit.requested_by == SCHEDULER
        assert audit.status == "done"
        assert audit.checked == 1
    assert auditor.run_once() == []  # not due again before the interval


def test_two_instances_schedule_one_audit(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes (two runtimes on one database) find an audit due at the same moment: the
    second waits for the first's decision and records none (SQLite and PostgreSQL)."""
    from sae.storage import audit as audit_module

    original = audit_module.create_audit

    def slow_create(*args: Any, **kwargs: Any) -> Audit:
        time.sleep(0.3)  # the window in which the other instance reads "none recorded yet"
        return original(*args, **kwargs)

    monkeypatch.setattr(audit_module, "create_audit", slow_create)
    other = Runtime.open(api.runtime.settings)
    try:
        auditors = [_auditor(api), Auditor(other.sessions, other.settings, other.offer_set)]
        start = threading.Barrier(2)
        scheduled: list[str | None] = []

        def schedule(auditor: Auditor) -> None:
            start.wait()
            scheduled.append(auditor.schedule_if_due())

        threads = [threading.Thread(target=schedule, args=(a,)) for a in auditors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        other.close()
    assert scheduled.count(None) == 1, scheduled
    with api.runtime.sessions() as session:
        assert len(session.scalars(select(Audit)).all()) == 1


def test_no_schedule_when_disabled(api: Api) -> None:
    api.runtime.settings.audit_interval_hours = 0
    assert _auditor(api).run_once() == []
    with api.runtime.sessions() as session:
        assert session.scalars(select(Audit)).all() == []


def test_a_waiting_audit_is_taken_up(api: Api) -> None:
    api.runtime.settings.audit_interval_hours = 0
    with transaction(api.runtime.sessions) as session:
        waiting = create_audit(session, api.runtime.offer_set, requested_by="token:x:auditor")
        waiting_id = waiting.id
    assert _auditor(api).run_once() == [waiting_id]
    response = api.client.get(f"/api/v1/audits/{waiting_id}", headers=api.auth())
    assert response.json()["status"] == "done"


def test_a_deposit_is_followed_by_a_sealed_head(api: Api) -> None:
    import time

    reply = api.deposit(build_zip(simple_sip("MSG-SEAL"))).json()
    deadline = time.monotonic() + 20
    while True:
        journal = api.client.get(
            f"/api/v1/transfers/{reply['transfer_id']}", headers=api.auth()
        ).json()["journal"]
        if journal["tree_size"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert journal["tree_size"] > journal["leaf_index"]
    head = api.client.get("/api/v1/journal/head", headers=api.auth()).json()
    assert head["tree_size"] >= journal["tree_size"]


def test_a_burst_of_pokes_is_covered_by_one_head_per_spacing(api: Api) -> None:
    import time

    from sqlalchemy import func

    from sae.background import Sealer
    from sae.journal.models import TreeHead
    from sae.journal.service import NewEvent, append_events

    runtime = api.runtime
    settings = runtime.settings.model_copy(update={"seal_spacing_seconds": 0.6})
    with transaction(runtime.sessions) as session:
        heads_before = session.scalar(select(func.count(TreeHead.id)))
    sealer = Sealer(runtime.sessions, settings, check_seconds=3600)
    sealer.start()
    try:
        for i in range(12):  # one transfer every 0.1 s for 1.2 s
            with transaction(runtime.sessions) as session:
                leaf = append_events(session, [NewEvent(type="test.burst", actor=f"t{i}")])
            sealer.poke()
            time.sleep(0.1)
    finally:
        sealer.stop()
    with transaction(runtime.sessions) as session:
        heads = session.scalar(select(func.count(TreeHead.id))) - heads_before
        last = session.scalar(select(func.max(TreeHead.tree_size)))
    # At t=0, then at most once per 0.6 s, then the pending poke honoured at stop: not 12.
    assert 2 <= heads <= 4
    assert last == leaf[0].leaf_index + 1  # nothing poked is left unsealed


def test_the_spacing_counts_from_a_head_another_process_sealed(api: Api) -> None:
    """Two processes share one journal: a poke arriving just after the *other* process sealed a
    head waits out the spacing too, so together they seal one head per spacing, not one each."""
    from sqlalchemy import func

    from sae.background import Sealer
    from sae.journal.models import TreeHead
    from sae.journal.sealing import seal_now
    from sae.journal.service import NewEvent, append_events

    settings = api.runtime.settings.model_copy(update={"seal_spacing_seconds": 1.5})
    other = Runtime.open(settings)  # the second process, its own sessions and sealer

    def new_leaf() -> int:
        with transaction(api.runtime.sessions) as session:
            return append_events(session, [NewEvent(type="test.spacing", actor="t")])[0].leaf_index

    def latest() -> int:
        with transaction(api.runtime.sessions) as session:
            return int(session.scalar(select(func.max(TreeHead.tree_size))) or 0)

    new_leaf()
    first = seal_now(api.runtime.sessions, settings)  # this process seals a head now
    assert first is not None
    sealer = Sealer(other.sessions, settings, check_seconds=3600)
    sealer.start()
    try:
        leaf = new_leaf()
        sealer.poke()  # the other process, poked by its own deposit right after
        time.sleep(0.6)
        assert latest() == first.tree_size  # still within the spacing of the first head
        deadline = time.monotonic() + 5
        while latest() <= leaf and time.monotonic() < deadline:
            time.sleep(0.05)
        assert latest() == leaf + 1  # then sealed, covering the new leaf
    finally:
        sealer.stop()
        other.close()
