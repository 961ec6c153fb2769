"""The hardened XML parser: the only way :mod:`seda` (and the project) turns bytes into elements.

Hardening, in order:

1. size: more than ``max_bytes`` is refused before any parsing;
2. DTD: a ``<!DOCTYPE`` in the prolog is refused before parsing (this kills XXE, billion laughs
   and quadratic blow-up at the source), and checked again after parsing for encodings the byte
   scan cannot see (UTF-16...);
3. libxml2 runs with entity resolution, DTD loading and network access off, and ``huge_tree``
   off, so its own limits (10 MB text nodes, depth 256, entity amplification) stay active;
4. depth: more than ``max_depth`` nested elements is refused.

Every libxml2 error is translated into a :class:`~seda.SedaError` subclass carrying a fault with
a stable code; no lxml exception escapes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from lxml import etree

from ._errors import (
    Fault,
    FaultCodes,
    ForbiddenXMLConstruct,
    MalformedXML,
    SedaError,
    XMLLimitExceeded,
    XMLTooDeep,
    XMLTooLarge,
)

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH", "safe_parse"]

#: Default size limit of a message (64 MiB): large transfers are thousands of units, not 100 MB.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Default nesting limit. libxml2 (without ``huge_tree``) stops at 256 in any case.
DEFAULT_MAX_DEPTH = 200

_PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_blank_text": False,
}

# The prolog ends at the first "<" that opens an element (not "<?" nor "<!").
_ROOT_START = re.compile(rb"<(?![?!])")
_DOCTYPE_MARKERS = (
    b"<!DOCTYPE",
    "<!DOCTYPE".encode("utf-16-le"),
    "<!DOCTYPE".encode("utf-16-be"),
    b"<!ENTITY",
)


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(**_PARSER_OPTIONS)


def _check_bytes(data: bytes, max_bytes: int) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise MalformedXML(faults=[Fault(FaultCodes.XML_EMPTY, "the document is empty")])
    if size > max_bytes:
        raise XMLTooLarge(
            faults=[
                Fault(
                    FaultCodes.XML_TOO_LARGE,
                    f"the document is {size} bytes, more than the limit of {max_bytes} bytes",
                )
            ]
        )
    match = _ROOT_START.search(data)
    prolog = bytes(data[: match.start()]) if match else bytes(data[:4096])
    if any(marker in prolog for marker in _DOCTYPE_MARKERS):
        raise _dtd_forbidden()


def _dtd_forbidden() -> ForbiddenXMLConstruct:
    return ForbiddenXMLConstruct(
        faults=[
            Fault(
                FaultCodes.XML_DTD_FORBIDDEN,
                "a document type declaration (DTD) is not accepted: SEDA messages never need one",
                "line 1",
            )
        ]
    )


def translate_syntax_error(error: etree.XMLSyntaxError | etree.ParseError) -> SedaError:
    """Translate an lxml parse error into the matching :class:`SedaError` (internal helper)."""
    message = str(getattr(error, "msg", None) or error).strip()
    line, column = getattr(error, "position", (None, None)) or (None, None)
    where = f"line {line}, column {column}" if line else None
    lowered = message.lower()
    if "excessive depth" in lowered:
        return XMLTooDeep(
            faults=[
                Fault(FaultCodes.XML_TOO_DEEP, f"elements are nested too deeply ({message})", where)
            ]
        )
    if "amplification" in lowered or "entity loop" in lowered or "entityref" in lowered:
        return ForbiddenXMLConstruct(
            faults=[
                Fault(
                    FaultCodes.XML_ENTITY_FORBIDDEN, f"entity expansion refused ({message})", where
                )
            ]
        )
    if "resource limit" in lowered or "huge" in lowered or "too long" in lowered:
        return XMLLimitExceeded(
            faults=[
                Fault(FaultCodes.XML_LIMIT_EXCEEDED, f"parser limit exceeded ({message})", where)
            ]
        )
    return MalformedXML(
        faults=[Fault(FaultCodes.XML_MALFORMED, f"not well-formed XML: {message}", where)]
    )


def _doctype(element: etree._Element) -> str:
    docinfo: Any = element.getroottree().docinfo
    return str(docinfo.doctype or "")


def _check_depth(root: etree._Element, max_depth: int) -> None:
    depth = 0
    for event, _element in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise _too_deep(max_depth)
        else:
            depth -= 1


def _too_deep(max_depth: int) -> XMLTooDeep:
    return XMLTooDeep(
        faults=[
            Fault(FaultCodes.XML_TOO_DEEP, f"elements are nested more than {max_depth} levels deep")
        ]
    )


def safe_parse(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> etree._Element:
    """Parse ``data`` into an lxml element with every hardening on; the project's only XML parser.

    Raises :class:`~seda.MalformedXML` or one of its subclasses (:class:`~seda.XMLTooLarge`,
    :class:`~seda.XMLTooDeep`, :class:`~seda.ForbiddenXMLConstruct`,
    :class:`~seda.XMLLimitExceeded`), each with a fault whose code is stable. No DTD, no entity,
    no network access, no ``huge_tree``; nesting above ``max_depth`` is refused.

    >>> safe_parse(b"<a><b/></a>").tag
    'a'
    """
    _check_bytes(data, max_bytes)
    try:
        root = etree.fromstring(bytes(data), _new_parser())
    except (etree.XMLSyntaxError, etree.ParseError) as error:
        raise translate_syntax_error(error) from None
    except ValueError as error:  # e.g. "can only parse strings" / bad encoding declarations
        raise MalformedXML(faults=[Fault(FaultCodes.XML_MALFORMED, f"not XML: {error}")]) from None
    if root is None:
        raise MalformedXML(faults=[Fault(FaultCodes.XML_EMPTY, "the document has no root element")])
    if _doctype(root):
        raise _dtd_forbidden()
    _check_depth(root, max_depth)
    return root


def iter_elements(
    data: bytes,
    tag: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Iterator[etree._Element]:
    """Each complete ``tag`` element of ``data`` (matched by local name), in document order,
    with the hardening of :func:`safe_parse`; each is emptied and dropped once the caller asks
    for the next, so a large document (a signature file of megabytes) is read in the memory
    of one element rather than of its whole tree.

    >>> [e.findtext("n") for e in iter_elements(b"<r><f><n>1</n></f><f><n>2</n></f></r>", "f")]
    ['1', '2']
    """
    for event, element in iter_events(data, max_bytes=max_bytes, max_depth=max_depth):
        if event != "end" or etree.QName(element).localname != tag:
            continue
        parent = element.getparent()
        if parent is not None:  # the elements read before (emptied already) go
            while element.getprevious() is not None:
                del parent[0]
        yield element
        element.clear()


def iter_events(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Iterator[tuple[str, etree._Element]]:
    """Stream ``("start"|"end", element)`` events with the same hardening as :func:`safe_parse`.

    Internal: the reader uses it to read large manifests with bounded memory (it clears each
    subtree once read). Errors are raised as :class:`~seda.SedaError` subclasses, mid-stream.
    """
    _check_bytes(data, max_bytes)
    events = etree.iterparse(
        io.BytesIO(bytes(data)), events=("start", "end"), remove_comments=False, **_PARSER_OPTIONS
    )
    depth = 0
    first = True
    try:
        for event, element in events:
            if event == "start":
                if first:
                    first = False
                    if _doctype(element):
                        raise _dtd_forbidden()
                depth += 1
                if depth > max_depth:
                    raise _too_deep(max_depth)
            else:
                depth -= 1
            yield event, element
    except (etree.XMLSyntaxError, etree.ParseError) as error:
        raise translate_syntax_error(error) from None
    except (ValueError, LookupError) as error:
        raise MalformedXML(faults=[Fault(FaultCodes.XML_MALFORMED, f"not XML: {error}")]) from None
