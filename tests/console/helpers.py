"""Helpers for console tests: sign in through the form, read CSRF tokens from pages."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from tests.conftest import Api
from tests.sipfactory import RuleSpec, build_zip, simple_sip

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = _CSRF.search(html)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


def login(client: Any, token: str) -> Any:
    """Sign in through the form, as a browser would; returns the answer to the POST."""
    client.cookies.clear()
    page = client.get("/console/connexion")
    assert page.status_code == 200
    return client.post(
        "/console/connexion",
        data={"token": token, "csrf": csrf_of(page.text), "suite": "/console/"},
        follow_redirects=False,
    )


def signed_in(api: Api, role: str = "admin", producers: list[str] | None = None) -> Any:
    """The api's client, signed in with a new token of ``role`` (admin: the admin token)."""
    token = api.admin if role == "admin" else api.token(role, producers)
    answer = login(api.client, token)
    assert answer.status_code == 303, answer.text
    return api.client


def sip(message_id: str = "MSG-CONSOLE-1", producer: str = "URBANISME",
        access_rule: str | None = None) -> bytes:
    """A small valid SIP (one unit with a child carrying one PDF), due for destruction."""
    rules = [RuleSpec("AppraisalRule", "APP-5Y", start=date(2019, 1, 1), final_action="Destroy")]
    if access_rule:
        rules.append(RuleSpec("AccessRule", access_rule, start=date.today()))
    return build_zip(simple_sip(message_id, producer=producer, rules=rules))


def deposit_form(client: Any, data: bytes, *, filename: str = "versement.zip",
                 csrf: str | None = None) -> Any:
    """Deposit through the console's form (multipart), without following the redirect."""
    if csrf is None:
        csrf = csrf_of(client.get("/console/versements").text)
    return client.post(
        "/console/versements",
        data={"csrf": csrf},
        files={"sip": (filename, data, "application/zip")},
        follow_redirects=False,
    )
