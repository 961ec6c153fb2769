"""``/health`` stops spending time-stamps; the external TSA's authentication and policy
(issue #18 item 7). Against the real ``openssl ts`` TSA behind a real Basic-auth HTTP front."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import sae.journal.keys
from sae.config import Settings
from sae.journal.errors import TimestampInvalid, TsaUnavailable
from sae.journal.keys import http_tsa, tsa_health
from tests.journal.conftest import ExternalTSA, free_port

FRONT = Path(__file__).with_name("tsa_basic_front.py")
OPENSSL_TS_POLICY = "1.3.6.1.4.1.99999.1.1"  # make_tsa.sh's default_policy


@dataclass
class Front:
    url: str
    counts: Path

    @property
    def tokens(self) -> int:
        return len(self.counts.read_text().splitlines()) if self.counts.exists() else 0


@pytest.fixture
def front(external_tsa: ExternalTSA, tmp_path: Path) -> Iterator[Front]:
    port = free_port()
    counts = tmp_path / "tokens"
    process = subprocess.Popen(  # noqa: S603 - our own helper
        [sys.executable, str(FRONT), str(port), external_tsa.url, "sae", "s3cret", str(counts)]
    )
    url = f"http://127.0.0.1:{port}/tsa"
    try:
        for _ in range(100):
            try:
                httpx.post(url, content=b"", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield Front(url, counts)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    sae.journal.keys.forget_journal_keys()
    sae.journal.keys._checks.clear()
    yield
    sae.journal.keys.forget_journal_keys()
    sae.journal.keys._checks.clear()


def _external(settings: Settings, front: Front, tsa: ExternalTSA, **more: object) -> Settings:
    values: dict[str, object] = {
        "tsa_url": front.url,
        "tsa_ca_file": tsa.root,
        "tsa_chain_file": tsa.chain,
        "tsa_username": "sae",
        "tsa_password": "s3cret",
        "tsa_policy_oid": OPENSSL_TS_POLICY,
    }
    values.update(more)
    return Settings(**{**settings.model_dump(), **values})


def test_health_spends_one_token_per_period(
    settings: Settings, front: Front, external_tsa: ExternalTSA
) -> None:
    from sae.app import create_app

    configured = _external(settings, front, external_tsa)
    with TestClient(create_app(configured), raise_server_exceptions=False) as client:
        before = front.tokens
        bodies = [client.get("/health").json() for _ in range(12)]
        assert all(b["tsa"]["ok"] for b in bodies), bodies[0]
        assert front.tokens - before <= 1, "each /health call bought a time-stamp"
        assert "checked at" in bodies[-1]["tsa"]["detail"]
        # A seal's verified token counts as a check too.
        from sae.journal.sealing import seal_now

        sae.journal.keys._checks.clear()
        seal_now(client.app.state.runtime.sessions, configured, wait=True)
        sealed = front.tokens
        assert client.get("/health").json()["tsa"]["ok"]
        assert front.tokens == sealed
    # After the period, the next call asks again (once).
    key = sae.journal.keys._config_key(configured)
    last = sae.journal.keys._checks[key]
    sae.journal.keys._checks[key] = sae.journal.keys.TsaCheck(
        last.ok, last.detail, last.at - configured.tsa_check_minutes * 60 * _second()
    )
    ok, _ = tsa_health(configured)
    ok2, _ = tsa_health(configured)
    assert ok
    assert ok2
    assert front.tokens == sealed + 1


def _second():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.timedelta(seconds=1)


def test_basic_auth_and_policy(settings: Settings, front: Front, external_tsa: ExternalTSA) -> None:
    good = http_tsa(_external(settings, front, external_tsa))
    token = good.timestamp(b"a checkpoint")
    assert token.tsr
    assert front.tokens == 1

    wrong_password = http_tsa(_external(settings, front, external_tsa, tsa_password="nope"))
    with pytest.raises(TsaUnavailable) as refused:
        wrong_password.timestamp(b"a checkpoint")
    assert "refused SAE's credentials (HTTP 401)" in refused.value.detail
    assert "nope" not in refused.value.detail

    other_policy = http_tsa(_external(settings, front, external_tsa, tsa_policy_oid="1.2.3.4"))
    with pytest.raises(TimestampInvalid) as wrong:
        other_policy.timestamp(b"a checkpoint")
    assert wrong.value.check == "policy"
    assert OPENSSL_TS_POLICY in wrong.value.detail

    # /health reports the refusal, with the code, and no secret.
    ok, detail = tsa_health(_external(settings, front, external_tsa, tsa_password="nope"))
    assert not ok
    assert "journal.tsa_unavailable" in detail
    assert "nope" not in detail


def test_secrets_are_not_in_the_settings_repr(settings: Settings, tmp_path: Path) -> None:
    configured = Settings(
        **{
            **settings.model_dump(),
            "tsa_username": "u",
            "tsa_password": "pw-123",
        }
    )
    text = repr(configured) + str(configured.model_dump())
    bearer = Settings(**{**settings.model_dump(), "tsa_bearer_token": "tk-456"})
    text += repr(bearer) + str(bearer.model_dump())
    assert "pw-123" not in text
    assert "tk-456" not in text
