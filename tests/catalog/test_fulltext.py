"""Full-text search (``q``): words in any order, prefixes, phrases, no case or accent, ranking,
facets and paging — the same answers from SQLite's FTS5 and PostgreSQL's French tsvector, but
for stemming, which only PostgreSQL does."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from sae.catalog import service
from sae.catalog.fulltext import fts5_expression, tsquery_expression
from sae.catalog.models import ArchiveUnit
from sae.catalog.text import Term, fold, parse_query
from sae.db import transaction
from tests.conftest import Api, Database, postgres_schema, upgrade_to
from tests.sipfactory import FileSpec, RuleSpec, SipSpec, UnitSpec, build_zip

RULES_CSV = (
    "RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement\n"
    "APP-DELIB,AppraisalRule,Délibérations,Registre des délibérations,10,YEAR\n"
    "APP-BUDGET,AppraisalRule,Budgets,Documents budgétaires,10,YEAR\n"
)


def test_parse_query_reads_words_prefixes_and_phrases() -> None:
    assert parse_query('Délibération  "conseil MUNICIPAL" l’éclairage AU-12') == [
        Term(("conseil", "municipal"), prefix=False),
        Term(("deliberation",), prefix=True),
        Term(("l", "eclairage"), prefix=True),
        Term(("au", "12"), prefix=True),
    ]
    assert parse_query("Œuvre") == [Term(("oeuvre",), prefix=True)]
    # Operators of either syntax are not words: nothing reaches a database as one.
    assert parse_query('* : & | ! ( ) <-> NEAR( "" \' -') == [Term(("near",), prefix=True)]
    assert parse_query("%_") == []
    assert parse_query('"unclosed phrase') == [Term(("unclosed", "phrase"), prefix=False)]


def test_query_expressions_quote_every_word() -> None:
    terms = parse_query('"conseil municipal" délib')
    assert fts5_expression(terms) == '"conseil municipal" AND "delib" *'
    assert fts5_expression(terms, "title") == 'title : ("conseil municipal" AND "delib" *)'
    assert fts5_expression(terms, "rest") == (
        '("conseil municipal" AND "delib" *) NOT title : ("conseil municipal" AND "delib" *)'
    )
    assert tsquery_expression(terms) == "('conseil' <-> 'municipal') & 'delib':*"


def _archive(api: Api) -> dict[str, str]:
    """A register of five units; their catalogue ids by SIP id."""
    api.load_rules(RULES_CSV)
    pdf = b"%PDF-1.4\n%%EOF\n"
    spec = SipSpec(
        message_id="MSG-FTS",
        producer="MAIRIE",
        transferring="MAIRIE",
        files=[FileSpec(uri=f"Content/f{i}.pdf", data=pdf + bytes([i])) for i in range(5)],
        units=[
            UnitSpec(
                id="AU-registre",
                title="Registre 2022-2024",
                level="RecordGrp",
                children=[
                    UnitSpec(
                        id="AU-delib",
                        title="Délibération du conseil municipal sur l’éclairage public",
                        description="Vote des crédits pour les lampadaires",
                        start_date="2023-05-12",
                        rules=[RuleSpec("AppraisalRule", "APP-DELIB", final_action="Keep")],
                        files=[0],
                    ),
                    UnitSpec(
                        id="AU-ecoles",
                        title="Éclairage des écoles",
                        description="Marché de travaux",
                        keywords=["voirie"],
                        start_date="2024-01-10",
                        files=[1],
                    ),
                    UnitSpec(
                        id="AU-budget",
                        title="Budget primitif 2024",
                        identifiers=["BP-2024-001"],
                        start_date="2024-02-01",
                        rules=[RuleSpec("AppraisalRule", "APP-BUDGET", final_action="Keep")],
                        files=[2],
                    ),
                    UnitSpec(
                        id="AU-oeuvres",
                        title="Œuvres d’art de la mairie",
                        description="Inventaire",
                        start_date="2022-03-01",
                        files=[3],
                    ),
                    UnitSpec(
                        id="AU-pv",
                        title="Procès-verbal",
                        description="Séance du conseil municipal, questions diverses",
                        start_date="2023-06-30",
                        rules=[RuleSpec("AppraisalRule", "APP-DELIB", final_action="Keep")],
                        files=[4],
                    ),
                ],
            )
        ],
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    return {u["sip_id"]: u["id"] for u in response.json()["units"]}


def _search(api: Api, **params: Any) -> dict[str, Any]:
    response = api.client.get("/api/v1/units", params=params, headers=api.auth())
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _found(api: Api, q: str) -> list[str]:
    """The SIP ids found by ``q``, in the order of relevance."""
    return [u["sip_id"] for u in _search(api, q=q)["items"]]


def _postgresql(api: Api) -> bool:
    return api.settings.db_url.startswith("postgresql")


def test_words_in_any_order_without_accents_prefixes_and_phrases(api: Api) -> None:
    _archive(api)
    assert _found(api, "délibération éclairage") == ["AU-delib"]
    assert _found(api, "ECLAIRAGE deliberation") == ["AU-delib"]
    assert sorted(_found(api, "éclairage")) == ["AU-delib", "AU-ecoles"]
    assert _found(api, "délib") == ["AU-delib"]  # a prefix
    assert _found(api, "lampadaires") == ["AU-delib"]  # the description
    assert _found(api, "voirie") == ["AU-ecoles"]  # a keyword
    assert _found(api, "BP-2024-001") == ["AU-budget"]  # an identifier of the producer
    assert _found(api, "bp 2024 001") == ["AU-budget"]
    assert _found(api, "œuvre") == ["AU-oeuvres"]  # a ligature, then a prefix
    assert _found(api, "OEUVRES D'ART") == ["AU-oeuvres"]
    assert sorted(_found(api, '"conseil municipal"')) == ["AU-delib", "AU-pv"]
    assert _found(api, '"municipal conseil"') == []  # a phrase keeps its order
    assert _found(api, "éclairage inexistant") == []  # every word is required
    assert len(_found(api, "mairie")) == 6  # the producer, on every unit


def test_french_stemming_on_postgresql_only(api: Api) -> None:
    _archive(api)
    # « délibérations » and « délibération » share a stem in French; SQLite has no French
    # stemmer, and the plural is not a prefix of the singular.
    assert _found(api, "délibérations") == (["AU-delib"] if _postgresql(api) else [])
    assert _found(api, "écoles éclairages") == (["AU-ecoles"] if _postgresql(api) else [])


def test_a_title_ranks_before_a_description(api: Api) -> None:
    _archive(api)
    # « conseil » is in AU-delib's title and only in AU-pv's description.
    assert _found(api, "conseil") == ["AU-delib", "AU-pv"]


@pytest.mark.parametrize(
    "q",
    ['a" OR "b', "éclairage AND", "NEAR(", "*", "-", ":*", "'", "!", "(", "conseil <-> x", "\\"],
)
def test_what_a_user_types_never_breaks_the_search(api: Api, q: str) -> None:
    _archive(api)
    _search(api, q=q)


def test_paging_by_relevance_gives_every_unit_once(api: Api) -> None:
    _archive(api)
    everything = _found(api, "mairie")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "mairie", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = _search(api, **params)
        seen += [u["sip_id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything
    # A relevance cursor is not a date cursor: the other search refuses it, with a reason.
    refused = api.client.get(
        "/api/v1/units", params={"cursor": cursor or _cursor_of(api)}, headers=api.auth()
    )
    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("application/problem+json")


def _cursor_of(api: Api) -> str:
    cursor: str = _search(api, q="mairie", limit=1)["next_cursor"]
    return cursor


def test_facets_count_what_the_search_selects(api: Api) -> None:
    _archive(api)
    result = _search(api, q="conseil", facets="producer,year,record_type,status")
    assert result["total"] == 2
    assert result["total_exact"] is True
    facets = result["facets"]
    assert facets["producer"] == [{"value": "MAIRIE", "count": 2, "label": None}]
    assert facets["year"] == [{"value": "2023", "count": 2, "label": None}]
    assert facets["status"] == [{"value": "active", "count": 2, "label": None}]
    assert facets["record_type"] == [{"value": "APP-DELIB", "count": 2, "label": "Délibérations"}]
    everything = _search(api, facets="year")
    assert everything["total"] == 6
    assert everything["facets"]["year"] == [  # the most frequent first, then by value
        {"value": "2023", "count": 2, "label": None},
        {"value": "2024", "count": 2, "label": None},
        {"value": "2022", "count": 1, "label": None},
    ]
    # Filters narrow the counts and the results alike.
    typed = _search(api, record_type="APP-BUDGET", facets="record_type")
    assert [u["sip_id"] for u in typed["items"]] == ["AU-budget"]
    assert typed["total"] == 1
    unknown = api.client.get("/api/v1/units", params={"facets": "colour"}, headers=api.auth())
    assert unknown.status_code == 400
    assert "colour" in unknown.json()["detail"]


def test_title_filter_ignores_case_and_accents(api: Api) -> None:
    _archive(api)
    found = _search(api, title="ECLAIRAGE DES")["items"]
    assert [u["sip_id"] for u in found] == ["AU-ecoles"]
    assert _search(api, title="procès-VERBAL")["items"][0]["sip_id"] == "AU-pv"


def test_units_no_longer_archived_leave_the_index(api: Api) -> None:
    ids = _archive(api)
    with transaction(api.runtime.sessions) as session:
        unit = session.get(ArchiveUnit, ids["AU-ecoles"])
        assert unit is not None
        unit.status = "destroyed"
        unit.forget_description()
    assert _found(api, "éclairage") == ["AU-delib"]
    assert _found(api, "voirie") == []
    with transaction(api.runtime.sessions) as session:
        unit = session.get(ArchiveUnit, ids["AU-delib"])
        assert unit is not None
        unit.status = "withdrawn"
    assert _found(api, "éclairage") == []
    # A unit kept for ever stays found, counted under its new status.
    with transaction(api.runtime.sessions) as session:
        unit = session.get(ArchiveUnit, ids["AU-budget"])
        assert unit is not None
        unit.status = "permanent"
    kept = _search(api, q="budget", facets="status")
    assert [u["sip_id"] for u in kept["items"]] == ["AU-budget"]
    assert kept["facets"]["status"] == [{"value": "permanent", "count": 1, "label": None}]
    if not _postgresql(api):
        with api.runtime.sessions() as session:
            # FTS5's own consistency check of a contentless table against what it was given.
            session.execute(text("INSERT INTO unit_fts(unit_fts) VALUES ('integrity-check')"))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_indexes_the_units_catalogued_before_it(kind: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / 'old.db'}"
        else:
            url = stack.enter_context(postgres_schema("sae_fts_upgrade"))
        engine = create_engine(url)
        stack.callback(engine.dispose)
        upgrade_to(engine, "0011_witnessing")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO transfers (id, status, received_at, unit_count, object_count,"
                    " total_bytes, errors, warnings)"
                    " VALUES ('t', 'accepted', '2026-11-01', 0, 0, 0, '[]', '[]')"
                )
            )
            for n, (title, status) in enumerate(
                [("Délibération du CONSEIL", "active"), ("Délibération retirée", "withdrawn")]
            ):
                conn.execute(
                    text(
                        "INSERT INTO archive_units (id, transfer_id, sip_id, title, search_text,"
                        " producer, content_xml, management, status, created_at) VALUES (:id,"
                        " 't', :sip, :title, :folded, 'P', :empty, '{}', :status, '2026-11-01')"
                    ),
                    {
                        "id": f"u{n}",
                        "sip": f"AU-{n}",
                        "title": title,
                        "folded": fold(title),
                        "empty": b"",
                        "status": status,
                    },
                )
        upgrade_to(engine, "head")
        with engine.connect() as conn:
            hits = conn.execute(*_match_statement(kind, "deliberation")).scalars().all()
            folded = conn.execute(text("SELECT title_folded FROM archive_units ORDER BY id")).all()
        assert hits == ["u0"]  # the withdrawn unit is not indexed
        assert [t for (t,) in folded] == ["deliberation du conseil", "deliberation retiree"]
        if kind == "postgresql":  # the title's own index (migration 0023), filled
            with engine.connect() as conn:
                titled = conn.execute(
                    text(
                        "SELECT unit_id FROM unit_search"
                        " WHERE title @@ to_tsquery('pg_catalog.french', 'conseil')"
                    )
                ).scalars()
                assert list(titled) == ["u0"]


def _match_statement(kind: str, word: str) -> tuple[Any, dict[str, str]]:
    if kind == "sqlite":
        return text(
            "SELECT r.unit_id FROM unit_fts JOIN unit_search_rows r ON r.id = unit_fts.rowid"
            " WHERE unit_fts MATCH :q"
        ), {"q": word}
    return text(
        "SELECT unit_id FROM unit_search WHERE vector @@ to_tsquery('pg_catalog.french', :q)"
    ), {"q": word}


def test_the_index_triggers_are_in_place_at_head(database: Database) -> None:
    # A later migration that rebuilds archive_units (SQLite's batch mode copies the table)
    # drops its triggers with it: then the index would silently stop following the catalogue.
    with database.engine.connect() as conn:
        if database.kind == "sqlite":
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
            ).scalars()
            assert {
                "archive_units_fts_delete",
                "archive_units_fts_insert",
                "archive_units_fts_update",
            } <= set(names)
        else:
            names = conn.execute(
                text(
                    "SELECT tgname FROM pg_trigger"
                    " WHERE NOT tgisinternal AND tgrelid = 'archive_units'::regclass"
                )
            ).scalars()
            assert "archive_units_search" in set(names)


def test_a_depositor_finds_only_its_producers_units(api: Api) -> None:
    _archive(api)
    own = api.token("depositor", ["MAIRIE"])
    other = api.token("depositor", ["CCAS"])
    for token, expected in ((own, ["AU-delib", "AU-pv"]), (other, [])):
        response = api.client.get(
            "/api/v1/units", params={"q": "conseil", "facets": "producer"}, headers=api.auth(token)
        )
        assert response.status_code == 200, response.text
        assert [u["sip_id"] for u in response.json()["items"]] == expected
        assert response.json()["total"] == len(expected)


def test_beyond_the_ranking_cap_the_total_is_at_least_and_titles_come_first(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _archive(api)
    # « mairie » is on every unit (its producer) but in one title only (AU-oeuvres).
    monkeypatch.setattr(service, "RANKED_AT_MOST", 2)
    counted = _search(api, q="mairie", facets="producer,status")
    assert counted["total"] == 2
    assert counted["total_exact"] is False  # "at least 2"
    assert counted["facets"]["producer"] == [{"value": "MAIRIE", "count": 2, "label": None}]
    assert counted["items"][0]["sip_id"] == "AU-oeuvres"  # the title match, first
    # Paging walks the ranked candidates (the cap, and one more), each once, best first.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "mairie", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = _search(api, **params)
        seen += [u["sip_id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == _found(api, "mairie")
    assert len(seen) == len(set(seen)) == 3
    assert seen[0] == "AU-oeuvres"
    # The title matches are taken first even when the cap leaves no room for the others.
    monkeypatch.setattr(service, "RANKED_AT_MOST", 0)
    assert _found(api, "mairie") == ["AU-oeuvres"]
    monkeypatch.setattr(service, "RANKED_AT_MOST", 1)
    assert _found(api, "conseil") == ["AU-delib", "AU-pv"]
    # Filters apply before the cap: what they keep is ranked and counted, exactly when few.
    monkeypatch.setattr(service, "RANKED_AT_MOST", 2)
    typed = _search(api, q="mairie", record_type="APP-DELIB", facets="status")
    assert sorted(u["sip_id"] for u in typed["items"]) == ["AU-delib", "AU-pv"]
    assert (typed["total"], typed["total_exact"]) == (2, True)
    # Without q nothing is ranked: the catalogue's count stays exact.
    everything = _search(api, facets="status")
    assert (everything["total"], everything["total_exact"]) == (6, True)


def test_a_faceted_search_reads_the_index_once_and_counts_as_the_catalogue(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _archive(api)
    index = "unit_search" if _postgresql(api) else "unit_fts"
    statements: list[str] = []

    def executed(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = api.runtime.engine
    event.listen(engine, "before_cursor_execute", executed)
    try:
        everything = "producer,year,record_type,status"
        counted = _search(api, q="mairie", facets=everything, limit=2)
    finally:
        event.remove(engine, "before_cursor_execute", executed)
    # The page and the four facets from one statement over the index (each built the bitmap
    # of every match again: three of them made a faceted search cost three searches).
    assert sum(index in statement for statement in statements) == 1
    # « mairie » is on every unit (its producer): the same counts as the catalogue's own
    # grouped pass, record types included, and the same page as without the facets.
    catalogue = _search(api, facets=everything)
    assert (counted["total"], counted["total_exact"]) == (catalogue["total"], True) == (6, True)
    assert counted["facets"] == catalogue["facets"]
    plain = _search(api, q="mairie", limit=2)
    assert counted["items"] == plain["items"]
    assert counted["next_cursor"] == plain["next_cursor"]
    # Beyond the cap, every page of a faceted search counts the same candidates.
    monkeypatch.setattr(service, "RANKED_AT_MOST", 2)
    first = _search(api, q="mairie", facets=everything, limit=1)
    second = _search(api, q="mairie", facets=everything, limit=1, cursor=first["next_cursor"])
    assert (first["total"], first["total_exact"]) == (2, False)
    assert first["facets"] == second["facets"]
    assert sum(v["count"] for v in first["facets"]["status"]) == 2
    assert first["items"] != second["items"]
