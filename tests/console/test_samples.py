"""Real SIPs from other tools (../shared/seda-samples) through the console's deposit form: the
accepted ones render every unit page; the refused ones show their fault in plain French."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sae.console.format import FAULTS
from tests.conftest import Api
from tests.console.helpers import deposit_form, signed_in
from tests.ingest.test_samples import ACCEPTED, REFUSED, SAMPLE_RULES_CSV


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_samples_render_every_unit(api: Api, samples_dir: Path, name: str) -> None:
    api.load_rules(SAMPLE_RULES_CSV)
    client = signed_in(api)
    answer = deposit_form(client, (samples_dir / name).read_bytes(), filename=name)
    assert answer.status_code == 303, answer.text
    page = client.get(answer.headers["location"]).text
    assert "Versement accepté" in page
    unit_links = sorted(set(re.findall(r'href="(/console/unites/[^"]+)"', page)))
    assert unit_links
    for link in unit_links[:30]:
        unit = client.get(link)
        assert unit.status_code == 200, link
        assert "Toute la description fournie par le producteur" in unit.text
        assert "Règles de gestion et échéances" in unit.text


@pytest.mark.parametrize(("name", "code"), sorted(REFUSED.items()))
def test_refused_samples_explain_their_fault_in_french(
    api: Api, samples_dir: Path, name: str, code: str
) -> None:
    client = signed_in(api)
    answer = deposit_form(client, (samples_dir / name).read_bytes(), filename=name)
    assert answer.status_code == 303, answer.text
    page = client.get(answer.headers["location"]).text
    assert "Ce versement a été refusé" in page
    expected = FAULTS[code].replace("'", "&#39;")
    assert expected in page, code
