"""Four eyes on destruction (issue 19, item 5): the archivist who built or submitted a
destruction list cannot approve it; another archivist can; the executor is recorded; with
``SAE_DISPOSAL_FOUR_EYES`` off (a single-archivist commune) one archivist may, and the
destruction certificate says so in French."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
from pypdf import PdfReader

from tests.conftest import Api
from tests.retention.helpers import Clock, dossier_sip, events

PDF = b"%PDF-1.4\n% visa des Archives departementales\n%%EOF\n"


def _due_list(api: Api, clock: Clock, token: str) -> str:
    clock.set(date(2015, 3, 1))
    assert api.deposit(dossier_sip("MSG-4EYES", title="Factures 2013")).status_code == 201
    clock.set(date(2021, 6, 20))
    response = api.client.post(
        "/api/v1/disposal-lists", headers=api.auth(token), json={"final_action": "Destroy"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _approve(api: Api, list_id: str, token: str) -> Any:
    return api.client.post(
        f"/api/v1/disposal-lists/{list_id}/approve", headers=api.auth(token), json={"comment": "ok"}
    )


def _visa_and_execute(api: Api, list_id: str, token: str) -> dict[str, Any]:
    visa = api.client.post(
        f"/api/v1/disposal-lists/{list_id}/visa",
        headers=api.auth(token),
        files={"document": ("visa.pdf", PDF, "application/pdf")},
        data={"reference": "AD93-2021-042", "decision_date": "2021-06-15"},
    )
    assert visa.status_code == 200, visa.text
    executed = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute", headers=api.auth(token))
    assert executed.status_code == 200, executed.text
    return dict(executed.json())


def _certificate_text(api: Api, list_id: str) -> str:
    pdf = api.client.get(f"/api/v1/disposal-lists/{list_id}/certificate", headers=api.auth())
    assert pdf.status_code == 200, pdf.text
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)


def test_the_creator_cannot_approve_another_archivist_can(api: Api, clock: Clock) -> None:
    marie, paul = api.token("archivist"), api.token("archivist")
    list_id = _due_list(api, clock, marie)
    refused = _approve(api, list_id, marie)
    assert refused.status_code == 409
    assert refused.json()["code"] == "disposal.four_eyes"
    assert events(api, "disposal.approved") == []
    # Nor after submitting it: whoever put the list forward is one of its two pairs of eyes.
    submitted = api.client.post(
        f"/api/v1/disposal-lists/{list_id}/submit", headers=api.auth(paul), json={}
    )
    assert submitted.status_code == 200, submitted.text
    assert _approve(api, list_id, paul).json()["code"] == "disposal.four_eyes"
    claire = api.token("archivist")
    approved = _approve(api, list_id, claire)
    assert approved.status_code == 200, approved.text
    assert _token_id(api, claire) in approved.json()["decided_by"]
    (event,) = events(api, "disposal.approved")
    assert event.payload["four_eyes"] is True
    executed = _visa_and_execute(api, list_id, marie)
    # The executor is recorded, on the list and on the certificate.
    assert _token_id(api, marie) in executed["executed_by"]
    text = _certificate_text(api, list_id)
    assert "quatre yeux" not in text
    assert _token_id(api, marie) in text.replace("\n", "")


def test_setting_off_one_archivist_alone_and_the_certificate_says_so(
    api: Api, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = api.settings.model_copy(update={"disposal_four_eyes": False})
    monkeypatch.setattr(api.runtime, "settings", settings)
    marie = api.token("archivist")
    list_id = _due_list(api, clock, marie)
    approved = _approve(api, list_id, marie)
    assert approved.status_code == 200, approved.text
    (event,) = events(api, "disposal.approved")
    assert event.payload["four_eyes"] is False
    _visa_and_execute(api, list_id, marie)
    text = " ".join(_certificate_text(api, list_id).split())
    assert "Contrôle à quatre yeux désactivé" in text
    assert "approuvée par la personne qui l'avait établie" in text


def test_a_keep_list_needs_no_second_archivist(api: Api, clock: Clock) -> None:
    """Four eyes guard destruction; permanent keeping destroys nothing."""
    marie = api.token("archivist")
    clock.set(date(2015, 3, 1))
    kept = dossier_sip("MSG-KEEP4", final_action="Keep", title="Budgets 2013")
    assert api.deposit(kept).status_code == 201
    clock.set(date(2021, 6, 20))
    list_id = api.client.post(
        "/api/v1/disposal-lists", headers=api.auth(marie), json={"final_action": "Keep"}
    ).json()["id"]
    assert _approve(api, list_id, marie).status_code == 200


def _token_id(api: Api, secret: str) -> str:
    from sae.auth.service import authenticate

    with api.runtime.sessions() as session:
        return authenticate(session, secret).token_id


def test_two_tokens_of_one_account_are_one_person(api: Api, clock: Clock) -> None:
    """Marie's second token (or her console session) is still Marie."""
    from sae.auth import accounts
    from sae.db import transaction

    with transaction(api.runtime.sessions) as session:
        marie = accounts.create_user(session, login="marie", role="archivist")
        _, first = accounts.create_token(session, user=marie, label="poste")
        _, second = accounts.create_token(session, user=marie, label="portable")
    list_id = _due_list(api, clock, first)
    refused = _approve(api, list_id, second)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "disposal.four_eyes"
    assert _approve(api, list_id, api.token("archivist")).status_code == 200
