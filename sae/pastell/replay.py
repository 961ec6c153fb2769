"""Replays of the Pastell events (see :mod:`sae.recovery.replay`): Pastell's mailbox
(``pastell_messages``) is rebuilt, so that after the loss of the database a commune's Pastell
gets the same ACK and ATR, byte for byte, for a transfer it sent before (issue 17).

- ``pastell.received``: the message, keyed by its id, with the ACK as sent (``ack``, base64),
  its keys (``login``, ``agency``, ``transfer_identifier``, ``seda_version``,
  ``archival_agency``), ``bordereau_sha256`` and ``attachments`` (the upload's name in
  ``$SAE_DATA_DIR/pastell``), status ``received``. The bordereau itself is not in the journal
  (a refused transfer's description would then stay on WORM offers forever): it waits beside
  the upload (``<name>.bordereau``) until the ATR is written, and the worker reads it back
  from there (checked against ``bordereau_sha256``) to ingest a message received but not
  processed at the loss — or, with the files gone too, refuses it (``pastell.lost_in_rebuild``:
  Pastell's ``rejet-sae``, from which the commune sends it again) unless the ingest's own
  leaves show it archived (then ``lost``: no ATR, 409, never a refusal of an archived
  transfer).
- ``pastell.accepted`` / ``pastell.rejected``: the ATR as sent (``atr_deflated``: zlib, base64),
  the SAE transfer id, the faults; the message ``done``.

Accounts are not rebuilt (their secret never reaches the journal: :mod:`sae.auth.replay`). A
message is bound to its account when one with the leaf's account id exists (``sae restore``
of a backup that holds it), else to the service account of the same login, else to none:
``sae pastell-account create`` with the same login binds it then
(:func:`sae.pastell.service.create_account`), and Pastell's lookups, scoped to the account,
answer as before. ``sender_id`` keeps the id the journal and ``transfers.submitted_by`` name.

Leaves written before ``0025_pastell_replay`` carry neither ACK nor ATR: their message comes
back ``lost`` (its lookups answer 409 "not ready"; docs/pastell.md says what to do), and an old
``pastell.rejected`` leaf (a refusal before the ingest) changes nothing more.
"""

from __future__ import annotations

import base64
import datetime as dt
import zlib
from typing import Any

from sqlalchemy import select

from sae.auth.models import User
from sae.pastell.models import PastellMessage
from sae.recovery.replay import LeafEvent, ReplayContext, replays


def _when(value: Any, default: dt.datetime) -> dt.datetime:
    if not isinstance(value, str):
        return default if default.tzinfo else default.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(value)
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _account_of(context: ReplayContext, account_id: str, login: str) -> str | None:
    """The account the message belongs to in the catalogue being rebuilt, if there is one."""
    session = context.session
    user = session.get(User, account_id) if account_id else None
    if user is not None and user.login == login:
        return user.id
    return session.scalar(
        select(User.id).where(User.login == login, User.kind == "service", User.role == "depositor")
    )


def _actor_account(actor: str) -> tuple[str, str]:
    """(login, account id) from an actor ``user:<login>:<account id>:depositor``."""
    parts = actor.split(":")
    if len(parts) >= 4 and parts[0] == "user":
        return ":".join(parts[1:-2]), parts[-2]
    return "", ""


@replays("pastell.received")
def _received(context: ReplayContext, event: LeafEvent) -> None:
    payload = event.payload
    actor_login, actor_id = _actor_account(event.actor)
    login = str(payload.get("login") or actor_login)
    sender_id = str(payload.get("account_id") or actor_id)
    session = context.session
    account_id = _account_of(context, sender_id, login)
    message = session.get(PastellMessage, str(payload["message_id"]))
    if message is None:
        message = PastellMessage(id=str(payload["message_id"]))
    ack = payload.get("ack")
    message.account_id = account_id
    message.login = login
    message.sender_id = sender_id
    message.agency = str(payload["agency"])
    message.transfer_identifier = str(payload["transfer_identifier"])
    message.seda_version = str(payload["seda_version"])
    message.archival_agency = payload.get("archival_agency")
    message.bordereau = b""
    message.bordereau_sha256 = str(payload["bordereau_sha256"])
    message.attachments = payload.get("attachments")
    message.attachments_bytes = int(payload.get("attachments_bytes") or 0)
    message.received_at = _when(payload.get("received_at"), event.occurred_at)
    message.claimed_at = None
    message.attempts = 0
    message.completed_at = None
    message.transfer_id = None
    message.atr = None
    session.add(message)
    if isinstance(ack, str):
        message.ack = base64.b64decode(ack)
        message.status = "received"
    else:
        message.ack = None
        message.status = "lost"
        context.notes.append(
            f"pastell: message {message.id} ({login}, {message.transfer_identifier!r}) journaled "
            "before its ACK was: not answered after the rebuild (409), see docs/pastell.md"
        )


@replays("pastell.accepted", "pastell.rejected")
def _replied(context: ReplayContext, event: LeafEvent) -> None:
    payload = event.payload
    message = context.session.get(PastellMessage, str(payload["message_id"]))
    atr = payload.get("atr_deflated")
    if message is None or not isinstance(atr, str):
        return  # a leaf of before 0025_pastell_replay: its ATR was not journaled
    message.atr = zlib.decompress(base64.b64decode(atr))
    message.status = "done"
    message.transfer_id = payload.get("transfer_id")
    message.completed_at = _when(payload.get("completed_at"), event.occurred_at)
    message.claimed_at = None
