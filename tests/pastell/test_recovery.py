"""An upload Pastell was told 200 for is ingested even if SAE stops before (or while) doing it,
and never ingested twice."""

from __future__ import annotations

import datetime as dt
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

import seda
from sae.auth.models import User
from sae.config import Settings
from sae.db import transaction, utcnow
from sae.ingest.models import Transfer
from sae.pastell import service
from sae.pastell.errors import PastellNotReady
from sae.pastell.models import PastellMessage
from sae.pastell.worker import run_once
from sae.recovery.replay import LeafEvent, ReplayContext, apply, load_all
from sae.runtime import Runtime
from tests.pastell.samples import bordereau, targz

FILES = {"acte.pdf": b"%PDF-1.4 acte"}


def _account(runtime: Runtime) -> User:
    with transaction(runtime.sessions) as session:
        account, _ = service.create_account(
            session, login="commune-1", producers=["COMMUNE-1"], password="x" * 16
        )
        session.expunge(account)
    return account


def _message(runtime: Runtime, ident: str) -> PastellMessage:
    with runtime.sessions() as session:
        message = session.scalar(
            select(PastellMessage).where(PastellMessage.transfer_identifier == ident)
        )
        assert message is not None
        session.expunge(message)
        return message


def _transfers(runtime: Runtime, ident: str) -> int:
    with runtime.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Transfer)
                .where(Transfer.message_identifier == ident)
            )
            or 0
        )


def test_an_upload_received_before_a_stop_is_ingested_at_the_next_start(
    settings: Settings,
) -> None:
    runtime = Runtime.open(settings)
    try:
        account = _account(runtime)
        data = bordereau("2.2", "TR-CRASH", "COMMUNE-1", FILES)
        received = service.receive(runtime, account, data, io.BytesIO(targz(FILES)), chunked=False)
        assert received.status == "received"
        message = _message(runtime, "TR-CRASH")
        assert message.ack is not None
        assert message.atr is None
        assert (service.uploads_dir(runtime) / str(message.attachments)).is_file()
    finally:
        runtime.close()  # the process stops before its worker ran
    runtime = Runtime.open(settings)
    try:
        assert run_once(runtime) == 1
        message = _message(runtime, "TR-CRASH")
        assert message.status == "done"
        assert message.atr is not None
        assert b"<ReplyCode>000</ReplyCode>" in message.atr
        assert _transfers(runtime, "TR-CRASH") == 1
    finally:
        runtime.close()


def test_an_ingest_interrupted_after_its_commit_is_not_done_twice(settings: Settings) -> None:
    runtime = Runtime.open(settings)
    try:
        account = _account(runtime)
        data = bordereau("2.1", "TR-TWICE", "COMMUNE-1", FILES)
        service.receive(runtime, account, data, io.BytesIO(targz(FILES)), chunked=False)
        message = _message(runtime, "TR-TWICE")
        assert service.claim(runtime, message.id)
        assert not service.claim(runtime, message.id)  # one worker at a time
        first = service.process(runtime, message.id)
        assert first is not None
        # As if the process had died after the ingest's commit, before the ATR was recorded:
        # the message is still "processing", claimed long ago.
        with transaction(runtime.sessions) as session:
            session.execute(
                update(PastellMessage)
                .where(PastellMessage.id == message.id)
                .values(status="processing", atr=None, claimed_at=utcnow() - timedelta(hours=1))
            )
        assert service.pending(runtime) == [message.id]
        assert run_once(runtime) == 1
        again = _message(runtime, "TR-TWICE")
        assert again.transfer_id == first
        assert again.atr is not None
        assert b"<ReplyCode>000</ReplyCode>" in again.atr
        assert _transfers(runtime, "TR-TWICE") == 1
    finally:
        runtime.close()


def test_an_upload_left_unrecorded_by_a_dead_process_is_removed_a_day_later(
    settings: Settings,
) -> None:
    import os
    import time

    runtime = Runtime.open(settings)
    try:
        folder = service.uploads_dir(runtime)
        old = folder / "0123456789abcdef0123456789abcdef.upload"
        fresh = folder / "fedcba9876543210fedcba9876543210.upload"
        old.write_bytes(b"x")
        fresh.write_bytes(b"y")
        two_days_ago = time.time() - 2 * 86400
        os.utime(old, (two_days_ago, two_days_ago))
        run_once(runtime)
        assert not old.exists()
        assert fresh.exists()  # it may be an upload being recorded right now
    finally:
        runtime.close()


def test_leaves_of_before_the_replay_come_back_lost_and_bound_to_the_login(
    settings: Settings,
) -> None:
    """A ``pastell.received`` leaf written before 0025_pastell_replay (no ACK, no account id:
    the actor names it) rebuilds a message ``lost`` (409, never a wrong reply), noted; an old
    ``pastell.rejected`` (no ATR) changes nothing; the account created again with the login
    owns it."""
    load_all()
    runtime = Runtime.open(settings)
    try:
        offer = next(iter(runtime.offer_set.offers.values()))

        def leaf(index: int, type_: str, payload: dict[str, object]) -> LeafEvent:
            return LeafEvent(
                index=index,
                type=type_,
                actor="user:commune-9:0b9c3c52-old-account:depositor",
                occurred_at=dt.datetime(2026, 12, 6, 10, 0, 0),
                transfer_id=None,
                unit_id=None,
                object_id=None,
                digests={},
                payload=payload,
                leaf=json.dumps(payload).encode(),
            )

        with transaction(runtime.sessions) as session:
            context = ReplayContext(session=session, offer=offer)
            apply(
                context,
                leaf(
                    0,
                    "pastell.received",
                    {
                        "message_id": "m-old",
                        "login": "commune-9",
                        "agency": "COMMUNE-9",
                        "transfer_identifier": "TR-OLD",
                        "seda_version": "2.1",
                        "bordereau_sha256": "0" * 64,
                        "attachments_bytes": 10,
                    },
                ),
            )
            apply(context, leaf(1, "pastell.rejected", {"message_id": "m-old", "faults": []}))
            assert any("TR-OLD" in note for note in context.notes)
        message = _message(runtime, "TR-OLD")
        assert message.status == "lost"
        assert message.account_id is None
        assert message.sender_id == "0b9c3c52-old-account"
        assert message.ack is None
        assert message.atr is None
        assert service.pending(runtime) == []
        with transaction(runtime.sessions) as session:
            account, _ = service.create_account(
                session, login="commune-9", producers=["COMMUNE-9"], password="x" * 16
            )
            session.expunge(account)
        assert _message(runtime, "TR-OLD").account_id == account.id
        with pytest.raises(PastellNotReady):
            service.reply(runtime, account, "Acknowledgement", "COMMUNE-9", "TR-OLD")
    finally:
        runtime.close()


def test_a_seda10_refusal_needs_no_bordereau(settings: Settings) -> None:
    """A rebuilt SEDA 1.0 message whose files are gone still gets a valid refusal ATR (its
    identifier and agencies from the journal, escaped), which Pastell reads as ``rejet-sae``."""
    message = PastellMessage(
        id="m-10",
        login="commune-1",
        sender_id="a",
        archival_agency="AD <35>",
        agency="COMMUNE & 1",
        transfer_identifier="TR 1.0/PERDU",
        seda_version="1.0",
        bordereau=b"",
    )
    runtime = Runtime.open(settings)
    try:
        with runtime.sessions() as session:
            atr = service._atr(
                session,
                message,
                None,
                [{"code": service.LOST, "message": "renvoyez-le", "where": None}],
            )
    finally:
        runtime.close()
    root = seda.safe_parse(atr)
    ns = {"s": seda.SEDA10_NAMESPACE}
    assert root.xpath("s:TransferIdentifier/text()", namespaces=ns) == ["TR 1.0/PERDU"]
    assert root.xpath("s:ReplyCode/text()", namespaces=ns) == ["300"]
    assert root.xpath("s:TransferringAgency/s:Identification/text()", namespaces=ns) == [
        "COMMUNE & 1"
    ]
    assert seda.validate_v10(root) == []
