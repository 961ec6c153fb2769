"""Format identification: the MIME type measured from the bytes (libmagic), never trusted."""

from __future__ import annotations

import functools
from typing import Any

import magic

#: The bytes libmagic is given (the start of the file).
SNIFF_BYTES = 8192


@functools.cache
def _detector() -> Any:
    return magic.Magic(mime=True)


def identify(head: bytes, declared: object | None = None) -> str | None:
    """The MIME type of a file from its first bytes; None for an empty file."""
    if not head:
        return None
    try:
        return str(_detector().from_buffer(head))
    except magic.MagicException:
        return None
