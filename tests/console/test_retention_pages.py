"""Console: holds placed and lifted, the referential imported after a preview, the DIP."""

from __future__ import annotations

import io
import re
import zipfile

from sqlalchemy import select

from sae.journal.models import Event
from sae.retention.models import Hold, Rule, UnitComputedRule
from tests.conftest import TEST_RULES_CSV, Api
from tests.console.helpers import csrf_of, signed_in, sip


def _deposit(api: Api) -> dict[str, object]:
    response = api.deposit(sip())
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def _unit(body: dict[str, object], sip_id: str) -> str:
    units = body["units"]
    assert isinstance(units, list)
    return str(next(u["id"] for u in units if u["sip_id"] == sip_id))


def _events(api: Api, type_: str) -> list[Event]:
    with api.runtime.sessions() as session:
        return list(session.scalars(select(Event).where(Event.type == type_)))


# --- holds -------------------------------------------------------------------------------------


def test_an_archivist_places_and_lifts_a_hold_from_the_unit_page(api: Api) -> None:
    body = _deposit(api)
    child = _unit(body, "AU-1")
    client = signed_in(api, "archivist")
    page = client.get(f"/console/unites/{child}").text
    assert "Geler cette unité" in page
    assert "Aucun gel en vigueur" in page
    placed = client.post(
        "/console/gels",
        data={
            "csrf": csrf_of(page),
            "unites": child,
            "motif": "Contentieux TA Montreuil 2027-0042",
            "retour": f"/console/unites/{child}",
        },
        follow_redirects=False,
    )
    assert placed.status_code == 303, placed.text
    assert placed.headers["location"] == f"/console/unites/{child}"
    page = client.get(f"/console/unites/{child}").text
    assert "Contentieux TA Montreuil 2027-0042" in page
    assert "Gelée" in page
    (event,) = _events(api, "hold.placed")
    assert event.payload["units"] == [child]
    assert event.payload["reason"] == "Contentieux TA Montreuil 2027-0042"
    with api.runtime.sessions() as session:
        (hold,) = session.scalars(select(Hold))
        hold_id = hold.id
    listing = client.get("/console/gels").text
    assert "Contentieux TA Montreuil 2027-0042" in listing
    assert "En vigueur" in listing
    lifted = client.post(
        f"/console/gels/{hold_id}/levee",
        data={"csrf": csrf_of(page), "retour": f"/console/unites/{child}"},
        follow_redirects=False,
    )
    assert lifted.status_code == 303
    assert len(_events(api, "hold.lifted")) == 1
    assert "Aucun gel en vigueur" in client.get(f"/console/unites/{child}").text
    assert "Aucun gel en vigueur" in client.get("/console/gels").text
    every = client.get("/console/gels?tous=1").text
    assert "Levé le" in every
    # Lifting again: a French refusal, nothing journaled.
    again = client.post(f"/console/gels/{hold_id}/levee", data={"csrf": csrf_of(page)})
    assert again.status_code == 409
    assert "Gel déjà levé" in again.text
    assert len(_events(api, "hold.lifted")) == 1


def test_a_hold_from_the_list_page_needs_a_reason_and_known_units(api: Api) -> None:
    body = _deposit(api)
    child = _unit(body, "AU-1")
    client = signed_in(api, "archivist")
    csrf = csrf_of(client.get("/console/gels").text)
    no_reason = client.post("/console/gels", data={"csrf": csrf, "unites": child, "motif": ""})
    assert no_reason.status_code == 400
    unknown = client.post(
        "/console/gels",
        data={"csrf": csrf, "unites": "00000000-0000-0000-0000-000000000000", "motif": "Contrôle"},
    )
    assert unknown.status_code == 404
    past = client.post(
        "/console/gels",
        data={"csrf": csrf, "unites": child, "motif": "Contrôle", "jusqu_au": "2000-01-01"},
    )
    assert past.status_code == 422
    forged = client.post("/console/gels", data={"csrf": "x", "unites": child, "motif": "Contrôle"})
    assert forged.status_code == 403
    assert _events(api, "hold.placed") == []
    ok = client.post(
        "/console/gels",
        data={"csrf": csrf, "unites": child, "motif": "Contrôle CRC", "jusqu_au": "2099-12-31"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert ok.headers["location"] == "/console/gels"
    assert "31/12/2099" in client.get("/console/gels").text


def test_an_auditor_reads_the_holds_but_cannot_place_or_lift(api: Api) -> None:
    body = _deposit(api)
    child = _unit(body, "AU-1")
    client = signed_in(api, "auditor")
    page = client.get("/console/gels")
    assert page.status_code == 200
    assert "Poser un gel" not in page.text
    assert "Geler cette unité" not in client.get(f"/console/unites/{child}").text
    refused = client.post(
        "/console/gels", data={"csrf": csrf_of(page.text), "unites": child, "motif": "Contrôle"}
    )
    assert refused.status_code == 403
    assert _events(api, "hold.placed") == []


# --- referential import ------------------------------------------------------------------------


NEW_RULES_CSV = TEST_RULES_CSV.replace(
    'APP-5Y,AppraisalRule,Dossiers 5 ans,"Durée d\'utilité administrative de 5 ans",5,YEAR',
    'APP-5Y,AppraisalRule,Dossiers 5 ans,"Durée d\'utilité administrative portée à 7 ans",7,YEAR',
).replace("APP-10Y,AppraisalRule,Dossiers 10 ans,,10,YEAR\n", "") + (
    "APP-30Y,AppraisalRule,Dossiers 30 ans,,30,YEAR\n"
)


def _upload(client: object, text: str, name: str = "referentiel.csv") -> object:
    page = client.get("/console/referentiel/import")  # type: ignore[attr-defined]
    assert page.status_code == 200
    return client.post(  # type: ignore[attr-defined]
        "/console/referentiel/apercu",
        data={"csrf": csrf_of(page.text), "format": ""},
        files={"fichier": (name, text.encode(), "text/csv")},
    )


def _stored(api: Api) -> tuple[dict[str, int | None], dict[str, object]]:
    with api.runtime.sessions() as session:
        rules = {r.id: r.duration for r in session.scalars(select(Rule))}
        ends = {
            f"{r.unit_id}/{r.category}": r.end_date
            for r in session.scalars(select(UnitComputedRule))
        }
    return rules, ends


def test_the_referential_import_shows_a_preview_then_applies(api: Api) -> None:
    body = _deposit(api)
    child = _unit(body, "AU-1")
    client = signed_in(api, "archivist")
    assert "Importer un référentiel" in client.get("/console/referentiel").text
    events_before = len(_events(api, "rules.imported"))
    before = _stored(api)

    preview = _upload(client, NEW_RULES_CSV)
    assert preview.status_code == 200, preview.text  # type: ignore[attr-defined]
    html = preview.text  # type: ignore[attr-defined]
    assert "Rien n'a encore été modifié" in html
    assert "1 règle ajoutée" in html
    assert "APP-30Y" in html
    assert "1 règle modifiée" in html
    assert "7 YEAR" in html
    assert "1 règle supprimée" in html
    assert "APP-10Y" in html
    # Both deposited units use APP-5Y (declared on the parent, inherited by the child).
    assert "2 unités d'archives dont les échéances changeraient" in html
    assert f"/console/unites/{child}" in html
    assert "01/01/2024" in html
    assert "01/01/2026" in html
    # Nothing written, nothing journaled by the preview.
    assert _stored(api) == before
    assert len(_events(api, "rules.imported")) == events_before

    contenu = re.search(r'name="contenu" value="([^"]*)"', html)
    assert contenu is not None
    import html as html_module

    version = re.search(r'name="version" value="([0-9a-f]{64})"', html)
    assert version is not None
    form = {
        "csrf": csrf_of(html),
        "contenu": html_module.unescape(contenu.group(1)),
        "type_contenu": "text/csv",
        "version": version.group(1),
    }
    # Without the preview's version, or with another: nothing applied.
    for stale in ("", "0" * 64):
        refused = client.post("/console/referentiel/appliquer", data={**form, "version": stale})
        assert refused.status_code == 409
        assert "Référentiel modifié entre-temps" in refused.text
    assert _stored(api) == before
    applied = client.post("/console/referentiel/appliquer", data=form)
    assert applied.status_code == 200, applied.text
    assert "Référentiel importé" in applied.text
    assert "2 unités recalculées" in applied.text
    rules, ends = _stored(api)
    assert rules["APP-5Y"] == 7
    assert "APP-30Y" in rules
    assert "APP-10Y" not in rules
    assert str(ends[f"{child}/AppraisalRule"]) == "2026-01-01"
    assert len(_events(api, "rules.imported")) == events_before + 1
    assert len(_events(api, "rules.end_dates_recomputed")) >= 1
    # Applying the same preview again: the referential changed since (it is this file now).
    again = client.post("/console/referentiel/appliquer", data=form)
    assert again.status_code == 409
    assert len(_events(api, "rules.imported")) == events_before + 1


def test_a_preview_names_why_the_import_would_be_refused(api: Api) -> None:
    _deposit(api)
    client = signed_in(api, "archivist")
    without_used = TEST_RULES_CSV.replace(
        'APP-5Y,AppraisalRule,Dossiers 5 ans,"Durée d\'utilité administrative de 5 ans",5,YEAR\n',
        "",
    )
    preview = _upload(client, without_used)
    html = preview.text  # type: ignore[attr-defined]
    assert preview.status_code == 200  # type: ignore[attr-defined]
    assert "Ce référentiel serait refusé" in html
    assert "APP-5Y : règle supprimée alors que des unités d&#39;archives la citent" in html
    assert "Appliquer" not in html
    bad = _upload(
        client,
        "RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement\n"
        "X,NoSuchType,x,,1,YEAR\n",
    )
    assert bad.status_code == 422  # type: ignore[attr-defined]
    assert "Le fichier n'a pas pu être lu" in bad.text  # type: ignore[attr-defined]
    assert "NoSuchType" in bad.text  # type: ignore[attr-defined]


def test_only_the_archivist_imports_the_referential(api: Api) -> None:
    client = signed_in(api, "auditor")
    assert client.get("/console/referentiel/import").status_code == 403
    assert "Importer un référentiel" not in client.get("/console/referentiel").text
    csrf = csrf_of(client.get("/console/jetons").text)
    refused = client.post(
        "/console/referentiel/appliquer",
        data={"csrf": csrf, "contenu": NEW_RULES_CSV, "type_contenu": "text/csv"},
    )
    assert refused.status_code == 403
    rules, _ = _stored(api)
    assert rules["APP-5Y"] == 5


# --- DIP ---------------------------------------------------------------------------------------


def test_the_dip_button_gives_the_zip_and_journals_it(api: Api) -> None:
    body = _deposit(api)
    parent = next(
        u["id"]
        for u in body["units"]
        if u["sip_id"] != "AU-1"  # type: ignore[attr-defined]
    )
    client = signed_in(api, "archivist")
    page = client.get(f"/console/unites/{parent}").text
    assert f'href="/console/unites/{parent}/dip"' in page
    answer = client.get(f"/console/unites/{parent}/dip")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as zf:
        names = zf.namelist()
    assert "manifest.xml" in names
    assert any(n.startswith("Content/") for n in names)
    (event,) = _events(api, "access.dip_exported")
    assert event.unit_id == parent
    missing = client.get("/console/unites/00000000-0000-0000-0000-000000000000/dip")
    assert missing.status_code == 404
    assert "Introuvable" in missing.text
