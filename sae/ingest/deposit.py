"""One deposit as a unit of work: ingest, commit, then ask for a tree head.

Shared by ``POST /api/v1/transfers`` and the console's deposit form, so both follow exactly the
same steps: a 2xx (or the console's "accepté") only after the commit; on a lost race for the
same MessageIdentifier, the copies this attempt wrote are removed and the caller gets 409.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from sae.auth.service import Principal
from sae.errors import SAEError
from sae.ingest import service
from sae.ingest.errors import DuplicateTransfer
from sae.runtime import Runtime

log = logging.getLogger("sae.ingest")


def ingest_and_commit(
    runtime: Runtime, principal: Principal, path: Path, sip_sha512: str | None = None
) -> service.IngestOutcome:
    """Ingest the SIP at ``path`` and commit; accepted transfers get a tree head soon after."""
    env = service.IngestEnv(
        settings=runtime.settings,
        offers=runtime.strategy_offers,
        after_accept=runtime.extras.get("after_accept"),
    )
    with runtime.sessions() as session:
        outcome = service.ingest(session, env, principal, path, sip_sha512=sip_sha512)
        try:
            session.commit()
        except IntegrityError:
            # Two deposits of the same MessageIdentifier raced: the loser's copies go.
            session.rollback()
            for obj in outcome.objects:
                if obj.storage_key:
                    service.discard_stored_key(env.offers, obj.storage_key)
            raise DuplicateTransfer(
                f"MessageIdentifier {outcome.transfer.message_identifier!r} was accepted "
                "concurrently by another request"
            ) from None
    if outcome.accepted:
        request_seal(runtime)
    return outcome


def request_seal(runtime: Runtime) -> None:
    """Ask for a tree head over everything committed, now that a transfer is durable.

    The background sealer coalesces a burst of deposits into one head; a process that runs no
    sealer seals here. The transfer is durable whatever happens: if the TSA is down, the next
    round seals.
    """
    sealer = runtime.extras.get("sealer")
    if sealer is not None:
        sealer.poke()
        return
    from sae.journal.sealing import seal_now

    try:
        seal_now(runtime.sessions, runtime.settings)
    except SAEError as exc:
        log.warning("journal.seal_deferred %s: %s", exc.code, exc.detail)
