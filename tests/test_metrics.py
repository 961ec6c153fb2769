"""GET /metrics: access, counters moved by deposits and refusals, gauges read at scrape time,
and counters shared by the worker processes of a real `sae serve --workers 2`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.conftest import TEST_RULES_CSV, Api
from tests.sipfactory import build_zip, simple_sip
from tests.test_app import _free_port, _healthy

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(api: Api, token: str | None = None) -> Samples:
    response = api.client.get("/metrics", headers=api.auth(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_metrics_token_or_an_admin_token(api: Api) -> None:
    assert api.client.get("/metrics").status_code == 401
    reader = api.token("reader")
    forbidden = api.client.get("/metrics", headers=api.auth(reader))
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "auth.role_forbidden"
    assert api.client.get("/metrics", headers=api.auth("sae_nope")).status_code == 401
    assert api.client.get("/metrics", headers=api.auth()).status_code == 200
    secret = "metrics-scraper-secret-0123456789"  # noqa: S105 - a test's token
    api.runtime.settings.metrics_token = SecretStr(secret)
    assert api.client.get("/metrics", headers=api.auth(secret)).status_code == 200


def test_counters_move_after_a_deposit_and_a_refusal(api: Api) -> None:
    before = scrape(api)
    payload = b"%PDF-1.4\n" + b"metrics " * 500 + b"\n%%EOF\n"
    accepted = api.deposit(build_zip(simple_sip("MSG-METRICS-1", payload=payload)))
    assert accepted.status_code == 201, accepted.text
    refused = api.deposit(b"this is not a zip file")
    assert refused.status_code in (400, 422), refused.text
    reason = refused.json()["errors"][0]["code"]
    after = scrape(api)

    assert value(after, "sae_transfers_accepted_total") == (
        value(before, "sae_transfers_accepted_total") + 1
    )
    assert value(after, "sae_ingested_bytes_total") - value(
        before, "sae_ingested_bytes_total"
    ) == len(payload)
    assert value(after, "sae_transfers_refused_total", reason=reason) == (
        value(before, "sae_transfers_refused_total", reason=reason) + 1
    )
    for outcome in ("accepted", "refused"):
        assert value(after, "sae_ingest_duration_seconds_count", outcome=outcome) == (
            value(before, "sae_ingest_duration_seconds_count", outcome=outcome) + 1
        )
    # The same MessageIdentifier again: refused with the error's code.
    again = api.deposit(build_zip(simple_sip("MSG-METRICS-1", payload=payload)))
    assert again.status_code == 409
    code = again.json()["code"]
    final = scrape(api)
    assert value(final, "sae_transfers_refused_total", reason=code) == (
        value(after, "sae_transfers_refused_total", reason=code) + 1
    )


def test_gauges_describe_the_archive(api: Api) -> None:
    accepted = api.deposit(build_zip(simple_sip("MSG-METRICS-2", payload=b"%PDF-1.4\nx\n")))
    assert accepted.status_code == 201
    api.runtime.sealer.stop()  # the pending head is sealed before it stops
    samples = scrape(api)
    assert value(samples, "sae_offer_up", offer="local") == 1
    assert value(samples, "sae_database_up") == 1
    assert value(samples, "sae_journal_size") > 0
    assert value(samples, "sae_journal_sealed_size") == value(samples, "sae_journal_size")
    assert 0 <= value(samples, "sae_journal_sealed_age_seconds") < 120
    assert ("sae_quarantine_copies", ()) in samples
    assert ("sae_quarantine_overdue_copies", ()) in samples
    assert value(samples, "sae_audit_copies_damaged_total", kind="corrupt") == 0
    assert ("sae_audit_copies_checked_total", ()) in samples
    assert value(samples, "sae_alerts_active", condition="copy_damaged") == 0
    assert value(samples, "sae_tsa_up") == 1  # the seal's token counted as a check
    # Labels never carry a record's identity.
    names = {label for _, labels in samples for label, _ in labels}
    assert names <= {"offer", "reason", "outcome", "kind", "condition", "version", "le"}


def test_workers_share_their_counters(tmp_path: Path) -> None:
    """Two `sae serve` worker processes: every scrape, whichever answers, counts every
    deposit (prometheus_client's multiprocess files under $SAE_DATA_DIR/metrics)."""
    port = _free_port()
    env = {
        **os.environ,
        "SAE_DATA_DIR": str(tmp_path / "sae-data"),
        "SAE_PORT": str(port),
        "SAE_WORKERS": "2",
        "SAE_METRICS_TOKEN": "scrape-token-for-the-test-0123",
    }
    for name in ("SAE_OFFERS_FILE", "SAE_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sae", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _healthy(proc, port, 60)
        admin = (tmp_path / "sae-data" / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=base, timeout=30) as client:
            answer = client.put(
                "/api/v1/rules",
                content=TEST_RULES_CSV.encode(),
                headers={**auth, "Content-Type": "text/csv"},
            )
            assert answer.status_code == 200, answer.text
            for n in range(4):
                # A new connection each time: the kernel spreads them over the workers.
                response = httpx.post(
                    f"{base}/api/v1/transfers",
                    content=build_zip(simple_sip(f"MSG-WORKERS-{n}", payload=b"%PDF-1.4\n")),
                    headers={**auth, "Content-Type": "application/zip"},
                    timeout=30,
                )
                assert response.status_code == 201, response.text
            # New connections each time: the scrapes are spread over the workers too, and
            # each must count the deposits whichever worker took them.
            for _ in range(8):
                with httpx.Client(base_url=base, timeout=10) as fresh:
                    scraped = fresh.get(
                        "/metrics",
                        headers={"Authorization": "Bearer scrape-token-for-the-test-0123"},
                    )
                assert scraped.status_code == 200, scraped.text
                assert value(parse(scraped.text), "sae_transfers_accepted_total") == 4
            files = list((tmp_path / "sae-data" / "metrics").glob("*.db"))
            assert files, "the workers keep their counters in the metrics directory"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
