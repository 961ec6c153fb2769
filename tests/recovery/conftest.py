"""Fixtures the recovery tests share with other suites."""

from tests.journal.test_witnessing import archive  # noqa: F401  (an archive with two witnesses)
