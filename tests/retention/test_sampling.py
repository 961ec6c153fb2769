"""Sampling (tri) of social files: deterministic, documented, visible before approval."""

from __future__ import annotations

from datetime import date

from sae.retention.disposal import one_in_by_population
from tests.conftest import Api
from tests.retention.helpers import Clock, dossier_sip

RULES = """defaults: {type: AppraisalRule, measurement: YEAR}
rules:
  - {id: APP-SOCIAL, value: "Dossier d'aide sociale facultative", duration: 10,
     final_action: Sample, sampling: {first_year_kept: true, one_in: 3},
     legal_reference: "AD Var CCAS 2015", confidence: secondary}
  - {id: APP-5Y, value: "5 ans", duration: 5}
  - {id: ACC-00001, type: AccessRule, value: libre, duration: 0}
"""


def test_population_table() -> None:
    assert [one_in_by_population(p) for p in (2_000, 5_000, 45_000, 100_000, 400_000)] == [
        1, 5, 10, 20, 50]


def test_first_year_then_one_in_n_in_a_reproducible_order(api: Api, clock: Clock) -> None:
    response = api.client.put("/api/v1/rules", content=RULES.encode(),
                              headers={**api.auth(), "Content-Type": "application/yaml"})
    assert response.status_code == 200, response.text
    clock.set(date(2010, 1, 1))
    starts = [date(2001, 3, 1), date(2001, 9, 1), date(2002, 1, 1), date(2002, 5, 1),
              date(2003, 1, 1), date(2003, 6, 1), date(2004, 1, 1), date(2004, 2, 1)]
    titles = {}
    for n, start in enumerate(starts):
        units = api.deposit(dossier_sip(f"MSG-S{n}", rule="APP-SOCIAL", start=start, pieces=0,
                                        title=f"Dossier {n}", producer="CCAS")).json()["units"]
        titles[units[0]["id"]] = (n, start)
    clock.set(date(2020, 6, 1))
    body = api.client.post("/api/v1/disposal-lists", headers=api.auth(),
                           json={"final_action": "Destroy"}).json()
    lines = {ln["unit_id"]: ln for ln in body["lines"]}
    assert set(lines) == set(titles)
    kept = sorted(titles[u][0] for u, ln in lines.items() if ln["state"] == "sampled")
    # 2001 is the first year of the measure: both kept; then ranks 1, 4 of the six others.
    assert kept == [0, 1, 2, 5]
    for uid, line in lines.items():
        assert line["sampling_note"]
        if line["state"] == "sampled" and titles[uid][1].year == 2001:
            assert "première année" in line["sampling_note"]
    csv_text = api.client.get(f"/api/v1/disposal-lists/{body['id']}/bordereau?format=csv",
                              headers=api.auth()).text
    assert csv_text.count("Conservation (échantillon)") == 4
