"""The register of communications (issue 19 item 2): every read of a unit's metadata or content
by a reader or a depositor is an entry with its basis — under the law, under a dérogation (named),
or as the producer's depositor —; staff reads are not; filters, CSV and the French PDF; the
register is rebuilt from the journal."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from sae.access.models import Communication
from sae.auth.service import authenticate
from sae.journal.models import Event
from tests.conftest import Api
from tests.sipfactory import FileSpec, RuleSpec, UnitSpec, build_zip, simple_sip


def _deposit(api: Api) -> dict[str, str]:
    """A communicable dossier (AU-root, AU-1 with a PDF), and two closed files (50 years from
    2020): AU-A with a PDF, AU-B without."""
    spec = simple_sip("MSG-REGISTER")
    spec.files.append(FileSpec(uri="Content/a.pdf", data=b"%PDF-1.4 dossier A"))
    for sip_id, title, index in (("AU-A", "Dossier CCAS de M. A", 1), ("AU-B", "Dossier B", None)):
        spec.units[0].children.append(
            UnitSpec(
                id=sip_id,
                title=title,
                files=[index] if index is not None else [],
                rules=[RuleSpec("AccessRule", "ACC-50Y", date(2020, 1, 1))],
            )
        )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    return {u["sip_id"]: u["id"] for u in response.json()["units"]}


def _login(api: Api, token: str) -> str:
    with api.runtime.sessions() as session:
        return str(authenticate(session, token).login)


def _grant(api: Api, reader: str, unit_id: str) -> str:
    asked = api.client.post(
        "/api/v1/derogations",
        headers=api.auth(reader),
        json={"units": [unit_id], "purpose": "Thèse d'histoire sociale"},
    )
    assert asked.status_code == 201, asked.text
    until = (date.today() + timedelta(days=30)).isoformat()
    granted = api.client.post(
        f"/api/v1/derogations/{asked.json()['id']}/grant",
        headers=api.auth(),
        json={"until": until, "reference": "SIAF-2026-200"},
    )
    assert granted.status_code == 200, granted.text
    return str(asked.json()["id"])


def _get(api: Api, path: str, token: str | None = None, **params: Any) -> Any:
    response = api.client.get(path, headers=api.auth(token), params=params)
    assert response.status_code == 200, response.text
    return response


def _register(api: Api, **params: Any) -> list[dict[str, Any]]:
    return list(_get(api, "/api/v1/communications", limit=500, **params).json()["items"])


def _object_url(api: Api, token: str, unit_id: str) -> str:
    unit = _get(api, f"/api/v1/units/{unit_id}", token).json()
    return str(unit["objects"][0]["url"]) + "/content"


@pytest.fixture
def reads(api: Api) -> dict[str, Any]:
    """A reader, a depositor of the producer and the archivist read; what each read."""
    units = _deposit(api)
    reader = api.token("reader")
    depositor = api.token("depositor", producers=["URBANISME"])
    derogation = _grant(api, reader, units["AU-A"])
    # The reader: a communicable unit (metadata and bytes), the unit opened by the dérogation
    # (metadata and bytes), the dossier's DIP.
    _get(api, _object_url(api, reader, units["AU-1"]), reader)
    _get(api, _object_url(api, reader, units["AU-A"]), reader)
    _get(api, f"/api/v1/units/{units['AU-root']}/dip", reader)
    # A closed unit the reader may not see: a 404, no entry.
    assert (
        api.client.get(f"/api/v1/units/{units['AU-B']}", headers=api.auth(reader)).status_code
        == 404
    )
    # The depositor: the closed unit of its producer.
    _get(api, f"/api/v1/units/{units['AU-B']}", depositor)
    # The archivist: not a communication.
    _get(api, f"/api/v1/units/{units['AU-A']}")
    _get(api, _object_url(api, api.admin, units["AU-A"]))
    return {
        "units": units,
        "reader": _login(api, reader),
        "depositor": _login(api, depositor),
        "derogation": derogation,
        "reader_token": reader,
        "depositor_token": depositor,
    }


def _as_tuples(items: list[dict[str, Any]], units: dict[str, str]) -> list[tuple[Any, ...]]:
    names = {v: k for k, v in units.items()}
    return sorted(
        (names[i["unit_id"]], i["kind"], i["basis"], i["login"], bool(i["derogation_id"]))
        for i in items
    )


def test_every_read_is_registered_with_its_basis(api: Api, reads: dict[str, Any]) -> None:
    units, reader, depositor = reads["units"], reads["reader"], reads["depositor"]
    items = _register(api)
    assert _as_tuples(items, units) == sorted(
        [
            ("AU-1", "metadata", "law", reader, False),
            ("AU-1", "content", "law", reader, False),
            ("AU-A", "metadata", "derogation", reader, True),
            ("AU-A", "content", "derogation", reader, True),
            # The DIP of the dossier: the units in it, AU-B (closed) left out.
            ("AU-root", "dip", "law", reader, False),
            ("AU-1", "dip", "law", reader, False),
            ("AU-A", "dip", "derogation", reader, True),
            ("AU-B", "metadata", "producer", depositor, False),
        ]
    )
    # The dérogation named is the one granted; the entries' leaves are the reads' events.
    assert {i["derogation_id"] for i in items if i["basis"] == "derogation"} == {
        reads["derogation"]
    }
    with api.runtime.sessions() as session:
        leaves = {
            e.leaf_index: e.type
            for e in session.scalars(select(Event).where(Event.type.like("access.%")))
        }
    kinds = {"metadata": "access.unit_read", "content": "access.object_read"}
    kinds["dip"] = "access.dip_exported"
    assert all(leaves[i["leaf"]] == kinds[i["kind"]] for i in items)
    # Staff reads are journaled (objects) but not communications.
    staff = [t for t in leaves.values() if t == "access.object_read"]
    assert len(staff) == 3  # two by the reader, one by the archivist
    content = next(i for i in items if i["kind"] == "content" and i["basis"] == "law")
    assert content["object_id"]
    assert content["via"] == "api"
    assert content["title"] == "Arrêté n°1 — rue de la Paix"


def test_filters_and_pages(api: Api, reads: dict[str, Any]) -> None:
    units = reads["units"]
    by_reader = _register(api, login=reads["reader"])
    assert len(by_reader) == 7
    assert [i["basis"] for i in _register(api, login=reads["depositor"])] == ["producer"]
    assert len(_register(api, basis="derogation")) == 3
    assert len(_register(api, unit=units["AU-A"])) == 3
    assert len(_register(api, kind="dip")) == 3
    assert len(_register(api, kind="content", basis="law")) == 1
    today = date.today()
    assert len(_register(api, **{"from": today.isoformat(), "to": today.isoformat()})) == 8
    assert _register(api, **{"to": (today - timedelta(days=1)).isoformat()}) == []
    assert _register(api, **{"from": (today + timedelta(days=1)).isoformat()}) == []
    # The newest first, page by page, nothing lost or repeated.
    seen: list[tuple[int, str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = _get(api, "/api/v1/communications", **params).json()
        seen += [(i["leaf"], i["unit_id"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 8 == len(set(seen))
    assert [leaf for leaf, _ in seen] == sorted((leaf for leaf, _ in seen), reverse=True)
    # Bad filters: a 400 naming the fault, not a 500.
    for bad in ({"basis": "rumour"}, {"kind": "x"}, {"cursor": "nope"}):
        response = api.client.get("/api/v1/communications", headers=api.auth(), params=bad)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "access.invalid_register_query"
    reversed_period = {"from": today.isoformat(), "to": (today - timedelta(days=2)).isoformat()}
    response = api.client.get("/api/v1/communications", headers=api.auth(), params=reversed_period)
    assert response.status_code == 400


def test_who_may_read_the_register(api: Api, reads: dict[str, Any]) -> None:
    for token in (reads["reader_token"], reads["depositor_token"]):
        for path in ("/api/v1/communications", "/api/v1/communications/export"):
            assert api.client.get(path, headers=api.auth(token)).status_code == 403
    for role in ("archivist", "auditor"):
        token = api.token(role)
        assert len(_register_with(api, token)) == 8


def _register_with(api: Api, token: str) -> list[Any]:
    return list(_get(api, "/api/v1/communications", token).json()["items"])


def test_csv_export(api: Api, reads: dict[str, Any]) -> None:
    response = _get(api, "/api/v1/communications/export", format="csv", basis="derogation")
    assert response.headers["content-type"].startswith("text/csv")
    assert "registre-communications.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 3
    assert {r["basis"] for r in rows} == {"derogation"}
    assert {r["derogation_id"] for r in rows} == {reads["derogation"]}
    assert {r["title"] for r in rows} == {"Dossier CCAS de M. A"}
    assert [int(r["leaf"]) for r in rows] == sorted(int(r["leaf"]) for r in rows)


def test_pdf_for_the_annual_report(api: Api, reads: dict[str, Any]) -> None:
    response = _get(api, "/api/v1/communications/export", format="pdf")
    assert response.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "Registre des communications" in text
    assert "8 communication(s) à 2 lecteur(s)" in text
    assert "Par fondement" in text
    assert "Par mois" in text
    # Counts by basis: 4 under the law, 3 under a dérogation, 1 as the producer's depositor.
    flat = " ".join(text.split())
    assert "Communicable de plein droit 4" in flat
    assert "Dérogation (L213-3) 3" in flat
    assert "Service producteur 1" in flat
    month = date.today()
    months = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août")
    months += ("septembre", "octobre", "novembre", "décembre")
    assert f"{months[month.month - 1]} {month.year} 8" in flat
    assert reads["reader"] in flat
    assert "Dossier CCAS de M. A" in flat
    filtered = _get(api, "/api/v1/communications/export", format="pdf", login=reads["depositor"])
    text = " ".join(
        " ".join(p.extract_text() for p in PdfReader(io.BytesIO(filtered.content)).pages).split()
    )
    assert "1 communication(s) à 1 lecteur(s)" in text
    assert f"lecteur {reads['depositor']}" in text


def test_the_register_is_rebuilt_from_the_journal(api: Api, reads: dict[str, Any]) -> None:
    """Replaying the read leaves on an empty table makes the same rows; staff reads none."""
    from sae.recovery.replay import REPLAYS, LeafEvent, ReplayContext, load_all

    load_all()

    def rows(session: Any) -> list[tuple[Any, ...]]:
        found = session.scalars(
            select(Communication).order_by(Communication.leaf, Communication.unit_id)
        )
        return [
            (
                c.leaf,
                c.unit_id,
                c.at,
                c.kind,
                c.object_id,
                c.user_id,
                c.login,
                c.role,
                c.basis,
                c.derogation_id,
                c.via,
            )
            for c in found
        ]

    with api.runtime.sessions() as session:
        before = rows(session)
        leaves = [
            LeafEvent.parse(e.leaf)
            for e in session.scalars(
                select(Event).where(Event.type.like("access.%")).order_by(Event.leaf_index)
            )
        ]
        session.query(Communication).delete()
        session.flush()
        ctx = ReplayContext(
            session=session, offer=next(iter(api.runtime.offer_set.offers.values()))
        )
        for leaf in leaves:
            REPLAYS[leaf.type](ctx, leaf)
        after = rows(session)
        session.rollback()
    assert len(before) == 8
    assert after == before


def test_the_cli_lists_and_exports(
    api: Api, reads: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from sae.cli import app

    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    runner = CliRunner()
    listed = runner.invoke(
        app, ["communications", "list", "--basis", "producer"], env={"COLUMNS": "300"}
    )
    assert listed.exit_code == 0, listed.output
    assert reads["depositor"] in listed.output
    assert reads["reader"] not in listed.output
    out = tmp_path / "registre.csv"
    exported = runner.invoke(
        app,
        ["communications", "export", "--format", "csv", "--output", str(out), "--kind", "dip"],
    )
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 3
    assert {r["kind"] for r in rows} == {"dip"}
    pdf = tmp_path / "registre.pdf"
    year = str(date.today().year)
    exported = runner.invoke(
        app,
        [
            "communications",
            "export",
            "--format",
            "pdf",
            "--output",
            str(pdf),
            "--from",
            f"{year}-01-01",
            "--to",
            f"{year}-12-31",
        ],
    )
    assert exported.exit_code == 0, exported.output
    text = " ".join(p.extract_text() for p in PdfReader(pdf).pages)
    assert f"du 01/01/{year} au 31/12/{year}" in text
    bad = runner.invoke(app, ["communications", "list", "--basis", "rumour"])
    assert bad.exit_code != 0
    assert "access.invalid_register_query" in bad.output
