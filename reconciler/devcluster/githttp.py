"""Local bare repositories served over Git's smart HTTP protocol, for controllers that need a URL.

Flux's GitRepository accepts only ``http(s)://`` and ``ssh://`` URLs (its CRD's pattern), and its
Git client (go-git) speaks only the smart protocol, so a static file server will not do. Git
ships the server side as the CGI program ``git http-backend``; this wraps it in the standard
library's threaded HTTP server on 127.0.0.1: ``http://127.0.0.1:PORT/NAME.git`` serves
``root/NAME.git``. Reads only (receive-pack is not enabled); tests push through the file system.
"""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from reconciler import errors


def _backend() -> str:
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    backend = Path(exec_path) / "git-http-backend"
    if not backend.exists():
        raise errors.ToolchainError(f"git http-backend not found in {exec_path}")
    return str(backend)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._cgi(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._cgi(self.rfile.read(length))

    def _cgi(self, body: bytes) -> None:
        url = urlsplit(self.path)
        env = {
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        proc = subprocess.run(
            [self.server.backend], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        if proc.returncode != 0 and status == 200:
            status = 500
            payload = proc.stderr
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the controllers' own logs say what they fetched."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, backend: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.backend = backend


class GitHTTPServer:
    """``with GitHTTPServer(root) as server: server.url("desired.git")``."""

    def __init__(self, root: Path) -> None:
        self._server = _Server(root.resolve(), _backend())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"

    def __enter__(self) -> GitHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
