"""Dérogations (Code du patrimoine L213-3, issue 19 item 2): a granted dérogation opens exactly
the units asked for, to that reader only, through its end date; the day after, they are closed
again (the clock is moved, no sleep). Refusals, decided requests and the journal's replay."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from sae.access.models import Derogation, DerogationUnit
from sae.journal.models import Event
from tests.conftest import Api
from tests.sipfactory import FileSpec, RuleSpec, UnitSpec, build_zip, simple_sip


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, day: date) -> None:
        self.now = datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("sae.db.utcnow", c)
    return c


def _deposit(api: Api) -> dict[str, str]:
    """A communicable dossier with two closed files (50 years from 2020)."""
    spec = simple_sip("MSG-DEROG")
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


def _sees(api: Api, token: str, unit_id: str) -> bool:
    one = api.client.get(f"/api/v1/units/{unit_id}", headers=api.auth(token)).status_code
    listed = api.client.get("/api/v1/units", params={"limit": 500}, headers=api.auth(token))
    found = unit_id in [u["id"] for u in listed.json()["items"]]
    assert (one == 200) == found, (one, found)
    return found


def _request(api: Api, token: str, units: list[str]) -> dict[str, Any]:
    response = api.client.post(
        "/api/v1/derogations",
        headers=api.auth(token),
        json={"units": units, "purpose": "Recherche généalogique"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_grant_opens_one_unit_to_one_reader_until_its_end(api: Api, clock: Clock) -> None:
    units = _deposit(api)
    a, b = units["AU-A"], units["AU-B"]
    reader, other = api.token("reader"), api.token("reader")
    assert not _sees(api, reader, a)
    asked = _request(api, reader, [a])
    assert asked["state"] == "requested"
    assert not _sees(api, reader, a)  # asking opens nothing
    granted = api.client.post(
        f"/api/v1/derogations/{asked['id']}/grant",
        headers=api.auth(),
        json={"until": "2026-12-31", "reference": "SIAF-2026-117"},
    )
    assert granted.status_code == 200, granted.text
    assert granted.json()["state"] == "granted"
    # That unit, to that reader: its metadata, its search hit and its bytes.
    assert _sees(api, reader, a)
    unit = api.client.get(f"/api/v1/units/{a}", headers=api.auth(reader)).json()
    content = api.client.get(unit["objects"][0]["url"] + "/content", headers=api.auth(reader))
    assert content.status_code == 200
    # Not the other closed unit, not another reader.
    assert not _sees(api, reader, b)
    assert not _sees(api, other, a)
    # The last day still open; the day after, closed again.
    clock.set(date(2026, 12, 31))
    assert _sees(api, reader, a)
    clock.set(date(2027, 1, 1))
    assert not _sees(api, reader, a)
    assert (
        api.client.get(unit["objects"][0]["url"] + "/content", headers=api.auth(reader)).status_code
        == 404
    )


def test_refusal_and_decided_requests(api: Api, clock: Clock) -> None:
    units = _deposit(api)
    reader = api.token("reader")
    asked = _request(api, reader, [units["AU-A"]])
    refused = api.client.post(
        f"/api/v1/derogations/{asked['id']}/refuse",
        headers=api.auth(),
        json={"reason": "Atteinte excessive à la vie privée"},
    )
    assert refused.status_code == 200, refused.text
    assert refused.json()["state"] == "refused"
    assert not _sees(api, reader, units["AU-A"])
    again = api.client.post(
        f"/api/v1/derogations/{asked['id']}/grant",
        headers=api.auth(),
        json={"until": "2027-01-31", "reference": "X"},
    )
    assert again.status_code == 409
    assert again.json()["code"] == "access.derogation_decided"
    # A request naming a unit that does not exist is accepted (no oracle), but not granted.
    ghost = _request(api, reader, ["0" * 36])
    refused_grant = api.client.post(
        f"/api/v1/derogations/{ghost['id']}/grant",
        headers=api.auth(),
        json={"until": "2027-01-31", "reference": "X"},
    )
    assert refused_grant.status_code == 422
    # A past end date is refused.
    late = _request(api, reader, [units["AU-B"]])
    past = api.client.post(
        f"/api/v1/derogations/{late['id']}/grant",
        headers=api.auth(),
        json={"until": "2026-12-05", "reference": "X"},
    )
    assert past.status_code == 422
    # A reader sees its own requests only.
    other = api.token("reader")
    assert (
        api.client.get(f"/api/v1/derogations/{asked['id']}", headers=api.auth(other)).status_code
        == 404
    )
    mine = api.client.get("/api/v1/derogations", headers=api.auth(reader)).json()
    assert {d["id"] for d in mine} == {asked["id"], ghost["id"], late["id"]}
    assert api.client.get("/api/v1/derogations", headers=api.auth(other)).json() == []


def test_dérogations_are_rebuilt_from_the_journal(api: Api, clock: Clock) -> None:
    """Replaying the dérogation leaves on an empty copy of the tables makes the same rows."""
    from sae.recovery.replay import REPLAYS, LeafEvent, ReplayContext, load_all

    units = _deposit(api)
    reader = api.token("reader")
    granted = _request(api, reader, [units["AU-A"]])
    api.client.post(
        f"/api/v1/derogations/{granted['id']}/grant",
        headers=api.auth(),
        json={"until": "2026-12-31", "reference": "SIAF-2026-117"},
    )
    refused = _request(api, reader, [units["AU-B"]])
    api.client.post(
        f"/api/v1/derogations/{refused['id']}/refuse", headers=api.auth(), json={"reason": "Non"}
    )
    load_all()

    def rows(session: Any) -> list[tuple[Any, ...]]:
        ds = session.scalars(select(Derogation).order_by(Derogation.id)).all()
        us = session.scalars(select(DerogationUnit).order_by(DerogationUnit.unit_id)).all()
        return [
            *[
                (
                    d.id,
                    d.user_id,
                    d.login,
                    d.units,
                    d.purpose,
                    d.state,
                    d.requested_at,
                    d.requested_by,
                    d.decided_at,
                    d.decided_by,
                    d.until,
                    d.reference,
                    d.reason,
                )
                for d in ds
            ],
            *[(u.derogation_id, u.unit_id, u.user_id, u.until) for u in us],
        ]

    with api.runtime.sessions() as session:
        before = rows(session)
        leaves = [
            LeafEvent.parse(e.leaf)
            for e in session.scalars(
                select(Event).where(Event.type.like("derogation.%")).order_by(Event.leaf_index)
            )
        ]
        session.query(DerogationUnit).delete()
        session.query(Derogation).delete()
        session.flush()
        ctx = ReplayContext(
            session=session, offer=next(iter(api.runtime.offer_set.offers.values()))
        )
        for leaf in leaves:
            REPLAYS[leaf.type](ctx, leaf)
        after = rows(session)
        session.rollback()
    assert len(before) == 3
    assert after == before


def test_the_cli_records_grants_and_lists(
    api: Api, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from sae.auth.service import authenticate
    from sae.cli import app

    monkeypatch.setenv("SAE_DATA_DIR", str(api.settings.data_dir))
    monkeypatch.setenv("SAE_DATABASE_URL", api.settings.db_url)
    units = _deposit(api)
    reader = api.token("reader")
    with api.runtime.sessions() as session:
        login = authenticate(session, reader).login
    runner = CliRunner()
    asked = runner.invoke(
        app,
        [
            "derogation",
            "request",
            "--login",
            login,
            "--unit",
            units["AU-A"],
            "--purpose",
            "Lettre du 2 décembre",
        ],
    )
    assert asked.exit_code == 0, asked.output
    derogation_id = asked.output.split(":")[0].strip()
    assert not _sees(api, reader, units["AU-A"])
    granted = runner.invoke(
        app,
        [
            "derogation",
            "grant",
            derogation_id,
            "--until",
            "2026-12-20",
            "--reference",
            "SIAF-2026-118",
        ],
    )
    assert granted.exit_code == 0, granted.output
    assert _sees(api, reader, units["AU-A"])
    listed = runner.invoke(
        app, ["derogation", "list", "--state", "granted"], env={"COLUMNS": "300"}
    )
    assert listed.exit_code == 0, listed.output
    assert "SIAF-2026-118" in listed.output
    again = runner.invoke(app, ["derogation", "refuse", derogation_id, "--reason", "non"])
    assert again.exit_code == 1
    assert "access.derogation_decided" in again.output
