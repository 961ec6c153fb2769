"""The alert tests run on the storage tests' app with two filesystem offers."""

from tests.storage.conftest import two_sites  # noqa: F401  (the fixture)
