"""SEDA rule semantics: inheritance down the unit graph, with expected end dates."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from sae.retention import compute
from sae.retention.models import Rule, UnitComputedRule
from tests.conftest import Api
from tests.sipfactory import FileSpec, RuleSpec, SipSpec, UnitSpec, build_zip

REFERENTIAL = {
    "APP-5Y": Rule(id="APP-5Y", type="AppraisalRule", value="5", duration=5, measurement="YEAR"),
    "APP-10Y": Rule(id="APP-10Y", type="AppraisalRule", value="10", duration=10,
                    measurement="YEAR"),
    "APP-18M": Rule(id="APP-18M", type="AppraisalRule", value="18m", duration=18,
                    measurement="MONTH"),
    "APP-UNL": Rule(id="APP-UNL", type="AppraisalRule", value="unl", duration=None,
                    measurement=None),
    "HOL-1": Rule(id="HOL-1", type="HoldRule", value="gel", duration=None, measurement=None),
}


def block(*refs: tuple[str, str | None], final: str | None = None, prevent: bool = False,
          drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "rules": [{"rule_id": r, "start_date": s} for r, s in refs],
        "final_action": final,
        "prevent_inheritance": prevent,
        "ref_non_rule_ids": list(drop),
    }


def run(declared: dict[str, dict[str, Any]], parents: dict[str, list[str]],
        defaults: dict[str, dict[str, Any]] | None = None,
        category: str = "AppraisalRule") -> dict[str, compute.CategoryResult]:
    units = set(declared) | set(parents) | {p for ps in parents.values() for p in ps}
    order = compute.topological(sorted(units), parents)
    return compute.compute_category(category, order, declared, parents, defaults or {},
                                    REFERENTIAL)


def test_end_date_is_start_plus_duration_and_month_arithmetic_clamps() -> None:
    out = run({"A": {"AppraisalRule": block(("APP-5Y", "2020-02-29"), final="Destroy")},
               "B": {"AppraisalRule": block(("APP-18M", "2023-08-31"), final="Destroy")}}, {})
    assert out["A"].end == date(2025, 2, 28)
    assert out["B"].end == date(2025, 2, 28)
    assert compute.add_duration(date(2024, 1, 1), 10, "DAY") == date(2024, 1, 11)


def test_no_start_date_or_unlimited_means_no_end() -> None:
    out = run({"A": {"AppraisalRule": block(("APP-5Y", None))},
               "B": {"AppraisalRule": block(("APP-UNL", "2020-01-01"))},
               "C": {"AppraisalRule": block(("APP-5Y", "2000-01-01"), ("APP-UNL", "2000-01-01"))}},
              {})
    assert out["A"].end is None
    assert out["B"].end is None
    assert out["C"].end is None  # one rule without an end date: the category has none


def test_children_inherit_and_local_rules_add_latest_end_wins() -> None:
    out = run(
        {"root": {"AppraisalRule": block(("APP-5Y", "2010-01-01"), final="Destroy")},
         "child": {"AppraisalRule": block(("APP-10Y", "2010-06-01"), final="Keep")}},
        {"child": ["root"], "grandchild": ["child"]},
    )
    assert {r.rule_id for r in out["child"].rules} == {"APP-5Y", "APP-10Y"}
    assert out["child"].end == date(2020, 6, 1)
    assert out["child"].final_actions == {"Keep"}  # a local property wins
    assert out["grandchild"].end == date(2020, 6, 1)
    assert out["grandchild"].final_actions == {"Keep"}


def test_same_rule_id_redeclared_masks_the_parents() -> None:
    out = run(
        {"root": {"AppraisalRule": block(("APP-5Y", "2010-01-01"), final="Destroy")},
         "child": {"AppraisalRule": block(("APP-5Y", "2015-01-01"))}},
        {"child": ["root"]},
    )
    assert [r.start_date for r in out["child"].rules] == [date(2015, 1, 1)]
    assert out["child"].end == date(2020, 1, 1)
    assert out["child"].final_actions == {"Destroy"}


def test_prevent_inheritance_drops_everything_inherited() -> None:
    out = run(
        {"root": {"AppraisalRule": block(("APP-10Y", "2010-01-01"), final="Keep")},
         "child": {"AppraisalRule": block(("APP-5Y", "2012-01-01"), final="Destroy",
                                          prevent=True)}},
        {"child": ["root"], "leaf": ["child"]},
    )
    assert [r.rule_id for r in out["child"].rules] == ["APP-5Y"]
    assert out["child"].end == date(2017, 1, 1)
    assert out["leaf"].end == date(2017, 1, 1)
    assert out["leaf"].final_actions == {"Destroy"}


def test_ref_non_rule_id_drops_only_the_named_rule() -> None:
    out = run(
        {"root": {"AppraisalRule": block(("APP-10Y", "2010-01-01"), ("APP-5Y", "2010-01-01"),
                                         final="Destroy")},
         "child": {"AppraisalRule": block(drop=("APP-10Y",))}},
        {"child": ["root"]},
    )
    assert [r.rule_id for r in out["child"].rules] == ["APP-5Y"]
    assert out["child"].end == date(2015, 1, 1)
    assert out["child"].final_actions == {"Destroy"}


def test_several_parents_rules_are_merged_and_conflicting_actions_kept() -> None:
    out = run(
        {"p1": {"AppraisalRule": block(("APP-5Y", "2010-01-01"), final="Destroy")},
         "p2": {"AppraisalRule": block(("APP-10Y", "2011-01-01"), final="Keep")}},
        {"shared": ["p1", "p2"]},
    )
    assert {r.rule_id for r in out["shared"].rules} == {"APP-5Y", "APP-10Y"}
    assert out["shared"].end == date(2021, 1, 1)
    assert out["shared"].final_actions == {"Destroy", "Keep"}  # both stored → Keep wins


def test_roots_inherit_the_transfer_defaults() -> None:
    defaults = {"root": {"AppraisalRule": block(("APP-5Y", "2001-01-01"), final="Destroy")}}
    out = run({"root": {}}, {"child": ["root"]}, defaults)
    assert out["child"].end == date(2006, 1, 1)
    assert out["child"].final_actions == {"Destroy"}


def test_hold_rule_without_duration_ends_at_hold_end_date_or_never() -> None:
    declared = {
        "A": {"HoldRule": {"rules": [{"rule_id": "HOL-1", "start_date": "2020-01-01",
                                      "hold_end_date": "2030-01-01"}]}},
        "B": {"HoldRule": {"rules": [{"rule_id": "HOL-1", "start_date": "2020-01-01"}]}},
    }
    out = run(declared, {}, category="HoldRule")
    assert out["A"].rules[0].end_date == date(2030, 1, 1)
    assert out["B"].rules[0].end_date is None


def test_catalogue_materialises_inherited_end_dates(api: Api) -> None:
    """Ingest a graph with a unit under two parents; the indexed table has the expected dates."""
    spec = SipSpec(
        message_id="MSG-GRAPH",
        producer="FINANCES",
        transferring="FINANCES",
        files=[FileSpec(uri="Content/a.pdf", data=b"%PDF-1.4\n%a\n%%EOF\n")],
        units=[
            UnitSpec(id="AU-P1", title="P1", level="File",
                     rules=[RuleSpec("AppraisalRule", "APP-5Y", date(2010, 1, 1), "Destroy")],
                     children=[UnitSpec(id="AU-SHARED", title="Shared", files=[0])]),
            UnitSpec(id="AU-P2", title="P2", level="File",
                     rules=[RuleSpec("AppraisalRule", "APP-10Y", date(2011, 1, 1), "Destroy")],
                     refs=["AU-SHARED"]),
            UnitSpec(id="AU-P3", title="P3", level="File",
                     rules=[RuleSpec("AppraisalRule", "APP-10Y", date(2011, 1, 1), "Destroy",
                                     prevent_inheritance=True)],
                     children=[UnitSpec(id="AU-ALONE", title="Alone",
                                        rules=[RuleSpec("AppraisalRule", "APP-5Y",
                                                        date(2012, 1, 1), "Destroy",
                                                        prevent_inheritance=True)])]),
        ],
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    ids = {u["title"]: u["id"] for u in response.json()["units"]}
    with api.runtime.sessions() as session:
        rows = {
            row.unit_id: row for row in session.scalars(
                select(UnitComputedRule).where(UnitComputedRule.category == "AppraisalRule"))
        }
    assert rows[ids["P1"]].end_date == date(2015, 1, 1)
    assert rows[ids["Shared"]].end_date == date(2021, 1, 1)
    assert sorted(r["rule_id"] for r in rows[ids["Shared"]].rules) == ["APP-10Y", "APP-5Y"]
    assert rows[ids["Shared"]].final_action == "Destroy"
    assert rows[ids["Alone"]].end_date == date(2017, 1, 1)
    unit = api.client.get(f"/api/v1/units/{ids['Shared']}", headers=api.auth()).json()
    assert unit["appraisal_end"] == "2021-01-01"


def test_end_dates_written_at_ingest_are_those_the_catalogue_gives_back(api: Api) -> None:
    """Ingest computes the end dates of its new units from what it holds (no reading back);
    recomputing them from the catalogue (``refresh_units``) must give exactly the same rows:
    several parents, transfer defaults, prevent-inheritance, RefNonRuleId, several categories."""
    from sae.retention import dates

    spec = SipSpec(
        message_id="MSG-SAME-DATES",
        producer="FINANCES",
        transferring="FINANCES",
        files=[FileSpec(uri=f"Content/{n}.pdf", data=b"%PDF-1.4\n%" + n.encode() + b"\n%%EOF\n")
               for n in ("a", "b", "c")],
        default_rules=[RuleSpec("AccessRule", "ACC-25Y", date(2015, 6, 1)),
                       RuleSpec("AppraisalRule", "APP-10Y", date(2009, 1, 1), "Keep")],
        units=[
            UnitSpec(id="AU-R1", title="R1", level="File",
                     rules=[RuleSpec("AppraisalRule", "APP-5Y", date(2010, 1, 1), "Destroy")],
                     children=[UnitSpec(id="AU-S", title="S", files=[0]),
                               UnitSpec(id="AU-T", title="T", files=[1],
                                        rules=[RuleSpec("AccessRule", "ACC-50Y",
                                                        date(2001, 2, 3),
                                                        ref_non_rule_ids=["ACC-25Y"])])]),
            UnitSpec(id="AU-R2", title="R2", level="File",
                     rules=[RuleSpec("AppraisalRule", "APP-10Y", date(2011, 1, 1), "Destroy",
                                     prevent_inheritance=True)],
                     refs=["AU-S", "AU-T"],
                     children=[UnitSpec(id="AU-U", title="U", files=[2])]),
            UnitSpec(id="AU-R3", title="R3", level="File"),
        ],
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    unit_ids = [u["id"] for u in response.json()["units"]]

    def stored() -> list[tuple[Any, ...]]:
        with api.runtime.sessions() as session:
            return sorted(
                (r.unit_id, r.category, r.end_date, r.unbounded, r.final_action, str(r.rules))
                for r in session.scalars(
                    select(UnitComputedRule).where(UnitComputedRule.unit_id.in_(unit_ids))
                )
            )

    at_ingest = stored()
    assert {row[1] for row in at_ingest} == {"AccessRule", "AppraisalRule"}
    with api.runtime.sessions() as session:
        dates.refresh_units(session, unit_ids)
        session.commit()
    assert stored() == at_ingest
