"""Fixtures of the sign-in tests: the real slapd (tests/ldap_server.py)."""

from tests.ldap_server import slapd

__all__ = ["slapd"]
