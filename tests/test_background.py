"""Background work: scheduled fixity audits, waiting audits resumed, heads sealed on request."""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import select

from sae.background import SCHEDULER, Auditor
from sae.db import transaction
from sae.runtime import Runtime
from sae.storage.audit import create_audit
from sae.storage.models import Audit
from tests.conftest import TEST_RULES_CSV, Api
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


def _count_time_stamps(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[int]:
    """Count the TSA's tokens (the TSA still answers: it is only counted)."""
    from sae.journal.keys import load_journal_keys

    tsa = type(load_journal_keys(settings).tsa)
    original = tsa.timestamp
    calls: list[int] = []

    def counted(self: Any, data: bytes) -> Any:
        calls.append(1)
        return original(self, data)

    monkeypatch.setattr(tsa, "timestamp", counted)
    return calls


def test_two_processes_seal_one_head_per_spacing_and_time_stamp_it_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes (two runtimes, each its own engine and sealer) poked by their deposits at
    the same moments, for 3 s: one head per spacing for the two of them, and each head
    time-stamped once — not twice (both at the TSA) nor one each."""
    from sqlalchemy import func

    from sae.background import Sealer
    from sae.journal.models import TreeHead
    from sae.journal.service import NewEvent, append_events

    spacing = 0.8
    settings = api.runtime.settings.model_copy(update={"seal_spacing_seconds": spacing})
    calls = _count_time_stamps(monkeypatch, settings)
    other = Runtime.open(settings)
    runtimes = [api.runtime, other]
    sealers = [Sealer(rt.sessions, settings, check_seconds=3600) for rt in runtimes]
    for sealer in sealers:
        sealer.start()
    try:
        deadline = time.monotonic() + 3.0
        i = 0
        while time.monotonic() < deadline:
            with transaction(runtimes[i % 2].sessions) as session:
                last = append_events(session, [NewEvent(type="test.two", actor=f"t{i}")])
            for sealer in sealers:  # both processes took a deposit just now
                sealer.poke()
            i += 1
            time.sleep(0.05)
        # Let the last spacing run out: the leaves poked for get their head before the stop.
        wait_until = time.monotonic() + 5
        while time.monotonic() < wait_until:
            with transaction(api.runtime.sessions) as session:
                size = session.scalar(select(func.max(TreeHead.tree_size)))
            if size == last[0].leaf_index + 1:
                break
            time.sleep(0.05)
    finally:
        for sealer in sealers:
            sealer.stop()
        other.close()
    with transaction(api.runtime.sessions) as session:
        heads = list(session.scalars(select(TreeHead).order_by(TreeHead.tree_size)))
    assert heads[-1].tree_size == last[0].leaf_index + 1  # every poked leaf is under a head
    assert len(calls) == len(heads), (len(calls), len(heads))  # no token time-stamped for naught
    assert 3 <= len(heads) <= 6, len(heads)  # ~3 s / 0.8 s, not ~60 nor twice as many
    gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in pairwise(heads)]
    assert min(gaps) >= spacing - 0.01, gaps


def test_a_dead_sealers_turn_is_taken_over_once_its_lease_expires(api: Api) -> None:
    """A process died while it held the sealer's turn (at the TSA, say): the others wait for
    its lease to expire, then seal the leaves it left."""
    from datetime import timedelta

    from sae import leases
    from sae.background import Sealer
    from sae.db import utcnow
    from sae.journal.models import TreeHead
    from sae.journal.sealing import SEALER_LEASE
    from sae.journal.service import NewEvent, append_events

    runtime = api.runtime
    expiry = utcnow() + timedelta(seconds=1.5)
    assert leases.take(runtime.sessions, SEALER_LEASE, "dead-host:4242:0", timedelta(seconds=1.5))
    with transaction(runtime.sessions) as session:
        leaf = append_events(session, [NewEvent(type="test.dead", actor="t")])[0].leaf_index
    sealer = Sealer(runtime.sessions, runtime.settings, check_seconds=3600)
    sealer.start()
    try:
        sealer.poke()
        time.sleep(0.8)
        with transaction(runtime.sessions) as session:
            assert session.scalar(select(TreeHead).where(TreeHead.tree_size > leaf)) is None
        deadline = time.monotonic() + 10
        head = None
        while head is None and time.monotonic() < deadline:
            time.sleep(0.05)
            with transaction(runtime.sessions) as session:
                head = session.scalar(select(TreeHead).where(TreeHead.tree_size > leaf))
        assert head is not None
        assert head.timestamp >= expiry
        held = leases.holder(runtime.sessions, SEALER_LEASE)
        assert held is not None
        assert held[0] == sealer.owner  # kept until its spacing is over
    finally:
        sealer.stop()


def test_one_auditor_for_the_installation(api: Api) -> None:
    """Two processes' auditors: one runs the rounds (a waiting audit is run once, by it), the
    other stands by; once the first's lease expires (it died), the other takes the rounds
    over; a stopped auditor lets the rounds go at once."""
    from sae import leases
    from sae.background import AUDITOR_LEASE

    api.runtime.settings.audit_interval_hours = 0
    other = Runtime.open(api.runtime.settings)
    try:
        first = _auditor(api)
        second = Auditor(other.sessions, other.settings, other.offer_set, check_seconds=3600)
        with transaction(api.runtime.sessions) as session:
            waiting = create_audit(session, api.runtime.offer_set, requested_by="token:x:a").id
        start = threading.Barrier(2)
        done: dict[str, list[str]] = {}

        def round_of(auditor: Auditor) -> None:
            start.wait()
            done[auditor.owner] = auditor.run_once()

        threads = [threading.Thread(target=round_of, args=(a,)) for a in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(done.values()) == [[], [waiting]], done
        holder = first if done[first.owner] else second
        standby = second if holder is first else first
        # The holder renews round after round; the standby does nothing meanwhile.
        with transaction(api.runtime.sessions) as session:
            again = create_audit(session, api.runtime.offer_set, requested_by="token:x:a").id
        assert standby.run_once() == []
        assert holder.run_once() == [again]
        # The holder dies (its lease is left to expire): the standby takes over.
        with transaction(api.runtime.sessions) as session:
            third = create_audit(session, api.runtime.offer_set, requested_by="token:x:a").id
            from sae.db import utcnow
            from sae.leases import Lease

            lease = session.get(Lease, AUDITOR_LEASE)
            assert lease is not None
            assert lease.owner == holder.owner
            lease.expires_at = utcnow()
        assert standby.run_once() == [third]
        assert holder.run_once() == []  # came back: the other holds the rounds now
        standby.start()
        standby.stop()  # a stop lets the lease go: the other takes over at once
        held = leases.holder(api.runtime.sessions, AUDITOR_LEASE)
        assert held is not None
        assert held[1] <= utcnow()
        assert holder.run_once() == []
        held = leases.holder(api.runtime.sessions, AUDITOR_LEASE)
        assert held is not None
        assert held[0] == holder.owner
    finally:
        other.close()


def test_one_process_of_the_installation_talks_to_the_witnesses(api: Api) -> None:
    """Two processes with witnesses configured: one asks them (the journal.witnessing lease),
    the other stands by; when the first stops, the other takes over at once."""
    from sae.background import Sealer
    from sae.journal.note import Verifier, WitnessKey
    from sae.journal.witnessing import Witness, WitnessSet

    key = WitnessKey.generate("witness.example/w")
    # Nobody listens there: a round is tried and fails, which is all this test counts.
    witness = Witness("witness.example/w", "http://127.0.0.1:9", key.vkey, Verifier.parse(key.vkey))
    witnesses = WitnessSet((witness,), 1)
    other = Runtime.open(api.runtime.settings)
    sealers = [
        Sealer(rt.sessions, rt.settings, check_seconds=0.2, witnesses=witnesses)
        for rt in (api.runtime, other)
    ]
    rounds = [0, 0]
    for number, sealer in enumerate(sealers):
        client = sealer.witness_client
        assert client is not None
        original = client.round

        def counted(*, force: bool = False, number: int = number, original: Any = original) -> Any:
            rounds[number] += 1
            return original(force=force)

        client.round = counted  # type: ignore[method-assign]
    try:
        for sealer in sealers:
            sealer.start()
        time.sleep(1.5)
        assert sorted(count > 0 for count in rounds) == [False, True], rounds
        holder = 0 if rounds[0] else 1
        standby = 1 - holder
        sealers[holder].stop()
        before = rounds[standby]
        time.sleep(1.0)
        assert rounds[standby] > before, rounds  # took over without waiting for the expiry
    finally:
        for sealer in sealers:
            sealer.stop()
        other.close()


def test_sae_serve_with_two_workers_seals_one_head_per_spacing(
    settings: Any, tmp_path: Any
) -> None:
    """``sae serve`` with SAE_WORKERS=2 — two real processes — under 6 concurrent depositors
    for 4 s: the heads the two sealers seal are at least SAE_SEAL_SPACING_SECONDS apart, and
    every acknowledged transfer ends up under one (SQLite file and PostgreSQL)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from sae.db import make_engine, make_sessionmaker
    from sae.journal.models import TreeHead
    from sae.journal.service import tree_size
    from tests.crash.harness import ServerProcess

    spacing = 1.0
    env = {
        "SAE_WORKERS": "2",
        "SAE_DATABASE_URL": settings.db_url,
        "SAE_SEAL_SPACING_SECONDS": str(spacing),
    }
    if settings.seda_xsd_dir is not None:
        env["SAE_SEDA_XSD_DIR"] = str(settings.seda_xsd_dir)
    server = ServerProcess(tmp_path / "sae-data", env=env)
    server.start()
    engine = make_engine(settings.db_url)
    sessions = make_sessionmaker(engine)
    try:
        with server.client() as client:
            assert client.put(
                "/api/v1/rules",
                content=TEST_RULES_CSV.encode(),
                headers={**server.headers(), "Content-Type": "text/csv"},
            ).is_success
        deadline = time.monotonic() + 4.0

        def depositor(number: int) -> int:
            accepted = 0
            with httpx.Client(base_url=server.url, timeout=60) as client:
                # Two deposits each at least: on a loaded machine a process's first deposit
                # (the PRONOM signatures loaded) can take the whole window.
                while time.monotonic() < deadline or accepted < 2:
                    sip = build_zip(simple_sip(f"MSG-W{number}-{accepted}"))
                    reply = client.post(
                        "/api/v1/transfers",
                        content=sip,
                        headers={**server.headers(), "Content-Type": "application/zip"},
                    )
                    assert reply.status_code == 201, reply.text
                    accepted += 1
            return accepted

        with ThreadPoolExecutor(6) as pool:
            assert sum(pool.map(depositor, range(6))) > 6
        with sessions() as session:
            size = tree_size(session)
        end = time.monotonic() + 10
        heads: list[Any] = []
        while time.monotonic() < end:  # the last poke's head, after its spacing
            with sessions() as session:
                heads = list(session.scalars(select(TreeHead).order_by(TreeHead.tree_size)))
            if heads and heads[-1].tree_size >= size:
                break
            time.sleep(0.2)
        assert heads
        assert heads[-1].tree_size >= size, (heads[-1].tree_size, size)
        gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in pairwise(heads)]
        assert gaps
        assert min(gaps) >= spacing - 0.01, gaps
    finally:
        server.stop()
        engine.dispose()
