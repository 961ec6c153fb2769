"""The shipped referentials, the YAML schema, and the import guards."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from sae.catalog.models import ArchiveUnit, DataObject
from sae.ingest.transfer_record import transfer_record_key
from sae.retention import referential
from sae.retention.errors import InvalidReferential
from sae.retention.models import UnitComputedRule
from sae.storage.models import ObjectCopy
from tests.conftest import TEST_RULES_CSV, Api
from tests.retention.helpers import dossier_sip, events


def test_shipped_referentials_load_and_carry_the_schedule() -> None:
    specs = referential.shipped_specs()
    appraisal = [s for s in specs if s.type == "AppraisalRule"]
    access = {s.id: s for s in specs if s.type == "AccessRule"}
    assert len(appraisal) >= 40
    for spec in appraisal:
        assert spec.meta is not None
        assert spec.meta["confidence"] in ("confirmed", "secondary", "uncertain")
        assert spec.meta["final_action"] in ("Keep", "Destroy", "Sample")
        assert spec.meta["legal_reference"]
        assert spec.meta["record_type"]
    assert {s.meta["confidence"] for s in appraisal if s.meta} == {
        "confirmed", "secondary", "uncertain"}
    sampled = [s for s in appraisal if s.meta and s.meta["final_action"] == "Sample"]
    assert sampled
    assert sampled[0].meta is not None
    assert sampled[0].meta["sampling"]["one_in"] == "by_population"
    durations = {(s.duration, s.measurement) for s in access.values()}
    for years in (25, 50, 75, 100, 120):
        assert (years, "YEAR") in durations
    assert access["ACC-EC-NAISSANCE-MARIAGE"].meta is not None
    assert access["ACC-EC-NAISSANCE-MARIAGE"].meta["start_event"] == "register_closure"
    assert access["ACC-EC-DECES"].duration == 0
    # Every access_rule a record type points to exists.
    ids = {s.id for s in specs}
    assert all(s.meta["access_rule"] in ids for s in appraisal if s.meta)


def test_yaml_schema_problems_are_all_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "defaults: {type: AppraisalRule, measurement: YEAR}\n"
        "rules:\n"
        "  - {id: A1, value: x, duration: 5, final_action: Shred}\n"
        "  - {id: A2, value: y, duration: 5, final_action: Sample}\n"
        "  - {id: A3, value: z, duration: 5, confidence: sure, colour: blue}\n"
        "  - {id: A4, value: ok, duration: 1}\n"
        "  - {id: A4, value: again, duration: 1}\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidReferential) as caught:
        referential.parse_files([bad])
    problems = " | ".join(caught.value.extra["problems"])
    assert "Shred" in problems
    assert "needs a 'sampling'" in problems
    assert "confidence" in problems
    assert "colour" in problems
    assert "appears twice" in problems


def test_csv_round_trip_of_the_shipped_referential() -> None:
    from sae.retention.models import Rule

    specs = referential.shipped_specs()
    rules = [Rule(**s.as_dict()) for s in specs]
    again = referential.parse_csv(referential.export_csv(rules))
    assert [(s.id, s.type, s.duration, s.measurement) for s in again] == [
        (s.id, s.type, s.duration, s.measurement) for s in specs
    ]
    yaml_again = referential.parse_yaml(referential.export_yaml(rules))
    assert yaml_again == specs


def test_import_shipped_through_the_api_and_export(api: Api) -> None:
    text = referential.SHIPPED_DIR.joinpath("communal-schedule.yaml").read_text(encoding="utf-8")
    response = api.client.put("/api/v1/rules", content=text.encode(),
                              headers={**api.auth(), "Content-Type": "application/yaml"})
    assert response.status_code == 200, response.text
    assert response.json()["total"] >= 40
    listed = api.client.get("/api/v1/rules", headers=api.auth()).json()
    assert any(r["meta"] and r["meta"].get("confidence") for r in listed)
    csv_text = api.client.get("/api/v1/rules",
                              headers={**api.auth(), "Accept": "text/csv"}).text
    assert csv_text.startswith("RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,")


def test_duration_below_minimum_is_refused_and_alerted(api: Api) -> None:
    rigged = TEST_RULES_CSV.replace("APP-5Y,AppraisalRule,Dossiers 5 ans,\"Durée "
                                    "d'utilité administrative de 5 ans\",5,YEAR",
                                    "APP-5Y,AppraisalRule,Dossiers 5 ans,,0,DAY")
    assert rigged != TEST_RULES_CSV
    response = api.client.put("/api/v1/rules", content=rigged.encode(),
                              headers={**api.auth(), "Content-Type": "text/csv"})
    assert response.status_code == 422
    assert response.json()["code"] == "rules.duration_below_minimum"
    alerts = events(api, "rules.minimum_duration_alert")
    assert len(alerts) == 1
    assert alerts[0].payload["rules"][0]["rule_id"] == "APP-5Y"
    rules = {r["id"]: r for r in api.client.get("/api/v1/rules", headers=api.auth()).json()}
    assert rules["APP-5Y"]["duration"] == 5  # nothing was replaced


def test_minimum_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_RETENTION_MIN_DURATIONS", '{"AppraisalRule": "10 YEAR"}')
    from sae.retention.config import retention_settings

    short = referential.below_minimum(referential.parse_csv(TEST_RULES_CSV),
                                      retention_settings().min_durations)
    assert [r["rule_id"] for r in short] == ["APP-5Y"]


def test_rule_in_use_cannot_be_deleted(api: Api, clock: object) -> None:
    assert api.deposit(dossier_sip("MSG-USE")).status_code == 201
    without = "\n".join(line for line in TEST_RULES_CSV.splitlines()
                        if not line.startswith("APP-5Y")) + "\n"
    response = api.client.put("/api/v1/rules", content=without.encode(),
                              headers={**api.auth(), "Content-Type": "text/csv"})
    assert response.status_code == 409
    assert response.json()["code"] == "rules.rule_in_use"
    assert response.json()["rules"] == ["APP-5Y"]


def test_changed_rule_recomputes_end_dates_of_every_unit_using_it(api: Api) -> None:
    response = api.deposit(dossier_sip("MSG-RECOMPUTE", start=date(2024, 1, 1)))
    ids = [u["id"] for u in response.json()["units"]]
    longer = TEST_RULES_CSV.replace("5 ans\",5,YEAR", "5 ans\",7,YEAR")
    assert longer != TEST_RULES_CSV
    summary = api.client.put("/api/v1/rules", content=longer.encode(),
                             headers={**api.auth(), "Content-Type": "text/csv"}).json()
    assert summary["changed"] == 1
    assert summary["recomputed_units"] == len(ids) == 3  # the file and its two pieces
    assert summary["warnings"]
    with api.runtime.sessions() as session:
        ends = set(session.scalars(select(UnitComputedRule.end_date).where(
            UnitComputedRule.unit_id.in_(ids), UnitComputedRule.category == "AppraisalRule")))
    assert ends == {date(2031, 1, 1)}
    recomputed = events(api, "rules.end_dates_recomputed")
    payload = dict(recomputed[-1].payload)
    computed_at = payload.pop("computed_at")  # the rows' time, for the replay of a rebuild
    assert payload == {"rules": ["APP-5Y"], "units": 3}
    with api.runtime.sessions() as session:
        stamps = set(session.scalars(select(UnitComputedRule.computed_at).where(
            UnitComputedRule.unit_id.in_(ids))))
    assert {s.isoformat() for s in stamps} == {computed_at}
    # The storage locks follow (extended, never shortened).
    with api.runtime.sessions() as session:
        keys = list(session.scalars(select(ObjectCopy.key).join(
            DataObject, DataObject.id == ObjectCopy.object_id).join(
            ArchiveUnit, ArchiveUnit.data_object_group_id == DataObject.group_id).where(
            ArchiveUnit.id.in_(ids))))
    assert keys
    for offer in api.runtime.offer_set.offers.values():
        for key in keys:
            head = offer.head(key)
            assert head is not None
            assert head.retain_until == datetime(2031, 1, 1, 23, 59, 59, tzinfo=UTC)
    # And so does the lock of the transfer's description, which must outlive its objects.
    record = transfer_record_key(response.json()["transfer_id"])
    for offer in api.runtime.offer_set.offers.values():
        head = offer.head(record)
        assert head is not None
        assert head.retain_until == datetime(2031, 1, 1, 23, 59, 59, tzinfo=UTC)


def _dry_run(api: Api, csv_text: str) -> dict[str, object]:
    response = api.client.put(
        "/api/v1/rules",
        params={"dry_run": "true"},
        content=csv_text.encode(),
        headers={**api.auth(), "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _computed(api: Api) -> list[tuple[str, str, date | None]]:
    with api.runtime.sessions() as session:
        return sorted(
            (r.unit_id, r.category, r.end_date) for r in session.scalars(select(UnitComputedRule))
        )


def test_a_dry_run_previews_the_import_without_writing(api: Api) -> None:
    response = api.deposit(dossier_sip("MSG-PREVIEW", start=date(2024, 1, 1)))
    ids = {u["id"] for u in response.json()["units"]}
    before = _computed(api)
    leaves = len(events(api, "rules.imported"))
    longer = (
        TEST_RULES_CSV.replace('5 ans",5,YEAR', '5 ans",7,YEAR').replace(
            "APP-10Y,AppraisalRule,Dossiers 10 ans,,10,YEAR\n", ""
        )
        + "APP-2Y,AppraisalRule,Deux ans,,2,YEAR\nACC-50Y,AccessRule,Vie privée,,50,YEAR\n"
    )
    longer = longer.replace("ACC-50Y,AccessRule,Vie privée 50 ans,,50,YEAR\n", "", 1)
    preview = _dry_run(api, longer)
    assert preview["added"] == ["APP-2Y"]
    assert preview["removed"] == ["APP-10Y"]
    changed = {c["id"]: c for c in preview["changed"]}  # type: ignore[union-attr]
    assert changed["APP-5Y"]["before"] == "5 YEAR"
    assert changed["APP-5Y"]["after"] == "7 YEAR"
    assert changed["APP-5Y"]["dates_change"] is True
    assert changed["ACC-50Y"]["dates_change"] is False  # only its label changed
    assert preview["refusals"] == []
    assert preview["units_changed"] == 3  # the file and its two pieces (inherited)
    sample = preview["sample"]
    assert isinstance(sample, list)
    assert {u["unit_id"] for u in sample} == ids
    assert {(u["category"], u["before"], u["after"]) for u in sample} == {
        ("AppraisalRule", "2029-01-01", "2031-01-01")
    }
    # Nothing written, nothing journaled.
    assert _computed(api) == before
    assert len(events(api, "rules.imported")) == leaves
    rules = api.client.get("/api/v1/rules", headers=api.auth()).json()
    assert {r["id"]: r["duration"] for r in rules}["APP-5Y"] == 5
    # The import itself then does what the preview said.
    summary = api.client.put(
        "/api/v1/rules", content=longer.encode(), headers={**api.auth(), "Content-Type": "text/csv"}
    ).json()
    assert summary["recomputed_units"] == preview["units_changed"]
    assert summary["added"] == 1
    assert summary["removed"] == 1


def test_a_dry_run_names_the_refusals(api: Api) -> None:
    assert api.deposit(dossier_sip("MSG-PREVIEW-KO")).status_code == 201
    without = (
        "\n".join(line for line in TEST_RULES_CSV.splitlines() if not line.startswith("APP-5Y"))
        + "\nAPP-1D,AppraisalRule,Un jour,,1,DAY\n"
    )
    preview = _dry_run(api, without)
    refusals = preview["refusals"]
    assert isinstance(refusals, list)
    assert any(r.startswith("APP-5Y") for r in refusals)
    assert any(r.startswith("APP-1D") for r in refusals)  # below the 4-month minimum
    assert events(api, "rules.minimum_duration_alert") == []  # a preview alerts nobody
    # A label-only change of a used rule recomputes nothing.
    relabelled = TEST_RULES_CSV.replace("Dossiers 5 ans", "Dossiers de cinq ans")
    quiet = _dry_run(api, relabelled)
    assert quiet["units_changed"] == 0
    assert quiet["changed"] == [
        {"id": "APP-5Y", "before": "5 YEAR", "after": "5 YEAR", "dates_change": False, "used": True}
    ]
