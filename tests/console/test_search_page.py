"""Console search over the full-text index: accents, word order, prefixes, phrases, and the
facets that narrow a search and can be removed again."""

from __future__ import annotations

import html
import re

from tests.conftest import Api
from tests.console.helpers import signed_in, sip
from tests.sipfactory import build_zip, simple_sip


def _titles(page: str) -> list[str]:
    return re.findall(r'<td><a href="/console/unites/[^"]+">([^<]+)</a></td>', page)


def test_search_ignores_accents_and_word_order_and_matches_prefixes(api: Api) -> None:
    assert api.deposit(sip("MSG-SEARCH-1")).status_code == 201
    assert api.deposit(sip("MSG-SEARCH-2", producer="FINANCES")).status_code == 201
    client = signed_in(api, "archivist")
    for words in ("arretes voirie", "VOIRIE arrêtés", "voir arrê", '"rue de la paix"'):
        page = client.get("/console/recherche", params={"q": words}).text
        assert _titles(page), words
        wanted = "Arrêté n°1 — rue de la Paix" if "paix" in words else "Arrêtés de voirie 2024"
        assert html.unescape(page).count(wanted) >= 1, words
    assert "Aucune unité" in client.get("/console/recherche", params={"q": '"paix de la rue"'}).text


def test_a_facet_narrows_and_its_filter_can_be_removed(api: Api) -> None:
    assert api.deposit(sip("MSG-SEARCH-1")).status_code == 201
    assert api.deposit(sip("MSG-SEARCH-2", producer="FINANCES")).status_code == 201
    client = signed_in(api, "archivist")
    dated = simple_sip("MSG-SEARCH-3", producer="FINANCES")
    dated.units[0].title = "Budget primitif"
    dated.units[0].start_date = "2021-03-01"
    assert api.deposit(build_zip(dated)).status_code == 201
    page = client.get("/console/recherche", params={"q": ""}).text  # every unit
    assert "6 unités d'archives" in page
    for facet in ("Service producteur", "Année", "Typologie", "Statut"):
        assert f"<h3>{facet}</h3>" in page, facet
    # The record type facet (the final-action rule's name), then the status facet.
    typed = re.search(
        r'<a href="([^"]*type=APP-5Y[^"]*)">([^<]+)</a> <span class="count">\((\d)\)', page
    )
    assert typed is not None
    assert typed.group(2) == "Dossiers 5 ans"
    narrowed = client.get(html.unescape(typed.group(1))).text
    assert "Recherche restreinte à" in narrowed
    assert "Typologie : Dossiers 5 ans" in narrowed
    status = re.search(r'<a href="([^"]*statut=active[^"]*)">En conservation</a>', narrowed)
    assert status is not None
    both = client.get(html.unescape(status.group(1))).text
    assert "Statut : En conservation" in both
    assert len(_titles(both)) == 2  # the two parent units, which declare APP-5Y
    removed = re.search(
        r'<span class="badge">Typologie : Dossiers 5 ans</span> <a href="([^"]+)">', both
    )
    assert removed is not None
    back = client.get(html.unescape(removed.group(1))).text
    assert "Typologie : Dossiers 5 ans" not in back
    assert "Statut : En conservation" in back
    assert len(_titles(back)) == 6
    # A producer facet: the other service's units leave.
    producer = re.search(r'<a href="([^"]+)">FINANCES</a>', page)
    assert producer is not None
    finances = client.get(html.unescape(producer.group(1))).text
    assert 'value="FINANCES" selected' in finances
    assert len(_titles(finances)) == 4
    # The year facet: the dated unit only.
    year = re.search(r'<a href="([^"]+)">2021</a> <span class="count">\(1\)', page)
    assert year is not None
    in_2021 = client.get(html.unescape(year.group(1))).text
    assert _titles(in_2021) == ["Budget primitif"]
    assert 'value="2021-01-01"' in in_2021


def test_a_depositor_searches_only_its_services(api: Api) -> None:
    assert api.deposit(sip("MSG-SEARCH-1")).status_code == 201
    assert api.deposit(sip("MSG-SEARCH-2", producer="FINANCES")).status_code == 201
    client = signed_in(api, "depositor", ["FINANCES"])
    page = client.get("/console/recherche", params={"q": ""}).text
    assert len(_titles(page)) == 2
    assert len(_titles(client.get("/console/recherche", params={"q": "voirie"}).text)) == 1
    assert ">URBANISME</a>" not in page
