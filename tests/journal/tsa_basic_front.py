"""A real HTTP front with Basic authentication before an RFC 3161 TSA (a test helper process).

``python tsa_basic_front.py PORT UPSTREAM USER PASSWORD COUNT_FILE``: answers 401 without the
right credentials, otherwise forwards the TimeStampReq to UPSTREAM and returns its reply; each
forwarded request is one line appended to COUNT_FILE (tokens spent, as a paying TSA counts).
"""

from __future__ import annotations

import base64
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    port, upstream, user, password, count_file = sys.argv[1:6]
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="tsa"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            request = urllib.request.Request(  # noqa: S310 - the loopback TSA of the test
                upstream, data=body, headers={"Content-Type": "application/timestamp-query"}
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                reply = answer.read()
            with open(count_file, "a") as f:
                f.write("token\n")
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
