"""Archival profiles (profils d'archivage) written in RelaxNG, compiled and applied to transfers.

A SEDA archival profile constrains a transfer further than the SEDA schema does (fixed titles,
rule ids, agencies, object layout…). Profiles are written in RelaxNG by SHERPA, PASTIS and Vitam.

The profile is read with :func:`seda.safe_parse` like any other XML of this package (no DTD, no
entity, no network), and a profile that would pull another document in (``include``,
``externalRef``) is refused: a stored profile must be the whole grammar, or its meaning could
change with a file it does not carry (and lxml would fetch it from the file system or the
network). The faults of a validation carry the line of the manifest where libxml2 found them.

>>> profile = RelaxNGProfile(
...     b'<element name="a" xmlns="http://relaxng.org/ns/structure/1.0"><empty/></element>'
... )
>>> profile.validate(b"<a/>")
[]
>>> profile.validate(b"<b/>")[0].where
'line 1'
"""

from __future__ import annotations

from lxml import etree

from ._errors import Fault, SedaError
from ._parser import DEFAULT_MAX_BYTES, safe_parse

__all__ = ["PROFILE_INVALID", "PROFILE_NOT_MET", "ProfileInvalid", "RelaxNGProfile"]

RELAXNG_NS = "http://relaxng.org/ns/structure/1.0"
#: The fault of a profile that is not a usable RelaxNG grammar.
PROFILE_INVALID = "profile.invalid"
#: The fault of a manifest that the profile refuses (one per error libxml2 reports).
PROFILE_NOT_MET = "profile.not_met"
#: Elements of RelaxNG that bring another document in: never followed.
_EXTERNAL = ("include", "externalRef")
#: At most this many faults are reported for one manifest (libxml2 may report many per element).
MAX_FAULTS = 100


class ProfileInvalid(SedaError):
    """The profile is not a RelaxNG grammar that can be used (not XML, not RelaxNG, refers to
    another document, does not compile)."""

    default_code = PROFILE_INVALID


class RelaxNGProfile:
    """A compiled RelaxNG archival profile.

    Raises :class:`ProfileInvalid` (or :class:`~seda.MalformedXML` for XML that the hardened
    parser refuses) when ``data`` cannot be used.
    """

    def __init__(self, data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        root = safe_parse(data, max_bytes=max_bytes)
        if etree.QName(root).namespace != RELAXNG_NS:
            raise ProfileInvalid(
                f"the profile's root element is not RelaxNG (namespace {RELAXNG_NS})",
                where="line 1",
            )
        external = [
            Fault(
                PROFILE_INVALID,
                f"<{etree.QName(el).localname} href={el.get('href')!r}>: a profile must be one "
                "document, it may not include another",
                f"line {el.sourceline}",
            )
            for name in _EXTERNAL
            for el in root.iter(f"{{{RELAXNG_NS}}}{name}")
        ]
        if external:
            raise ProfileInvalid(faults=external)
        try:
            self._schema = etree.RelaxNG(etree.ElementTree(root))
        except etree.RelaxNGParseError as exc:
            faults = [
                Fault(
                    PROFILE_INVALID,
                    f"the RelaxNG grammar does not compile: {e.message}",
                    f"line {e.line}" if e.line else None,
                )
                for e in list(exc.error_log)[:MAX_FAULTS]
            ] or [Fault(PROFILE_INVALID, f"the RelaxNG grammar does not compile: {exc}")]
            raise ProfileInvalid(faults=faults) from None

    def validate(self, manifest: bytes | etree._Element) -> list[Fault]:
        """The faults of ``manifest`` against this profile (empty when it conforms).

        ``manifest`` is the message's bytes (parsed here with the hardened parser) or its root
        element as :func:`seda.safe_parse` returned it (line numbers are then the message's).
        """
        root = safe_parse(manifest) if isinstance(manifest, bytes | bytearray) else manifest
        if self._schema.validate(etree.ElementTree(root)):
            return []
        # libxml2 reports a value that does not match in several entries of the same line (the
        # type compared, the value, the element): one fault per line, the element's first.
        by_line: dict[int, list[str]] = {}
        for error in self._schema.error_log:
            messages = by_line.setdefault(error.line or 0, [])
            message = " ".join(error.message.split())
            if message not in messages:
                messages.insert(0, message)
        faults = [
            Fault(PROFILE_NOT_MET, " — ".join(messages), f"line {line}" if line else None)
            for line, messages in sorted(by_line.items())[:MAX_FAULTS]
        ]
        return faults or [Fault(PROFILE_NOT_MET, "the manifest does not conform to the profile")]
