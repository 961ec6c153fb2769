"""Retention fixtures: a test-controlled clock read by every retention step."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.retention.helpers import Clock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """``sae.db.utcnow`` under the test's control (retention reads the clock only there)."""
    c = Clock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    monkeypatch.setattr("sae.db.utcnow", c)
    return c


