"""Search ignores case and accents, in SQLite and PostgreSQL alike (``sae.catalog.text``)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from sae.catalog.text import fold, search_text
from tests.conftest import Api, upgrade_to
from tests.sipfactory import build_zip, simple_sip


def test_fold_removes_case_accents_ligatures_and_extra_spaces() -> None:
    assert fold("Délibération") == "deliberation"
    assert fold("DÉLIBÉRATION") == "deliberation"
    assert fold("  Œuvres   d’Été\n") == "oeuvres d'ete"
    assert fold("Arrêté n°1 — rue de la Paix") == "arrete n°1 — rue de la paix"
    assert fold("Straße") == "strasse"
    assert fold("ﬁchier") == "fichier"  # compatibility ligature


def test_search_text_keeps_the_fields_apart() -> None:
    assert search_text("Arrêtés", None, "AU-1") == "arretes\nau-1"
    assert search_text("", "Une DESCRIPTION", "x") == "une description\nx"


@given(st.text())
def test_fold_is_stable_and_leaves_no_mark_or_capital(text: str) -> None:
    folded = fold(text)
    assert fold(folded) == folded
    assert not any(unicodedata.combining(c) for c in folded)
    assert folded == folded.casefold()


def _found(api: Api, q: str) -> list[str]:
    response = api.client.get("/api/v1/units", params={"q": q}, headers=api.auth())
    assert response.status_code == 200, response.text
    return sorted(unit["sip_id"] for unit in response.json()["items"])


def test_search_finds_units_whatever_the_case_and_accents(api: Api) -> None:
    # Titles: « Arrêtés de voirie 2024 » (AU-root), « Arrêté n°1 — rue de la Paix » (AU-1).
    assert api.deposit(build_zip(simple_sip("MSG-FOLD"))).status_code == 201
    assert _found(api, "arrete") == ["AU-1", "AU-root"]
    assert _found(api, "ARRÊTÉ") == ["AU-1", "AU-root"]
    assert _found(api, "VOIRIE") == ["AU-root"]
    assert _found(api, "RUE DE LA   paix") == ["AU-1"]
    assert _found(api, "au-root") == ["AU-root"]
    assert _found(api, "%") == []  # nothing searchable: no letter, no digit
    assert _found(api, "arr_t") == []  # "arr" then a word starting "t": none


def test_upgrade_folds_the_units_catalogued_before_it(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to(engine, "0006_quarantine")
    with engine.begin() as conn:
        for n, (title, description) in enumerate(
            [("Délibération du CONSEIL", "Séance"), ("Œuvre", None)]
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO archive_units (id, transfer_id, sip_id, title, description, "
                    "producer, content_xml, management, status, created_at) VALUES (:id, 't', "
                    ":sip, :title, :description, 'P', x'', '{}', 'active', '2026-11-01')"
                ),
                {"id": f"u{n}", "sip": f"AU-{n}", "title": title, "description": description},
            )
    upgrade_to(engine, "head")
    with engine.connect() as conn:
        texts = conn.execute(sa.text("SELECT search_text FROM archive_units ORDER BY id")).all()
    engine.dispose()
    assert [t for (t,) in texts] == ["deliberation du conseil\nseance\nau-0", "oeuvre\nau-1"]
