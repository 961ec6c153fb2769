"""Pastell's as@lae connector, replayed byte for byte over a socket.

The requests are built as ``connecteur/as@lae-rest/AsalaeREST.php`` and ``lib/CurlWrapper.php``
build them through PHP's curl extension (recorded with PHP 8.2 / libcurl 7.88, see
``shared/reference/pastell-contract.md``): Basic auth whose password is the lowercase hex
SHA-256 of the configured one; ``Accept: application/json`` (or ``application/xml`` for the
ACK/ATR); no ``Expect`` header (libcurl drops the blank ``Expect:`` the connector sets — or a
literal empty one, ``literal_expect``); multipart parts as PHP's ``CURLFile`` writes them
(``application/octet-stream`` when no type is given); the URL joined as a string (``//``
when the configured URL ends with ``/``); the ACK/ATR path with PHP ``urlencode``d segments.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import quote_plus, urlsplit


def php_urlencode(value: str) -> str:
    """PHP's ``urlencode``: space is ``+``, every other reserved byte ``%XX``."""
    return quote_plus(value, safe="-_.")


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]


class PastellClient:
    def __init__(
        self,
        url: str,
        login: str,
        password: str,
        *,
        chunk_size: int = 0,
        literal_expect: bool = False,
        encode_agency: bool = True,
    ) -> None:
        self.url = url  # as typed in the connector: may end with "/"
        self.login = login
        self.password = password
        self.chunk_size = chunk_size
        self.literal_expect = literal_expect
        self.encode_agency = encode_agency

    # --- transport -------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, accept: str, body: bytes = b"", ctype: str = ""
    ) -> Answer:
        full = self.url + path  # string concatenation, as the connector does
        parts = urlsplit(full)
        target = full[len(f"{parts.scheme}://{parts.netloc}") :]
        secret = hashlib.sha256(self.password.encode()).hexdigest()
        basic = base64.b64encode(f"{self.login}:{secret}".encode()).decode()
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            f"Authorization: Basic {basic}",
            f"Accept: {accept}",
        ]
        if self.literal_expect:
            lines.append("Expect:")
        if method == "POST":
            lines.append(f"Content-Length: {len(body)}")
            lines.append(f"Content-Type: {ctype}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=120) as sock:
            sock.sendall(head)
            view = memoryview(body)
            for start in range(0, len(body), 1024 * 1024):
                sock.sendall(view[start : start + 1024 * 1024])
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
            data = response.read()
            return Answer(response.status, data, {k.lower(): v for k, v in response.getheaders()})

    @staticmethod
    def _multipart(
        fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]
    ) -> tuple[bytes, str]:
        """The body libcurl writes for PHP's array of fields and ``CURLFile``s."""
        boundary = "------------------------" + secrets.token_hex(8)
        out = bytearray()
        for name, value in fields:
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += value.encode() + b"\r\n"
        for name, filename, data in files:
            out += (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            out += data + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        return bytes(out), f"multipart/form-data; boundary={boundary}"

    # --- the connector's calls ---------------------------------------------------------------

    def ping(self) -> Answer:
        return self._request("GET", "/ping", "application/json")

    def versions(self) -> Answer:
        return self._request("GET", "/versions", "application/json")

    def send(self, bordereau: bytes, archive: bytes, archive_name: str) -> list[Answer]:
        """``sendArchive``: one-shot when chunking is off or the archive fits one chunk."""
        if not self.chunk_size or len(archive) <= self.chunk_size:
            body, ctype = self._multipart(
                [],
                [
                    ("seda_message", "bordereau.xml", bordereau),
                    ("attachments", archive_name, archive),
                ],
            )
            return [self._request("POST", "/sedaMessages", "application/json", body, ctype)]
        opened = self.open_chunked(bordereau)
        answers = [opened]
        if opened.status != 200:
            return answers
        import json

        session = json.loads(opened.body)
        pieces = [archive[i : i + self.chunk_size] for i in range(0, len(archive), self.chunk_size)]
        for index, piece in enumerate(pieces, start=1):
            answer = self.chunk(
                session["chunk_session_identifier"],
                session["chunk_security_identifier"],
                archive_name,
                len(pieces),
                index,
                piece,
            )
            answers.append(answer)
            if answer.status != 200:
                break
        return answers

    def open_chunked(self, bordereau: bytes) -> Answer:
        """The opening of a chunked upload: the bordereau and ``send_chunked_attachments``."""
        body, ctype = self._multipart(
            [("send_chunked_attachments", "true")], [("seda_message", "bordereau.xml", bordereau)]
        )
        return self._request("POST", "/sedaMessages", "application/json", body, ctype)

    def chunk(
        self,
        session: str,
        security: str,
        archive_name: str,
        number_of_chunks: int,
        index: int,
        piece: bytes,
    ) -> Answer:
        suffix = "archive_part" + _split_suffix(index - 1)
        body, ctype = self._multipart(
            [
                ("session_identifier", session),
                ("security_identifier", security),
                ("number_of_files", "1"),
                ("file_index", "1"),
                ("file_name", archive_name),
                ("compression_algorithm", "TARGZ"),
                ("number_of_chunks", str(number_of_chunks)),
                ("chunk_index", str(index)),
            ],
            [("chunk_content", suffix, piece)],
        )
        return self._request("POST", "/sedaAttachmentsChunkFiles", "application/json", body, ctype)

    def _reply(self, message: str, agency: str, identifier: str) -> Answer:
        agency_part = php_urlencode(agency) if self.encode_agency else agency
        path = (
            "/sedaMessages/sequence:ArchiveTransfer"
            f"/message:{message}"
            f"/originOrganizationIdentification:{agency_part}"
            f"/originMessageIdentifier:{php_urlencode(identifier)}"
        )
        return self._request("GET", path, "application/xml")

    def ack(self, agency: str, identifier: str) -> Answer:
        return self._reply("Acknowledgement", agency, identifier)

    def atr(self, agency: str, identifier: str) -> Answer:
        return self._reply("ArchiveTransferReply", agency, identifier)


def _split_suffix(n: int) -> str:
    """``split -b``'s suffixes: aa, ab, …, az, ba, …"""
    return chr(ord("a") + n // 26) + chr(ord("a") + n % 26)
