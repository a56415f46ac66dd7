"""An authenticated Git HTTP server on loopback: ``git http-backend`` (CGI) behind
``http.server``, refusing every request whose ``Authorization`` header is not one it accepts.

Real git over real HTTP, so a test proves what git sends and what it does on a 401, not what a
fake assumes. Every request line is recorded: a credential in a URL would show there.
"""

from __future__ import annotations

import base64
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    accepted: set[str]
    requests: list[str]
    denied: int


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads :attr:`GitHTTP.requests` instead."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        self.server.requests.append(self.requestline)
        if self.headers.get("Authorization", "") not in self.server.accepted:
            self.server.denied += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "git",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitHTTP:
    """Serves the bare repositories under ``root`` at ``http://127.0.0.1:<port>/<name>``."""

    def __init__(
        self, root: Path, *, basic: tuple[str, str] | None = None, bearer: str | None = None
    ) -> None:
        accepted = set()
        if basic is not None:
            accepted.add("Basic " + base64.b64encode(":".join(basic).encode()).decode())
        if bearer is not None:
            accepted.add(f"Bearer {bearer}")
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.root = root
        self._server.accepted = accepted
        self._server.requests = []
        self._server.denied = 0
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"

    @property
    def requests(self) -> list[str]:
        return list(self._server.requests)

    @property
    def denied(self) -> int:
        return self._server.denied

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
