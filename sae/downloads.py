"""Responses that hand a file to the browser: one way to name it, for the API and the console.

``Content-Disposition`` follows RFC 6266: an ASCII ``filename`` every client understands, and
the exact name in ``filename*`` (RFC 8187, UTF-8, percent-encoded) when it is not plain ASCII —
a record's name may carry accents, quotes or characters that an HTTP header cannot hold as they
are (Starlette would fail to encode them: a 500). Every download also says ``nosniff``: the
browser must take the declared type, never guess one from the bytes of an archived file.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from fastapi import Response

_UNSAFE_IN_QUOTES = '"\\'


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` made safe for a header (RFC 6266 / RFC 8187)."""
    name = filename.replace("/", "_").replace("\\", "_").strip() or "download"
    fallback = "".join(
        c if 0x20 <= ord(c) < 0x7F and c not in _UNSAFE_IN_QUOTES else "_" for c in name
    )
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def download_headers(filename: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers of a download named ``filename``, plus ``extra`` ones."""
    return {
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        **(extra or {}),
    }


def attachment(content: bytes, media_type: str, filename: str) -> Response:
    """``content`` as a download named ``filename``."""
    return Response(content, media_type=media_type, headers=download_headers(filename))
