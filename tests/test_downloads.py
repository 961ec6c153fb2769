"""Downloads are named safely: RFC 6266 / RFC 8187, whatever characters a record's name has."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from sae.downloads import content_disposition, download_headers
from tests.conftest import Api
from tests.sipfactory import build_zip, simple_sip


def test_a_plain_ascii_name_is_given_as_it_is() -> None:
    assert content_disposition("ATR-01H.xml") == 'attachment; filename="ATR-01H.xml"'


@pytest.mark.parametrize(
    "name",
    [
        "arrêté n°1 (copie).pdf",
        'le "budget" 2024.pdf',
        "œuvres – séance du 3 mars.pdf",  # œ and the dash are not Latin-1
        "back\\slash.pdf",
        "a/b.pdf",
        "bordereau\r\nX-Injected: 1.pdf",
        "",
    ],
)
def test_any_name_gives_a_header_that_can_be_sent(name: str) -> None:
    value = content_disposition(name)
    value.encode("latin-1")  # what an HTTP header can carry; Starlette encodes it so
    assert "\r" not in value
    assert "\n" not in value
    fallback = value.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback
    assert all(0x20 <= ord(c) < 0x7F and c not in '"\\/' for c in fallback)
    if "filename*=" in value:
        exact = unquote(value.split("filename*=UTF-8''", 1)[1], encoding="utf-8")
        assert exact == name.replace("/", "_").replace("\\", "_").strip()


def test_every_download_says_nosniff_and_keeps_its_own_headers() -> None:
    headers = download_headers("x.pdf", {"Cache-Control": "no-store"})
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def test_an_object_whose_name_is_not_latin_1_downloads(api: Api) -> None:
    name = "œuvres – « budget » 2024.pdf"
    sip = simple_sip("MSG-NAME-1", uri=f"Content/{name}")
    response = api.deposit(build_zip(sip))
    assert response.status_code == 201, response.text
    object_id = response.json()["objects"][0]["id"]
    answer = api.client.get(f"/api/v1/objects/{object_id}/content", headers=api.auth())
    assert answer.status_code == 200
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="')
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == name
