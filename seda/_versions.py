"""SEDA versions and their XML namespaces."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SEDA_NAMESPACE_PREFIX", "SedaVersion", "namespace_of", "version_from_namespace"]

SEDA_NAMESPACE_PREFIX = "fr:gouv:culture:archivesdefrance:seda:v"


class SedaVersion(StrEnum):
    """A supported SEDA version; compares equal to its string (``SedaVersion.V2_2 == "2.2"``)."""

    V2_1 = "2.1"
    V2_2 = "2.2"
    V2_3 = "2.3"

    @property
    def namespace(self) -> str:
        """The XML namespace of this version (``fr:gouv:culture:archivesdefrance:seda:v2.2``)."""
        return SEDA_NAMESPACE_PREFIX + self.value


def namespace_of(version: SedaVersion | str) -> str:
    """The namespace of ``version`` (``"2.1"``, ``"2.2"`` or ``"2.3"``)."""
    return SedaVersion(version).namespace


def version_from_namespace(namespace: str | None) -> SedaVersion | None:
    """The version whose namespace is ``namespace``, or ``None`` when it is not a supported one."""
    if namespace is None or not namespace.startswith(SEDA_NAMESPACE_PREFIX):
        return None
    try:
        return SedaVersion(namespace[len(SEDA_NAMESPACE_PREFIX) :])
    except ValueError:
        return None
