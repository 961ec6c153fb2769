"""A transfer withdrawn in quarantine, rebuilt from the offer its description left.

The withdrawal deletes the transfer's description (``transfers/<id>.zip``) from the offers with
its objects; its ``transfer.withdrawn`` leaf carries the rows that stay. The rebuild must take
that leaf as the reason the description is missing — and only that leaf: a description missing
without it still stops the rebuild, naming it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sae.config import Settings
from sae.ingest.transfer_record import transfer_record_key
from sae.recovery.errors import DescriptionInvalid
from sae.recovery.rebuild import rebuild
from tests.conftest import TEST_RULES_CSV, Api
from tests.recovery.test_rebuild import (
    get_json,
    local_offer,
    publish,
    rewrite,
    running,
    sqlite_target,
)
from tests.sipfactory import build_zip, simple_sip


def withdraw(api: Api, transfer_id: str, reason: str = "Versement en double") -> None:
    """Withdraw a transfer in quarantine, as an archivist."""
    withdrawn = api.client.post(
        f"/api/v1/transfers/{transfer_id}/withdrawal",
        headers=api.auth(api.token("archivist")),
        json={"reason": reason},
    )
    assert withdrawn.status_code == 200, withdrawn.text


def _deposit_and_withdraw(settings: Settings) -> tuple[str, str, dict[str, object]]:
    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        ids = []
        for message_id in ("MSG-WD-KEPT", "MSG-WD-GONE"):
            response = api.deposit(build_zip(simple_sip(message_id)))
            assert response.status_code == 201, response.text
            ids.append(response.json()["transfer_id"])
        kept, gone = ids
        withdraw(api, gone)
        publish(api)
        before = get_json(api, f"/api/v1/transfers/{gone}")
    assert before["status"] == "WITHDRAWN"
    return kept, gone, before


def test_a_transfer_withdrawn_in_quarantine_is_rebuilt(settings: Settings, tmp_path: Path) -> None:
    _, gone, before = _deposit_and_withdraw(settings)
    offer = local_offer(settings)
    assert offer.head(transfer_record_key(gone)) is None  # left the offer with the withdrawal
    target = sqlite_target(tmp_path)
    report = rebuild(settings, "local", target)
    assert any(gone in note and "withdrawal" in note for note in report.notes), report.notes
    assert report.admin_token_path is not None
    token = report.admin_token_path.read_text().strip()
    with running(settings.model_copy(update={"database_url": target})) as api:
        assert get_json(api, f"/api/v1/transfers/{gone}", token) == before


def test_a_description_missing_without_a_withdrawal_still_stops_the_rebuild(
    settings: Settings, tmp_path: Path
) -> None:
    kept, _, _ = _deposit_and_withdraw(settings)
    rewrite(local_offer(settings), transfer_record_key(kept), None)
    with pytest.raises(DescriptionInvalid) as stopped:
        rebuild(settings, "local", sqlite_target(tmp_path))
    assert stopped.value.key == transfer_record_key(kept)
    assert stopped.value.kind == "missing"


def test_a_transfer_recomputed_before_its_withdrawal_is_rebuilt(
    settings: Settings, tmp_path: Path
) -> None:
    from datetime import date

    from tests.retention.helpers import dossier_sip

    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        response = api.deposit(dossier_sip("MSG-WD-RULES", rule="APP-10Y", start=date(2024, 1, 1)))
        assert response.status_code == 201, response.text
        gone = response.json()["transfer_id"]
        api.load_rules(
            TEST_RULES_CSV.replace(
                "APP-10Y,AppraisalRule,Dossiers 10 ans,,10,YEAR",
                "APP-10Y,AppraisalRule,Dossiers 6 ans,,6,YEAR",
            )
        )
        withdraw(api, gone)
        publish(api)
        before = get_json(api, f"/api/v1/transfers/{gone}")
        units = {
            u["id"]: get_json(api, f"/api/v1/units/{u['id']}") for u in response.json()["units"]
        }
    # The leaves between its acceptance and its withdrawal (the rules recomputed, counting its
    # units) see it as the live catalogue did.
    target = sqlite_target(tmp_path)
    report = rebuild(settings, "local", target)
    assert report.admin_token_path is not None
    token = report.admin_token_path.read_text().strip()
    with running(settings.model_copy(update={"database_url": target})) as api:
        assert get_json(api, f"/api/v1/transfers/{gone}", token) == before
        for unit in response.json()["units"]:
            assert get_json(api, f"/api/v1/units/{unit['id']}", token) == units[unit["id"]]


def test_a_transfer_listed_before_its_withdrawal_is_rebuilt(
    settings: Settings, tmp_path: Path
) -> None:
    """A disposal list built over its due units (then rejected, which frees them) before the
    withdrawal: the replay builds the same lines, so the units have their end dates then."""
    from tests.retention.helpers import dossier_sip

    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        response = api.deposit(dossier_sip("MSG-WD-LISTED"))
        assert response.status_code == 201, response.text
        gone = response.json()["transfer_id"]
        h = api.auth(api.token("archivist"))
        listed = api.client.post(
            "/api/v1/disposal-lists",
            headers=h,
            json={"final_action": "Destroy", "producer": "FINANCES"},
        )
        assert listed.status_code == 201, listed.text
        assert {u["id"] for u in response.json()["units"]} <= set(listed.json()["units"])
        list_id = listed.json()["id"]
        for step in ("submit", "reject"):
            done = api.client.post(
                f"/api/v1/disposal-lists/{list_id}/{step}", headers=h, json={"comment": "non"}
            )
            assert done.status_code == 200, done.text
        withdraw(api, gone, "En double")
        publish(api)
        before = get_json(api, f"/api/v1/disposal-lists/{list_id}")
    target = sqlite_target(tmp_path)
    report = rebuild(settings, "local", target)
    assert report.admin_token_path is not None
    token = report.admin_token_path.read_text().strip()
    with running(settings.model_copy(update={"database_url": target})) as api:
        assert get_json(api, f"/api/v1/disposal-lists/{list_id}", token) == before
