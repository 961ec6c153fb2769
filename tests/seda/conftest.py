"""Fixtures of the seda tests (the XSD folder and samples fixtures come from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import seda

from .helpers import Sample, load_index


@pytest.fixture(scope="session")
def index(samples_dir: Path) -> list[Sample]:
    return load_index(samples_dir)


@pytest.fixture(scope="session")
def validator(xsd_dir: Path) -> seda.XsdValidator:
    return seda.XsdValidator(xsd_dir)
