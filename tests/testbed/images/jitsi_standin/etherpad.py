"""STAND-IN etherpad (etherpad/etherpad:2.0.3) for tests: HTTP on 9001.

Serves what the product can observe through the web container's ``/etherpad/`` proxy:
``/`` (welcome page), ``/p/<pad>`` (a pad page, 200 HTML), ``/health`` (JSON), 404 otherwise.
"""

from __future__ import annotations

import html
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import unquote, urlsplit

from jitsi_standin.common import ALL_INTERFACES, env, log, release

COMPONENT = "etherpad"


class Handler(BaseHTTPRequestHandler):
    """GET-only etherpad lookalike."""

    server_version = "Etherpad-standin"

    def do_GET(self) -> None:
        """Route /, /p/<pad>, /health."""
        path = urlsplit(self.path).path
        title = html.escape(env("TITLE", "Etherpad"))
        if path == "/":
            self._send(200, "text/html", f"<!doctype html><title>{title}</title><h1>{title}</h1>")
        elif path.startswith("/p/") and len(path) > 3:
            pad = html.escape(unquote(path[3:]))
            text = html.escape(env("DEFAULT_PAD_TEXT", "Welcome to Etherpad!"))
            body = (
                f"<!doctype html><html><head><title>{pad} | {title}</title></head>"
                f'<body><div id="editorcontainer" data-pad="{pad}">{text}</div>'
                "<!-- jitsi-ops STAND-IN etherpad (tests only) --></body></html>"
            )
            self._send(200, "text/html", body)
        elif path == "/health":
            self._send(200, "application/health+json", json.dumps({"status": "pass"}))
        else:
            self._send(404, "text/plain", "Cannot GET " + path)

    def _send(self, status: int, kind: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log(COMPONENT, f"{self.address_string()} {format % args}")


def main() -> None:
    """Serve on 9001 until SIGTERM."""
    server = ThreadingHTTPServer((ALL_INTERFACES, 9001), Handler)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    log(COMPONENT, f"etherpad stand-in {release()} listening on :9001")
    server.serve_forever()


if __name__ == "__main__":
    main()
