"""Who may see a transfer: the predicate and the query are one rule."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from sae.auth.service import Principal
from sae.db import new_id
from sae.errors import NotFound
from sae.ingest.models import Transfer
from sae.ingest.visibility import get_visible_transfer, may_see_transfer, visible_transfers

PRINCIPALS = [
    Principal(token_id="t-admin", role="admin"),
    Principal(token_id="t-archivist", role="archivist"),
    Principal(token_id="t-dep", role="depositor", producers=("MAIRIE",)),
    Principal(token_id="t-dep-none", role="depositor"),
    Principal(token_id="t-reader", role="reader", producers=("MAIRIE",)),
    Principal(token_id="t-auditor", role="auditor"),
    # An account's console session: it sees what the account submitted with any token.
    Principal(token_id="t-session", role="reader", user_id="u-reader", login="lecteur"),
]


def _transfers(session: Session) -> list[Transfer]:
    rows = [
        Transfer(id=new_id(), status="OK", producer="MAIRIE", submitted_by="t-other"),
        Transfer(id=new_id(), status="OK", producer="CCAS", submitted_by="t-dep"),
        Transfer(id=new_id(), status="KO", producer=None, submitted_by="t-dep-none"),
        Transfer(id=new_id(), status="KO", producer="CCAS", submitted_by="t-reader"),
        Transfer(id=new_id(), status="OK", producer="CCAS", submitted_by=None),
        Transfer(id=new_id(), status="KO", producer="CCAS", submitted_by="u-reader"),
    ]
    session.add_all(rows)
    session.flush()
    return rows


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: p.token_id)
def test_the_query_and_the_predicate_agree(db_session: Session, principal: Principal) -> None:
    rows = _transfers(db_session)
    ids = [row.id for row in rows]
    listed = set(
        db_session.scalars(
            visible_transfers(principal).where(Transfer.id.in_(ids)).with_only_columns(Transfer.id)
        )
    )
    assert listed == {row.id for row in rows if may_see_transfer(principal, row)}


def test_who_sees_what(db_session: Session) -> None:
    mairie, own, _, by_reader, _, by_account = _transfers(db_session)
    admin, archivist, depositor, _, reader, _, session = PRINCIPALS
    assert may_see_transfer(admin, mairie)
    assert may_see_transfer(archivist, own)
    assert may_see_transfer(depositor, mairie)  # its producing service
    assert may_see_transfer(depositor, own)  # submitted by it
    assert not may_see_transfer(depositor, by_reader)
    # Producers count for depositors only; anyone sees what it submitted.
    assert not may_see_transfer(reader, mairie)
    assert may_see_transfer(reader, by_reader)
    # What an account submitted is seen from its every session, not by another reader.
    assert may_see_transfer(session, by_account)
    assert not may_see_transfer(reader, by_account)
    assert session.submitter == "u-reader"


def test_missing_and_invisible_answer_alike(db_session: Session) -> None:
    _, _, _, by_reader, _, _ = _transfers(db_session)
    depositor = PRINCIPALS[2]
    with pytest.raises(NotFound, match="no transfer") as invisible:
        get_visible_transfer(db_session, depositor, by_reader.id)
    with pytest.raises(NotFound, match="no transfer") as missing:
        get_visible_transfer(db_session, depositor, "nope")
    assert invisible.value.code == missing.value.code
    assert get_visible_transfer(db_session, PRINCIPALS[0], by_reader.id) is by_reader
