"""Retention fixtures: a test-controlled clock read by every retention step."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import Api
from tests.retention.helpers import Clock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """``sae.db.utcnow`` under the test's control (retention reads the clock only there)."""
    c = Clock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    monkeypatch.setattr("sae.db.utcnow", c)
    return c


@pytest.fixture
def api(api: Api) -> Api:
    """The shared ``api``, with tree heads sealed inline after each deposit.

    These tests deposit many SIPs back to back; the background sealer's commits then race the
    next deposit's transaction on SQLite ("database is locked", reported to the lead). Sealing
    inline is the path the ingest route takes when no sealer runs, so nothing is skipped.
    """
    sealer = api.runtime.extras.pop("sealer", None)
    if sealer is not None:
        sealer.stop()
    return api
