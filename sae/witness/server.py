"""``sae witness serve``: the tlog-witness HTTP interface over :class:`Witness`.

The standard library's ``ThreadingHTTPServer`` rather than uvicorn and FastAPI: the witness
answers two small routes, must run at the departmental archives from the same installed package
with nothing else of SAE (no database, no settings), and its atomicity rests on one process
serialising each origin's check-and-update (the ``flock`` of :mod:`sae.witness.store` also
covers a second process). A thread per connection, HTTP/1.1 keep-alive as the spec asks.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from sae.errors import SAEError
from sae.witness.errors import OldSizeConflict
from sae.witness.service import MAX_REQUEST_BYTES, Witness

log = logging.getLogger("sae.witness")

#: tlog-witness: the 409's body is the latest size, with this content type.
SIZE_MEDIA_TYPE = "text/x.tlog.size"
TEXT = "text/plain; charset=utf-8"
_CHECKPOINT_PATH = re.compile(r"/([0-9a-f]{64})/checkpoint")


class WitnessServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds the process at exit

    def __init__(self, address: tuple[str, int], witness: Witness) -> None:
        super().__init__(address, _Handler)
        self.witness = witness


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sae-witness"
    timeout = 60  # an idle keep-alive connection is closed after a minute
    server: WitnessServer

    def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
        if self.path != "/add-checkpoint":
            self._reply(404, TEXT, "not found: POST /add-checkpoint\n")
            return
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_header is None:
            self.close_connection = True
            self._reply(400, TEXT, "a Content-Length is required\n")
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self.close_connection = True  # the body is not read: the connection cannot go on
            self._reply(400, TEXT, f"the body must be 0 to {MAX_REQUEST_BYTES} bytes\n")
            return
        body = self.rfile.read(length)
        try:
            line = self.server.witness.add_checkpoint(body)
        except OldSizeConflict as exc:
            self._reply(409, SIZE_MEDIA_TYPE, f"{exc.latest}\n")
        except SAEError as exc:
            self._reply(exc.status, TEXT, f"{exc.code}: {exc.detail}\n")
        except Exception:
            log.exception("witness.error")
            self._reply(500, TEXT, "internal error\n")
        else:
            self._reply(200, TEXT, line)

    def do_GET(self) -> None:  # noqa: N802
        match = _CHECKPOINT_PATH.fullmatch(self.path)
        note = self.server.witness.latest_checkpoint(match[1]) if match else None
        if note is None:
            self._reply(404, TEXT, "no checkpoint co-signed for this origin hash\n")
        else:
            self._reply(200, TEXT, note)

    def _reply(self, status: int, content_type: str, text: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("witness.http %s " + format, self.address_string(), *args)


def serve(
    witness: Witness,
    host: str,
    port: int,
    on_listening: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then return (exit 0)."""
    server = WitnessServer((host, port), witness)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever(), which runs in this (the main) thread: ask it
        # from another.
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = server.server_address[:2]
    if on_listening is not None:
        on_listening(str(bound_host), int(bound_port))
    try:
        server.serve_forever()
    finally:
        server.server_close()
