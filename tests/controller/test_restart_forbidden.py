"""After an apiserver restart, a 403 is its authorizer warming up: retried, then named.

A real HTTP server on loopback stands in for the apiserver: first unreachable (nothing
listens on the port), then listening and answering 403 for a while, as kube-apiserver does
until its RBAC authorizer has loaded the roles (issue 19: a bare "HTTP 403 Forbidden" was the
only reason given). A 403 with no restart behind it is returned at once, as before.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from kubernetes import client as k8s_client

from reconciler import kube

FORBIDDEN = (
    b'{"kind":"Status","reason":"Forbidden","message":"leases.coordination.k8s.io '
    b'\\"cu-reconciler\\" is forbidden: User \\"system:serviceaccount:cu-system:cu-reconciler\\" '
    b'cannot get resource \\"leases\\""}'
)


class _Restarting(http.server.BaseHTTPRequestHandler):
    forbidden: ClassVar[int] = 0

    def do_GET(self) -> None:
        cls = type(self)
        status, body = (200, b"{}") if cls.forbidden <= 0 else (403, FORBIDDEN)
        cls.forbidden -= 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(port: int) -> Iterator[k8s_client.ApiClient]:
    config = k8s_client.Configuration(host=f"http://127.0.0.1:{port}")
    with k8s_client.ApiClient(config) as client:
        yield client


def _serve(port: int, forbidden: int) -> http.server.ThreadingHTTPServer:
    handler = type("H", (_Restarting,), {"forbidden": forbidden})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _unreachable_then(api: k8s_client.ApiClient, port: int, forbidden: int) -> kube.Response:
    """One call that first finds nothing listening, then the restarted server."""
    started: list[http.server.ThreadingHTTPServer] = []

    def sleep(_: float) -> None:
        if not started:
            started.append(_serve(port, forbidden))

    try:
        return kube.call(api, "GET", "/x", sleep=sleep, timeout=5)
    finally:
        for server in started:
            server.shutdown()
            server.server_close()


def test_a_403_after_a_restart_is_retried_until_authorization_is_ready(
    api: k8s_client.ApiClient, port: int
) -> None:
    resp = _unreachable_then(api, port, forbidden=2)
    assert resp.status == 200


def test_a_lasting_403_after_a_restart_names_the_cause(
    api: k8s_client.ApiClient, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "RBAC_PATIENCE", 1.0)  # the test's sleeps do not wait
    resp = _unreachable_then(api, port, forbidden=10**9)
    assert resp.status == 403
    assert "is forbidden" in resp.reason()
    assert "the apiserver was unreachable" in resp.reason()
    assert "authorization (RBAC) is not ready" in resp.reason()


def test_a_403_without_a_restart_is_returned_at_once(api: k8s_client.ApiClient, port: int) -> None:
    server = _serve(port, forbidden=100)
    try:
        slept: list[float] = []
        resp = kube.call(api, "GET", "/x", sleep=slept.append, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert resp.status == 403 and not slept
    assert "not ready" not in resp.reason()
