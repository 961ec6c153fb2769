"""Schemathesis over ``/openapi.json`` against a running ``sae serve``: zero 5xx, and every
response matches the schema the document declares for it.

Bounded for CI: ``SAE_FUZZ_API_EXAMPLES`` examples per operation (default 15). Requests are made
as admin (the widest view), on an archive holding one deposited transfer, so that reads of units,
objects and transfers meet real rows as well as random identifiers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.conftest import TEST_RULES_CSV
from tests.crash.harness import ServerProcess
from tests.sipfactory import build_zip, simple_sip

pytestmark = pytest.mark.timeout(900)

EXAMPLES = int(os.environ.get("SAE_FUZZ_API_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("openapi-fuzz")
    server = ServerProcess(root / "sae-data")
    server.start()
    try:
        with server.client() as c:
            r = c.put(
                "/api/v1/rules",
                content=TEST_RULES_CSV.encode(),
                headers={"Content-Type": "text/csv"},
            )
            assert r.status_code == 200, r.text
            r = c.post(
                "/api/v1/transfers",
                content=build_zip(simple_sip("FUZZ-API-1")),
                headers={"Content-Type": "application/zip"},
            )
            assert r.status_code == 201, r.text
        yield server
    finally:
        server.stop()


def test_api_never_5xx_and_matches_its_schema(live_server: ServerProcess) -> None:
    # Schemathesis' pytest plugin does not run under pytest 9 (it reads Function._nodeid), so
    # each operation's strategy is driven by hypothesis directly.
    api = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    headers = live_server.headers()
    failures: list[str] = []
    operations = 0
    calls = 0
    statuses: dict[int, int] = {}

    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=live_server.url, headers=headers, timeout=60)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(
                response,
                checks=[not_a_server_error, response_schema_conformance],
                headers=headers,
            )

        try:
            run()
        except Exception as exc:  # one operation's failure must not hide the others'
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:3000])
    assert operations > 10, f"only {operations} operations in /openapi.json"
    print(
        f"openapi fuzz: {operations} operations, {calls} calls, {len(failures)} failing; "
        f"statuses {sorted(statuses.items())}"
    )
    assert not failures, "\n\n".join(failures)


HUGE = "399322774015709675520"  # beyond 64 bits: SQLite cannot bind it

# Inputs schemathesis found (or that follow from what it found), replayed on every run.
FOUND = [
    f"/api/v1/journal/events?after=-{HUGE}",
    f"/api/v1/journal/events?after={HUGE}",
    f"/api/v1/journal/heads/{HUGE}",
    f"/api/v1/journal/heads/{HUGE}/tst",
    f"/api/v1/journal/consistency?first=1&second={HUGE}",
    f"/api/v1/units?cursor={HUGE}",
    "/api/v1/units?date_from=2342-02-25T13%3A51%3A40.39Z",
    "/api/v1/units?q=%F1%81%83%A5%00",
]


@pytest.mark.parametrize("url", FOUND)
def test_found_inputs_are_not_a_5xx(live_server: ServerProcess, url: str) -> None:
    with live_server.client() as c:
        response = c.get(url)
    assert response.status_code < 500, (url, response.status_code, response.text[:300])
