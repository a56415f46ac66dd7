"""The small HTTP servers the controller runs beside its loop: metrics/health and the webhook.

Both are stdlib ``ThreadingHTTPServer``s on daemon threads, so a stuck client never blocks
the loop or shutdown; request logging is off because the controller logs JSON itself.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler with a one-call reply and no stderr access log."""

    def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def start(handler: type[QuietHandler], host: str, port: int, name: str) -> ThreadingHTTPServer:
    """Serve ``handler`` on ``host:port`` from a daemon thread named ``name``."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
