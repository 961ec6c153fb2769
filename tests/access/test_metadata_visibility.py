"""A unit not yet communicable (Code du patrimoine L213-2) cannot be learnt of by a reader:
not by its id, a search, a count, a facet, a DIP, its parent's list of children, the journal,
or an error message (issue 19, item 1). One test per path; each fails if the unit leaks.

The closed unit is titled « Dossier d'aide sociale de M. Secret » (the title is the protected
information), under a 50-year access rule from 2020; its parent is communicable.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date
from typing import Any

import pytest

from tests.conftest import Api
from tests.sipfactory import FileSpec, RuleSpec, UnitSpec, build_zip, simple_sip

SECRET = "aide sociale"
CLOSED_TITLE = "Dossier d'aide sociale de M. Secret"


def _deposit(api: Api) -> dict[str, Any]:
    """A communicable dossier (AU-root) holding a closed file (AU-2, its own record type and
    years) and an opened one (AU-3: 50 years from 1960, communicable since 2010)."""
    spec = simple_sip("MSG-VISIBILITY")
    spec.files.append(FileSpec(uri="Content/aide.pdf", data=b"%PDF-1.4 aide sociale"))
    spec.units[0].children.append(
        UnitSpec(
            id="AU-2",
            title=CLOSED_TITLE,
            description="Demande d'aide sociale, situation familiale",
            files=[1],
            start_date="1990-03-01",
            rules=[
                RuleSpec("AccessRule", "ACC-50Y", date(2020, 1, 1)),
                RuleSpec("AppraisalRule", "APP-10Y", date(2020, 1, 1), final_action="Keep"),
            ],
        )
    )
    spec.units[0].children.append(
        UnitSpec(
            id="AU-3",
            title="Dossier d'aide sociale ancien",
            rules=[RuleSpec("AccessRule", "ACC-50Y", date(1960, 1, 1))],
        )
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    return {"units": {u["sip_id"]: u["id"] for u in response.json()["units"]}}


@pytest.fixture
def dossier(api: Api) -> dict[str, Any]:
    return _deposit(api)


def _closed_object(api: Api, unit_id: str) -> str:
    unit = api.client.get(f"/api/v1/units/{unit_id}", headers=api.auth()).json()
    assert len(unit["objects"]) == 1
    return str(unit["objects"][0]["id"])


def _same_404(missing: Any, hidden: Any, missing_id: str, hidden_id: str) -> None:
    """The answer about a hidden thing is that about a missing one, byte for byte but the id."""
    assert hidden.status_code == missing.status_code == 404
    assert hidden.headers["content-type"] == missing.headers["content-type"]
    assert hidden.text.replace(hidden_id, "ID") == missing.text.replace(missing_id, "ID")
    assert SECRET not in hidden.text


def test_by_id(api: Api, dossier: dict[str, Any]) -> None:
    closed = dossier["units"]["AU-2"]
    reader = api.token("reader")
    assert api.client.get(f"/api/v1/units/{closed}", headers=api.auth()).status_code == 200
    missing_id = "0" * len(closed)
    _same_404(
        api.client.get(f"/api/v1/units/{missing_id}", headers=api.auth(reader)),
        api.client.get(f"/api/v1/units/{closed}", headers=api.auth(reader)),
        missing_id,
        closed,
    )
    # The unit that became communicable in 2010 is seen whole.
    opened = api.client.get(f"/api/v1/units/{dossier['units']['AU-3']}", headers=api.auth(reader))
    assert opened.status_code == 200
    assert opened.json()["communicable"] is True
    # Its producer's depositor sees it; another producer's does not.
    own = api.token("depositor", ["URBANISME"])
    other = api.token("depositor", ["FINANCES"])
    assert api.client.get(f"/api/v1/units/{closed}", headers=api.auth(own)).status_code == 200
    assert api.client.get(f"/api/v1/units/{closed}", headers=api.auth(other)).status_code == 404


def test_search(api: Api, dossier: dict[str, Any]) -> None:
    closed = dossier["units"]["AU-2"]
    reader = api.token("reader")
    for params in ({"q": SECRET}, {"q": "Secret"}, {"title": "secret"}, {}, {"limit": 1}):
        seen = []
        page = api.client.get("/api/v1/units", params=params, headers=api.auth(reader)).json()
        seen += [u["id"] for u in page["items"]]
        while page["next_cursor"]:
            page = api.client.get(
                "/api/v1/units",
                params={**params, "cursor": page["next_cursor"]},
                headers=api.auth(reader),
            ).json()
            seen += [u["id"] for u in page["items"]]
        assert closed not in seen, params
        everything = api.client.get("/api/v1/units", params=params, headers=api.auth()).json()
        if "limit" not in params:
            assert closed in [u["id"] for u in everything["items"]], params
    found = api.client.get("/api/v1/units", params={"q": SECRET}, headers=api.auth(reader))
    assert [u["sip_id"] for u in found.json()["items"]] == ["AU-3"]


def test_count(api: Api, dossier: dict[str, Any]) -> None:
    reader = api.token("reader")
    for params in ({"facets": "status"}, {"q": SECRET, "facets": "status"}):
        as_reader = api.client.get("/api/v1/units", params=params, headers=api.auth(reader))
        as_archivist = api.client.get("/api/v1/units", params=params, headers=api.auth())
        assert as_reader.json()["total"] == as_archivist.json()["total"] - 1, params
        assert (
            sum(v["count"] for v in as_reader.json()["facets"]["status"])
            == (as_reader.json()["total"])
        )


def test_facets(api: Api, dossier: dict[str, Any]) -> None:
    reader = api.token("reader")
    params = {"facets": "record_type,year,producer"}
    archivist = api.client.get("/api/v1/units", params=params, headers=api.auth()).json()
    assert "APP-10Y" in [v["value"] for v in archivist["facets"]["record_type"]]
    assert "1990" in [v["value"] for v in archivist["facets"]["year"]]
    seen = api.client.get("/api/v1/units", params=params, headers=api.auth(reader)).json()
    assert "APP-10Y" not in [v["value"] for v in seen["facets"]["record_type"]]
    assert "1990" not in [v["value"] for v in seen["facets"]["year"]]
    assert sum(v["count"] for v in seen["facets"]["producer"]) == seen["total"]
    # Narrowing to the closed unit's record type finds nothing at all.
    narrowed = api.client.get(
        "/api/v1/units",
        params={"record_type": "APP-10Y", "facets": "status"},
        headers=api.auth(reader),
    ).json()
    assert narrowed["items"] == []
    assert narrowed["total"] == 0


def test_dip(api: Api, dossier: dict[str, Any]) -> None:
    root, closed = dossier["units"]["AU-root"], dossier["units"]["AU-2"]
    closed_object = _closed_object(api, closed)
    reader = api.token("reader")
    response = api.client.get(f"/api/v1/units/{root}/dip", headers=api.auth(reader))
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        manifest = zf.read("manifest.xml").decode()
        names = zf.namelist()
    assert closed not in manifest
    assert "Secret" not in manifest
    assert closed_object not in manifest
    assert not any(closed_object in name for name in names)
    full = api.client.get(f"/api/v1/units/{root}/dip", headers=api.auth())
    with zipfile.ZipFile(io.BytesIO(full.content)) as zf:
        assert CLOSED_TITLE in zf.read("manifest.xml").decode()
    # The closed unit's own DIP: as missing.
    missing_id = "0" * len(closed)
    _same_404(
        api.client.get(f"/api/v1/units/{missing_id}/dip", headers=api.auth(reader)),
        api.client.get(f"/api/v1/units/{closed}/dip", headers=api.auth(reader)),
        missing_id,
        closed,
    )


def test_children_list(api: Api, dossier: dict[str, Any]) -> None:
    root, closed = dossier["units"]["AU-root"], dossier["units"]["AU-2"]
    reader = api.token("reader")
    archivist = api.client.get(f"/api/v1/units/{root}", headers=api.auth()).json()
    assert closed in archivist["children"]
    seen = api.client.get(f"/api/v1/units/{root}", headers=api.auth(reader)).json()
    assert closed not in seen["children"]
    assert dossier["units"]["AU-3"] in seen["children"]
    # The closed unit's own parent list is no way in either (its page is a 404, see test_by_id),
    # and the opened child does not name its closed sibling.
    opened = api.client.get(
        f"/api/v1/units/{dossier['units']['AU-3']}", headers=api.auth(reader)
    ).json()
    assert closed not in str(opened)


def test_journal(api: Api, dossier: dict[str, Any]) -> None:
    closed = dossier["units"]["AU-2"]
    missing_id = "0" * len(closed)
    for token in (api.token("reader"), api.token("depositor", ["FINANCES"])):
        hidden = api.client.get(
            "/api/v1/journal/events", params={"unit_id": closed}, headers=api.auth(token)
        )
        missing = api.client.get(
            "/api/v1/journal/events", params={"unit_id": missing_id}, headers=api.auth(token)
        )
        assert hidden.status_code == missing.status_code
        assert hidden.status_code in (403, 404)
        assert hidden.text == missing.text
        assert SECRET not in hidden.text
    events = api.client.get(
        "/api/v1/journal/events", params={"unit_id": closed}, headers=api.auth()
    ).json()["events"]
    assert events  # the archivist sees them


def test_error_messages(api: Api, dossier: dict[str, Any]) -> None:
    """The closed unit's object, by its description and its bytes: as a missing object."""
    closed_object = _closed_object(api, dossier["units"]["AU-2"])
    missing_id = "0" * len(closed_object)
    reader = api.token("reader")
    for path in ("/api/v1/objects/{}", "/api/v1/objects/{}/content"):
        _same_404(
            api.client.get(path.format(missing_id), headers=api.auth(reader)),
            api.client.get(path.format(closed_object), headers=api.auth(reader)),
            missing_id,
            closed_object,
        )
    assert (
        api.client.get(f"/api/v1/objects/{closed_object}/content", headers=api.auth()).status_code
        == 200
    )


def test_finding_aid_fields(
    api: Api, dossier: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAE_FINDING_AID_FIELDS=identifier,dates: the reader sees the closed unit with only its
    identifier and dates — never its title — and cannot find it by words."""
    settings = api.settings.model_copy(update={"finding_aid_fields": ["dates", "identifier"]})
    monkeypatch.setattr(api.runtime, "settings", settings)
    closed = dossier["units"]["AU-2"]
    reader = api.token("reader")
    unit = api.client.get(f"/api/v1/units/{closed}", headers=api.auth(reader))
    assert unit.status_code == 200, unit.text
    body = unit.json()
    assert body["finding_aid_only"] is True
    assert body["sip_id"] == "AU-2"
    assert body["start_date"] == "1990-03-01"
    assert body["title"] is None
    assert body["description"] is None
    assert body["producer"] is None
    assert body["objects"] == []
    assert body["content_xml"] is None
    assert body["rules"] == {}
    assert body["access_end"] == "2070-01-01"
    assert "aide" not in unit.text.lower()
    assert "Secret" not in unit.text
    listed = api.client.get(
        "/api/v1/units", params={"facets": "producer,year"}, headers=api.auth(reader)
    ).json()
    row = next(u for u in listed["items"] if u["id"] == closed)
    assert row["title"] is None
    assert row["finding_aid_only"] is True
    assert "1990" in [v["value"] for v in listed["facets"]["year"]]
    assert sum(v["count"] for v in listed["facets"]["producer"]) == listed["total"] - 1
    by_words = api.client.get("/api/v1/units", params={"q": "Secret"}, headers=api.auth(reader))
    assert by_words.json()["items"] == []
    # Its object stays out of reach.
    closed_object = _closed_object(api, closed)
    assert (
        api.client.get(
            f"/api/v1/objects/{closed_object}/content", headers=api.auth(reader)
        ).status_code
        == 404
    )


def test_finding_aid_setting_is_checked() -> None:
    from pydantic import ValidationError

    from sae.config import Settings

    assert Settings(finding_aid_fields="dates, identifier").finding_aid_fields == [
        "dates",
        "identifier",
    ]
    with pytest.raises(ValidationError, match="unknown field 'title'"):
        Settings(finding_aid_fields="identifier,title")
