"""Console routes through the TestClient: sign-in, CSRF, roles, pages, downloads, errors."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from sae.journal.models import Event
from tests.conftest import Api
from tests.console.helpers import csrf_of, deposit_form, login, signed_in, sip
from tests.sipfactory import FileSpec, build_zip, simple_sip


def _deposit(api: Api, data: bytes | None = None) -> dict[str, object]:
    response = api.deposit(data or sip())
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def _events(api: Api, type_: str) -> list[Event]:
    with api.runtime.sessions() as session:
        return list(session.scalars(select(Event).where(Event.type == type_)))


# --- sign-in, cookies, CSRF --------------------------------------------------------------------


def test_root_redirects_to_the_console_and_the_console_to_sign_in(api: Api) -> None:
    root = api.client.get("/", follow_redirects=False)
    assert root.status_code in (302, 307)
    assert root.headers["location"] == "/console/"
    page = api.client.get("/console/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/console/connexion")
    form = api.client.get(page.headers["location"])
    assert form.status_code == 200
    assert '<html lang="fr">' in form.text
    assert '<label for="token">' in form.text


def test_sign_in_sets_an_httponly_strict_cookie(api: Api) -> None:
    answer = login(api.client, api.admin)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("sae_console="))
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "path=/console" in lowered
    assert "secure" not in lowered  # plain http here; see the https test
    page = api.client.get("/console/")
    assert page.status_code == 200
    assert "Tableau de bord" in page.text
    assert "Administrateur" in page.text


def test_cookie_is_secure_over_https(api: Api) -> None:
    api.client.base_url = "https://testserver"
    page = api.client.get("/console/connexion")
    login_cookie = page.headers["set-cookie"].lower()
    assert "secure" in login_cookie
    assert "httponly" in login_cookie
    answer = api.client.post(
        "/console/connexion",
        data={"token": api.admin, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "sae_console=" in c)
    assert "secure" in cookie.lower()
    assert api.client.get("/console/").status_code == 200


def test_a_wrong_token_is_refused_in_french(api: Api) -> None:
    answer = login(api.client, "sae_not-a-real-token")
    assert answer.status_code == 401
    assert "Jeton inconnu" in answer.text
    assert "sae_console=" not in answer.headers.get("set-cookie", "").split(";")[0]
    assert api.client.get("/console/", follow_redirects=False).status_code == 303


def test_sign_in_without_the_form_token_is_refused(api: Api) -> None:
    api.client.get("/console/connexion")
    answer = api.client.post(
        "/console/connexion",
        data={"token": api.admin, "csrf": "forged"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "Formulaire expiré" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


def test_sign_in_only_returns_to_console_pages(api: Api) -> None:
    page = api.client.get("/console/connexion?suite=https://evil.example/")
    assert 'value="/console/"' in page.text
    answer = api.client.post(
        "/console/connexion",
        data={"token": api.admin, "csrf": csrf_of(page.text), "suite": "//evil.example/x"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/console/"


def test_logout_needs_csrf_and_clears_the_cookie(api: Api) -> None:
    client = signed_in(api)
    refused = client.post("/console/deconnexion", data={"csrf": "x"}, follow_redirects=False)
    assert refused.status_code == 403
    assert client.get("/console/").status_code == 200
    token = csrf_of(client.get("/console/").text)
    out = client.post("/console/deconnexion", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/console/connexion"
    cleared = next(c for c in out.headers.get_list("set-cookie") if "sae_console=" in c)
    assert "max-age=0" in cleared.lower() or "expires=" in cleared.lower()
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_a_revoked_token_loses_its_session(api: Api) -> None:
    from sae.auth.service import authenticate, revoke_token
    from sae.db import transaction

    token = api.token("archivist")
    assert login(api.client, token).status_code == 303
    assert api.client.get("/console/").status_code == 200
    with transaction(api.runtime.sessions) as session:
        revoke_token(session, authenticate(session, token).token_id)
    assert api.client.get("/console/", follow_redirects=False).status_code == 303


def test_pages_carry_security_headers(api: Api) -> None:
    client = signed_in(api)
    page = client.get("/console/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    css = client.get("/console/static/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "http" not in css.text.replace("https://", "")  # nothing fetched from elsewhere


# --- dashboard -----------------------------------------------------------------------------------


def test_dashboard_shows_counts_offers_journal_and_transfers(api: Api) -> None:
    _deposit(api)
    client = signed_in(api, "archivist")
    page = client.get("/console/").text
    assert "Unités d'archives" in page
    assert "Objets numériques" in page
    assert "Volume" in page
    assert "local" in page
    assert "France" in page
    assert "Répond" in page
    assert "Dernière tête signée" in page
    assert "URBANISME" in page
    assert "Accepté" in page
    # A French date (dd/mm/yyyy), never ISO, for the transfer's reception.
    import re

    assert re.search(r"\d{2}/\d{2}/\d{4} à \d{2}:\d{2}", page)


def test_a_reader_sees_no_archive_wide_figures(api: Api) -> None:
    _deposit(api)
    client = signed_in(api, "reader")
    page = client.get("/console/").text
    assert "Espaces de stockage" not in page
    assert "Versements" not in page  # not in the menu: the API refuses transfers to readers
    assert client.get("/console/versements").status_code == 403
    assert client.get("/console/journal").status_code == 403
    assert client.get("/console/audits").status_code == 403


# --- transfers -----------------------------------------------------------------------------------


def test_deposit_through_the_form(api: Api) -> None:
    client = signed_in(api, "depositor", ["URBANISME"])
    answer = deposit_form(client, sip("MSG-FORM-1"))
    assert answer.status_code == 303
    page = client.get(answer.headers["location"])
    assert page.status_code == 200
    assert "Accepté" in page.text
    assert "Versement accepté" in page.text
    assert "Arrêtés de voirie 2024" in page.text
    # The page names the transfer's leaf, and the head covering it once the sealer has run.
    assert "feuille n°" in page.text
    covered = "couverte par la tête signée" in page.text
    assert covered or "en attente de la prochaine tête signée" in page.text
    atr = client.get(answer.headers["location"] + "/accuse")
    assert atr.status_code == 200
    assert b"ArchiveTransferReply" in atr.content
    listing = client.get("/console/versements").text
    assert "MSG-FORM-1" in listing


def test_a_refused_deposit_lists_every_fault_in_french(api: Api) -> None:
    spec = simple_sip("MSG-BAD-1")
    spec.files = [FileSpec(uri=spec.files[0].uri, data=b"%PDF-1.4 x", digest="0" * 128)]
    client = signed_in(api, "depositor", ["URBANISME"])
    answer = deposit_form(client, build_zip(spec))
    assert answer.status_code == 303
    page = client.get(answer.headers["location"]).text
    assert "Refusé" in page
    assert "Ce versement a été refusé" in page
    assert "ne correspond pas à celle du bordereau" in page
    assert "sip.digest_mismatch" in page


def test_a_file_that_is_not_a_zip_is_refused_with_a_reason(api: Api) -> None:
    client = signed_in(api, "depositor", ["URBANISME"])
    answer = deposit_form(client, b"not a zip at all", filename="notes.txt")
    assert answer.status_code == 303
    page = client.get(answer.headers["location"]).text
    assert "Refusé" in page
    assert "archive ZIP" in page


def test_deposit_without_csrf_is_refused_and_stores_nothing(api: Api) -> None:
    client = signed_in(api, "depositor", ["URBANISME"])
    answer = deposit_form(client, sip("MSG-CSRF"), csrf="forged")
    assert answer.status_code == 403
    assert "Formulaire expiré" in answer.text
    assert _events(api, "ingest.accepted") == []
    assert _events(api, "ingest.rejected") == []


def test_deposit_is_refused_to_roles_the_api_refuses(api: Api) -> None:
    for role in ("archivist", "auditor"):
        client = signed_in(api, role)
        page = client.get("/console/versements") if role == "archivist" else None
        if page is not None:
            assert page.status_code == 200
            assert 'name="sip"' not in page.text  # no deposit form for the archivist
        token = csrf_of(client.get("/console/").text)
        answer = deposit_form(client, sip(f"MSG-{role}"), csrf=token)
        assert answer.status_code == 403, role
        assert "Accès refusé" in answer.text
    assert _events(api, "ingest.accepted") == []


def test_a_depositor_may_not_deposit_for_another_service(api: Api) -> None:
    client = signed_in(api, "depositor", ["ETAT-CIVIL"])
    answer = deposit_form(client, sip("MSG-OTHER", producer="URBANISME"))
    assert answer.status_code == 403
    assert "text/html" in answer.headers["content-type"]


def test_a_depositor_sees_only_its_own_transfers(api: Api) -> None:
    mine = _deposit(api, sip("MSG-MINE", producer="URBANISME"))
    other = _deposit(api, sip("MSG-OTHER", producer="FINANCES"))
    client = signed_in(api, "depositor", ["URBANISME"])
    listing = client.get("/console/versements").text
    assert "MSG-MINE" in listing
    assert "MSG-OTHER" not in listing
    assert client.get(f"/console/versements/{mine['transfer_id']}").status_code == 200
    hidden = client.get(f"/console/versements/{other['transfer_id']}")
    assert hidden.status_code == 404
    assert "Introuvable" in hidden.text
    assert client.get(f"/console/versements/{other['transfer_id']}/accuse").status_code == 404


def test_transfers_filter_by_status(api: Api) -> None:
    _deposit(api, sip("MSG-OK-1"))
    api.deposit(b"garbage")
    client = signed_in(api, "archivist")
    refused = client.get("/console/versements?statut=KO").text
    assert "MSG-OK-1" not in refused
    assert "Refusé" in refused
    accepted = client.get("/console/versements?statut=OK").text
    assert "MSG-OK-1" in accepted


# --- search, unit, download ----------------------------------------------------------------------


def _child_unit_id(body: dict[str, object]) -> str:
    units = body["units"]
    assert isinstance(units, list)
    return next(u["id"] for u in units if u["sip_id"] == "AU-1")


def test_search_finds_the_unit_and_its_page_shows_rules_and_objects(api: Api) -> None:
    body = _deposit(api)
    client = signed_in(api, "archivist")
    results = client.get("/console/recherche", params={"q": "voirie"}).text
    assert "Arrêtés de voirie 2024" in results
    assert "rue de la Paix" in client.get("/console/recherche", params={"q": "paix"}).text
    none = client.get("/console/recherche", params={"q": "introuvable-xyz"}).text
    assert "Aucune unité d'archives ne correspond" in none
    by_producer = client.get("/console/recherche", params={"producteur": "FINANCES"}).text
    assert "voirie" not in by_producer

    unit_id = _child_unit_id(body)
    page = client.get(f"/console/unites/{unit_id}").text
    assert "Arrêté n°1 — rue de la Paix" in page
    assert "APP-5Y" in page
    assert "Héritée de" in page  # the rule is declared on the parent
    assert "01/01/2024" in page  # DUA end: 2019-01-01 + 5 years, in French
    assert "Destruction" in page  # final action
    assert "arrêté n°1 (copie).pdf" in page
    assert "Télécharger" in page
    assert "Unités contenues" not in page
    assert "Unité parente" in page


def test_search_counts_by_facet_and_a_facet_narrows_it(api: Api) -> None:
    import html
    import re

    _deposit(api)
    client = signed_in(api, "archivist")
    results = client.get("/console/recherche", params={"q": "ARRETE voirie"}).text
    assert "Affiner la recherche" in results
    assert "Service producteur" in results
    assert "En conservation" in results  # the status facet, in French
    producer = re.search(r'<a href="([^"]+)">URBANISME</a> <span class="count">\((\d+)\)', results)
    assert producer is not None
    narrowed = client.get(html.unescape(producer.group(1))).text
    assert "Arrêtés de voirie 2024" in narrowed
    assert 'name="producteur"' in narrowed
    assert 'value="URBANISME" selected' in narrowed


def test_search_says_more_than_when_it_ranks_only_part(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae.catalog import service

    _deposit(api)
    client = signed_in(api, "archivist")
    monkeypatch.setattr(service, "RANKED_AT_MOST", 1)
    # Both units hold their producer's name: two matches, one ranked (and one more).
    results = client.get("/console/recherche", params={"q": "urbanisme"}).text
    assert "Plus de 1 unités d'archives (ajoutez un mot ou un filtre pour préciser)" in results
    assert '<span class="count">(au moins 1)</span>' in results
    monkeypatch.undo()
    exact = client.get("/console/recherche", params={"q": "urbanisme"}).text
    assert "2 unités d'archives" in exact
    assert "Plus de" not in exact
    assert "au moins" not in exact


def test_download_goes_through_access_checks_and_is_journaled(api: Api) -> None:
    body = _deposit(api)
    objects = body["objects"]
    assert isinstance(objects, list)
    object_id = objects[0]["id"]
    client = signed_in(api, "archivist")
    before = len(_events(api, "access.object_read"))
    answer = client.get(f"/console/objets/{object_id}/contenu")
    assert answer.status_code == 200
    assert answer.content.startswith(b"%PDF-1.4")
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.headers["repr-digest"].startswith("sha-512=:")
    assert len(_events(api, "access.object_read")) == before + 1


def test_a_depositor_of_another_service_sees_nothing(api: Api) -> None:
    body = _deposit(api)
    objects = body["objects"]
    assert isinstance(objects, list)
    client = signed_in(api, "depositor", ["FINANCES"])
    results = client.get("/console/recherche", params={"q": "voirie"}).text
    assert "Arrêtés de voirie" not in results
    unit = client.get(f"/console/unites/{_child_unit_id(body)}")
    assert unit.status_code == 404
    content = client.get(f"/console/objets/{objects[0]['id']}/contenu")
    assert content.status_code == 404
    assert _events(api, "access.object_read") == []


def test_a_reader_cannot_download_what_is_not_yet_communicable(api: Api) -> None:
    body = _deposit(api, sip("MSG-PRIVATE", access_rule="ACC-50Y"))
    objects = body["objects"]
    assert isinstance(objects, list)
    client = signed_in(api, "reader")
    # Not yet communicable: to a reader, neither the unit nor its object exists (issue 19).
    child = _child_unit_id(body)
    page = client.get(f"/console/unites/{child}")
    missing = client.get(f"/console/unites/{'0' * len(child)}")
    assert page.status_code == missing.status_code == 404
    assert page.text.replace(child, "ID") == missing.text.replace("0" * len(child), "ID")
    content = client.get(f"/console/objets/{objects[0]['id']}/contenu")
    assert content.status_code == 404
    assert "Introuvable" in content.text
    assert _events(api, "access.object_read") == []
    searched = client.get("/console/recherche", params={"q": ""}).text
    assert child not in searched


def test_unknown_unit_and_object_answer_french_404(api: Api) -> None:
    client = signed_in(api)
    for url in ("/console/unites/nope", "/console/objets/nope/contenu", "/console/nulle-part"):
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert "Introuvable" in answer.text
        assert answer.headers["content-type"].startswith("text/html")


def test_bad_parameters_answer_a_french_page_not_json(api: Api) -> None:
    client = signed_in(api)
    answer = client.get("/console/recherche", params={"du": "hier"})
    assert answer.status_code == 400
    assert "Demande invalide" in answer.text
    answer = client.get("/console/versements", params={"page": "zero"})
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")


# --- referential, journal, audits ----------------------------------------------------------------


def test_rules_page_lists_the_referential(api: Api) -> None:
    client = signed_in(api, "depositor", ["URBANISME"])
    page = client.get("/console/referentiel").text
    assert "APP-5Y" in page
    assert "5 ans" in page
    assert "Communicabilité" in page
    assert "ACC-50Y" in page


def test_journal_shows_the_signed_head_and_events_with_leaf_indexes(api: Api) -> None:
    _deposit(api)
    client = signed_in(api, "auditor")
    page = client.get("/console/journal").text
    assert "Dernière tête signée" in page
    assert "Versement accepté" in page
    assert "ingest.accepted" in page
    filtered = client.get("/console/journal", params={"type": "access.object_read"}).text
    assert "Aucun événement ne correspond" in filtered
    verify = client.get("/console/journal/verifier").text
    assert "sha512sum" in verify
    assert "openssl ts -verify" in verify


def test_journal_page_seals_every_leaf_and_shows_that_head(api: Api) -> None:
    from sae.journal import service as journal

    _deposit(api)
    client = signed_in(api, "auditor")
    page = client.get("/console/journal").text
    with api.runtime.sessions() as session:
        head = journal.latest_head(session)
        size = journal.tree_size(session)
    assert head is not None
    assert head.tree_size == size
    assert head.root_hash.hex() in page
    checkpoint = client.get(f"/console/journal/tetes/{head.tree_size}/tree-head.json")
    assert checkpoint.status_code == 200
    assert checkpoint.content == head.checkpoint
    assert client.get(f"/console/journal/tetes/{head.tree_size}/other").status_code == 404


def test_proof_bundle_download_verifies(api: Api) -> None:
    from sae.journal.bundle import verify_bundle

    body = _deposit(api)
    objects = body["objects"]
    assert isinstance(objects, list)
    object_id = objects[0]["id"]
    client = signed_in(api, "auditor")
    unit_page = client.get(f"/console/unites/{_child_unit_id(body)}").text
    assert f"/console/objets/{object_id}/preuve" in unit_page
    answer = client.get(f"/console/objets/{object_id}/preuve")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    content = client.get(f"/console/objets/{object_id}/contenu").content
    report = verify_bundle(answer.content, content=content)
    assert report.valid, report.failure


def test_proof_bundles_are_for_auditors_and_archivists(api: Api) -> None:
    body = _deposit(api)
    objects = body["objects"]
    assert isinstance(objects, list)
    for role, producers in (("reader", None), ("depositor", ["URBANISME"])):
        client = signed_in(api, role, producers)
        page = client.get(f"/console/unites/{_child_unit_id(body)}").text
        assert "/preuve" not in page
        assert client.get(f"/console/objets/{objects[0]['id']}/preuve").status_code == 403


def test_launch_an_audit_from_the_console(api: Api) -> None:
    _deposit(api)
    client = signed_in(api, "auditor")
    page = client.get("/console/audits")
    assert "Lancer l'audit" in page.text
    refused = client.post("/console/audits", data={"csrf": "nope"}, follow_redirects=False)
    assert refused.status_code == 403
    answer = client.post(
        "/console/audits",
        data={"csrf": csrf_of(page.text), "taux": "100", "reparer": "1"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    audit = client.get(answer.headers["location"]).text
    assert "Terminé" in audit
    assert "Toutes les copies vérifiées sont intègres" in audit
    assert "Terminé" in client.get("/console/").text


def test_an_invalid_audit_request_is_explained(api: Api) -> None:
    client = signed_in(api, "archivist")
    token = csrf_of(client.get("/console/audits").text)
    answer = client.post(
        "/console/audits", data={"csrf": token, "offres": "nowhere"}, follow_redirects=False
    )
    assert answer.status_code == 422
    assert "Audit impossible" in answer.text


def test_journal_filters_by_unit_and_the_unit_links_there(api: Api) -> None:
    import re

    body = _deposit(api)
    unit_id = _child_unit_id(body)
    client = signed_in(api, "archivist")
    page = client.get(f"/console/unites/{unit_id}").text
    assert f"/console/journal?unite={unit_id}" in page
    # The inherited rule links to the unit that declares it, and that page exists.
    parent = re.search(r'Héritée de <a href="(/console/unites/[^"]+)"', page)
    assert parent is not None
    assert "Arrêtés de voirie 2024" in client.get(parent.group(1)).text
    events = client.get("/console/journal", params={"unite": unit_id}).text
    assert "<code>ingest.object_stored</code>" in events
    assert "<code>auth.token_created</code>" not in events


def test_an_unexpected_error_is_a_french_page_without_internals(api: Api, monkeypatch: Any) -> None:
    from sae.console import queries

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internal detail")

    client = signed_in(api, "archivist")
    monkeypatch.setattr(queries, "totals", broken)
    answer = client.get("/console/")
    assert answer.status_code == 500
    assert "Erreur interne" in answer.text
    assert "secret internal detail" not in answer.text
    assert "Traceback" not in answer.text


def test_an_oversized_sip_is_refused_and_nothing_is_left(api: Api) -> None:
    client = signed_in(api, "depositor", ["URBANISME"])
    token = csrf_of(client.get("/console/versements").text)
    api.runtime.settings = api.runtime.settings.model_copy(update={"max_sip_bytes": 100})
    small_limit = deposit_form(client, sip("MSG-BIG-1"), csrf=token)
    assert small_limit.status_code == 413
    assert "Fichier trop volumineux" in small_limit.text
    huge = deposit_form(client, b"\0" * (2 * 1024 * 1024), csrf=token)
    assert huge.status_code == 413
    assert list((api.settings.data_dir / "tmp").iterdir()) == []
    assert _events(api, "ingest.accepted") == []


def test_search_and_journal_pages_follow_on(api: Api, monkeypatch: Any) -> None:
    import html
    import re

    from sae.console import routes

    _deposit(api, sip("MSG-PAGE-1"))
    _deposit(api, sip("MSG-PAGE-2"))
    monkeypatch.setattr(routes, "PAGE", 1)
    client = signed_in(api, "archivist")
    first = client.get("/console/recherche", params={"q": "voirie"}).text
    more = re.search(r'<a href="([^"]+)">Résultats suivants', first)
    assert more is not None
    second = client.get(html.unescape(more.group(1))).text
    ids = [re.findall(r'href="/console/unites/([^"]+)"', p) for p in (first, second)]
    assert len(ids[0]) == 1
    assert len(ids[1]) == 1
    assert ids[0] != ids[1]

    journal = client.get("/console/journal", params={"type": "ingest"}).text
    older = re.search(r'<a href="([^"]+)">Événements plus anciens', journal)
    assert older is not None
    assert "type=ingest" in older.group(1)
    assert client.get(html.unescape(older.group(1))).status_code == 200


def test_an_archivist_withdraws_a_transfer_from_its_page(api: Api) -> None:
    """Within the quarantine the transfer's page offers the withdrawal, with a reason; after
    it, the page says so, the copies are gone and the button is no longer offered."""
    reply = api.deposit(sip("MSG-CONSOLE-OOPS"))
    assert reply.status_code == 201, reply.text
    transfer_id = reply.json()["transfer_id"]
    object_id = reply.json()["objects"][0]["id"]
    url = f"/console/versements/{transfer_id}"

    depositor = signed_in(api, "depositor", ["URBANISME"])
    assert "Retirer ce versement" not in depositor.get(url).text  # archivists only

    client = signed_in(api, "archivist")
    page = client.get(url)
    assert "Retirer ce versement" in page.text
    assert "fin de la quarantaine" in page.text
    forged = client.post(
        f"{url}/retrait", data={"csrf": "nope", "motif": "erreur"}, follow_redirects=False
    )
    assert forged.status_code == 403
    no_reason = client.post(
        f"{url}/retrait", data={"csrf": csrf_of(page.text), "motif": ""}, follow_redirects=False
    )
    assert no_reason.status_code == 400
    answer = client.post(
        f"{url}/retrait",
        data={"csrf": csrf_of(page.text), "motif": "Versé dans le mauvais fonds"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    after = client.get(answer.headers["location"]).text
    assert "Ce versement a été retiré" in after
    assert "Retirer ce versement" not in after
    gone = client.get(f"/console/objets/{object_id}/contenu")
    assert gone.status_code == 410
    assert "retiré" in gone.text
    again = client.post(
        f"{url}/retrait",
        data={"csrf": csrf_of(page.text), "motif": "encore"},
        follow_redirects=False,
    )
    assert again.status_code == 409
    assert "Retrait impossible" in again.text
