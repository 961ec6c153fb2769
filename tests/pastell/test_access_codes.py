"""Every SEDA 1.0 access code (AR038…AR062) Pastell may send: through ``seda.read_transfer_v10``,
Pastell's mapping and the ingest, the unit carries the rule of the shipped referential with the
code's duration and legal basis, and its communicability date is the code's; a code with no
such rule refuses the transfer with a fault naming it (never communicable by default)."""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

import seda
from sae.catalog.models import ArchiveUnit
from sae.config import Settings
from sae.db import transaction
from sae.ingest.models import Transfer
from sae.pastell import service
from sae.pastell.models import PastellMessage
from sae.pastell.worker import run_once
from sae.retention import referential
from sae.retention.models import UnitComputedRule
from sae.runtime import Runtime
from tests.pastell.samples import seda10, targz

CODE_LIST = Path(seda.__file__).parent / "xsd/1.0/v10/codes/seda_v1-0_accessrestriction_code.xsd"
FILES = {"acte.pdf": b"%PDF-1.4 acte"}
START = date(2026, 11, 28)  # the template's AccessRestrictionRule/StartDate

#: The rule each code means (its duration, start and legal basis: docs/pastell.md), or None
#: when the referential has no such rule. Written out here, not read from the mapping.
EXPECTED = {
    "AR038": "ACC-00001",
    "AR039": "ACC-L213-2-I1A",
    "AR040": "ACC-L213-2-I1B",
    "AR041": "ACC-L213-2-I1A",
    "AR042": None,
    "AR043": "ACC-MEDICAL-DECES",
    "AR044": "ACC-L213-2-I4-DECES",
    "AR045": "ACC-L213-2-I4-DECES",
    "AR046": "ACC-L213-2-I4-DECES",
    "AR047": "ACC-L213-2-I4-DECES",
    "AR048": "ACC-L213-2-I3",
    "AR049": "ACC-L213-2-I3",
    "AR050": "ACC-L213-2-I3",
    "AR051": None,
    "AR052": "ACC-L213-2-I4",
    "AR053": None,
    "AR054": "ACC-EC-NAISSANCE-MARIAGE",
    "AR055": "ACC-L213-2-I4",
    "AR056": "ACC-L213-2-I4",
    "AR057": "ACC-L213-2-I4",
    "AR058": "ACC-L213-2-I5",
    "AR059": "ACC-L213-2-I5",
    "AR060": "ACC-L213-2-I5",
    "AR061": "ACC-MEDICAL-NAISSANCE",
    "AR062": "ACC-L213-2-II",
}


def _code_list() -> dict[str, int | None]:
    """Each code of the SEDA 1.0 list and its duration in years as the list names it
    (``0 an``, ``25 ans…``; ``Illimitée``: None)."""
    text = CODE_LIST.read_text(encoding="utf-8")
    found: dict[str, int | None] = {}
    for code, name in re.findall(
        r'value="(AR\d+)">.*?<ccts:Name>(.*?)</ccts:Name>', text, flags=re.S
    ):
        years = re.match(r"\s*(\d+)", name)
        found[code] = int(years.group(1)) if years else None
    return found


CODES = _code_list()


def test_the_table_covers_the_whole_code_list() -> None:
    assert sorted(CODES) == sorted(EXPECTED)
    assert len(CODES) == 25
    mapped = set(service.ACCESS_CODES_10) | set(service.UNMAPPED_ACCESS_CODES_10)
    assert mapped == set(CODES)
    assert not set(service.ACCESS_CODES_10) & set(service.UNMAPPED_ACCESS_CODES_10)


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_a_seda10_access_code_becomes_its_rule(settings: Settings, code: str) -> None:
    runtime = Runtime.open(settings)
    try:
        with transaction(runtime.sessions) as session:
            referential.import_rules(session, referential.shipped_specs())
            account, _ = service.create_account(
                session, login="commune-ar", producers=["COMMUNE-AR"], password="x" * 16
            )
            session.expunge(account)
        bordereau = seda10(f"TR-{code}", "COMMUNE-AR", FILES).replace(
            b">AR038</Code>", f">{code}</Code>".encode()
        )
        assert f">{code}</Code>".encode() in bordereau
        read = seda.read_transfer_v10(bordereau)
        service.receive(runtime, account, bordereau, io.BytesIO(targz(FILES)), chunked=False)
        assert run_once(runtime) == 1
        with runtime.sessions() as session:
            message = session.scalar(
                select(PastellMessage).where(PastellMessage.transfer_identifier == f"TR-{code}")
            )
            assert message is not None
            assert message.atr is not None
            rule_id = EXPECTED[code]
            if rule_id is None:
                assert b"<ReplyCode>300</ReplyCode>" in message.atr
                assert b"pastell.access_code_unmapped" in message.atr
                assert code.encode() in message.atr
                assert message.transfer_id is None
                return
            assert b"<ReplyCode>000</ReplyCode>" in message.atr, message.atr.decode()
            transfer = session.get(Transfer, message.transfer_id)
            assert transfer is not None
            assert transfer.status == "OK"
            root = session.scalar(
                select(ArchiveUnit).where(
                    ArchiveUnit.transfer_id == transfer.id,
                    ArchiveUnit.sip_id == read.archive_unit_ids[0],
                )
            )
            assert root is not None
            computed = session.get(UnitComputedRule, (root.id, "AccessRule"))
            assert computed is not None
            assert [r["rule_id"] for r in computed.rules] == [rule_id]
            years = CODES[code]
            if years is None:
                assert computed.unbounded
                assert computed.end_date is None
            else:
                assert not computed.unbounded
                assert computed.end_date == START.replace(year=START.year + years)
    finally:
        runtime.close()
