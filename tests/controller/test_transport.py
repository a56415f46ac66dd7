"""The transport retries what is transient and nothing else; the cluster connection is found.

A real HTTP server on loopback answers 503/429 before 200; a closed port refuses connections.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest
from kubernetes import client as k8s_client

from reconciler import errors, kube
from reconciler.observe import cluster


class _Flaky(http.server.BaseHTTPRequestHandler):
    script: ClassVar[list[int]] = []
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        status = type(self).script.pop(0) if type(self).script else 200
        body = b'{"kind":"Status","reason":"x","message":"y"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[k8s_client.ApiClient, type[_Flaky]]]:
    handler = type("H", (_Flaky,), {"script": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = k8s_client.Configuration(host=f"http://127.0.0.1:{server.server_port}")
    with k8s_client.ApiClient(config) as api:
        yield api, handler
    server.shutdown()


def test_transient_statuses_are_retried_with_backoff(
    flaky: tuple[k8s_client.ApiClient, type[_Flaky]],
) -> None:
    api, handler = flaky
    handler.script = [503, 429, 500]
    slept: list[float] = []
    resp = kube.call(api, "GET", "/api/v1/nodes", sleep=slept.append)
    assert resp.status == 200
    assert len(handler.seen) == 4
    assert len(slept) == 3
    assert all(0 <= s <= kube.DEFAULT_RETRY.cap for s in slept)


def test_retries_are_bounded_and_a_final_failure_is_returned(
    flaky: tuple[k8s_client.ApiClient, type[_Flaky]],
) -> None:
    api, handler = flaky
    handler.script = [503] * 10
    resp = kube.call(api, "GET", "/x", retry=kube.RetryPolicy(attempts=3), sleep=lambda _: None)
    assert resp.status == 503
    assert len(handler.seen) == 3


def test_client_errors_are_not_retried(flaky: tuple[k8s_client.ApiClient, type[_Flaky]]) -> None:
    api, handler = flaky
    handler.script = [404, 200]
    assert kube.call(api, "GET", "/x", sleep=lambda _: None).status == 404
    assert len(handler.seen) == 1


def test_connection_refused_is_retried_then_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = k8s_client.Configuration(host=f"http://127.0.0.1:{port}")
    slept: list[float] = []
    with k8s_client.ApiClient(config) as api, pytest.raises(kube.TRANSIENT_ERRORS):
        kube.call(api, "GET", "/x", retry=kube.RetryPolicy(attempts=4), sleep=slept.append)
    assert len(slept) == 3


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    policy = kube.RetryPolicy(base=0.5, cap=3.0)
    assert policy.delay(0, lambda: 1.0) == 0.5
    assert policy.delay(2, lambda: 1.0) == 2.0
    assert policy.delay(9, lambda: 1.0) == 3.0
    assert policy.delay(9, lambda: 0.0) == 0.0


def _kubeconfig(path: Path, server: str, context: str = "c1") -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: k-{context}, cluster: {{server: '{server}'}}}}]\n"
        f"users: [{{name: u-{context}, user: {{token: t}}}}]\n"
        f"contexts: [{{name: {context}, context: {{cluster: k-{context}, user: u-{context}}}}}]\n"
        f"current-context: {context}\n"
    )
    return path


def test_connect_prefers_the_flag_then_kubeconfig_then_in_cluster_then_home(
    tmp_path: Path,
) -> None:
    flag = _kubeconfig(tmp_path / "flag", "https://flag:1")
    env_a = _kubeconfig(tmp_path / "a", "https://env-a:1", "a")
    env_b = _kubeconfig(tmp_path / "b", "https://env-b:1", "b")
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    _kubeconfig(home / ".kube" / "config", "https://home:1")
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "ca.crt").write_text("not checked until a TLS handshake")
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    def host(api: k8s_client.ApiClient) -> str:
        with api:
            return str(api.configuration.host)

    env = {"KUBECONFIG": f"{env_a}:{env_b}", "HOME": str(home), **pod}
    assert host(cluster.connect(str(flag), environ=env, serviceaccount_dir=sa)) == "https://flag:1"
    assert host(cluster.connect(None, "a", environ=env, serviceaccount_dir=sa)) == "https://env-a:1"
    merged = cluster.connect(None, "b", environ=env, serviceaccount_dir=sa)
    assert host(merged) == "https://env-b:1", "KUBECONFIG lists are merged; --context picks"
    in_pod = cluster.connect(None, environ={"HOME": str(home), **pod}, serviceaccount_dir=sa)
    assert host(in_pod) == "https://10.0.0.1:443"
    assert in_pod.configuration.api_key["BearerToken"].lower() == "bearer sa-token"
    assert host(cluster.connect(None, environ={"HOME": str(home)})) == "https://home:1"
    with pytest.raises(errors.ObserveError, match="no cluster to talk to"):
        cluster.connect(None, environ={"HOME": str(tmp_path / "nobody")})
    with pytest.raises(errors.ObserveError, match="--context nope"):
        cluster.connect(str(flag), "nope")


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: records each request's client port and its Authorization."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[set[int]] = set()
    tokens: ClassVar[list[str]] = []

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).ports.add(self.client_address[1])
        type(self).tokens.append(self.headers.get("Authorization", ""))
        time.sleep(0.02)  # long enough that the requests of one round overlap
        body = b'{"metadata":{"resourceVersion":"1"}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PATCH

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keepalive() -> Iterator[tuple[k8s_client.Configuration, type[_KeepAlive]]]:
    handler = type("K", (_KeepAlive,), {"ports": set(), "tokens": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield k8s_client.Configuration(host=f"http://127.0.0.1:{server.server_port}"), handler
    server.shutdown()


def test_a_pool_sized_to_the_concurrency_reuses_its_connections(
    keepalive: tuple[k8s_client.Configuration, type[_KeepAlive]],
) -> None:
    config, handler = keepalive
    config.connection_pool_maxsize = 1  # a pool smaller than the parallel writes

    def rounds(api: k8s_client.ApiClient) -> int:
        handler.ports.clear()
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(5):
                list(pool.map(lambda i: kube.call(api, "PATCH", f"/o/{i}", body={}), range(8)))
        return len(handler.ports)

    with k8s_client.ApiClient(config) as api:
        assert rounds(api) > 8, "a pool of 1 opens and discards a connection per surplus write"
        kube.ensure_pool(api, 8)
        assert rounds(api) <= 8, "one connection per parallel write, reused every round"
        kube.ensure_pool(api, 4)  # never shrinks
        assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == 8


def test_the_bearer_token_is_refreshed_within_a_second(
    keepalive: tuple[k8s_client.Configuration, type[_KeepAlive]],
) -> None:
    config, handler = keepalive
    config.api_key = {"BearerToken": "Bearer one"}
    with k8s_client.ApiClient(config) as api:
        kube.call(api, "GET", "/x")
        config.api_key = {"BearerToken": "Bearer two"}  # what a refresh hook does
        time.sleep(kube.AUTH_TTL + 0.1)
        kube.call(api, "GET", "/x")
    assert handler.tokens == ["Bearer one", "Bearer two"]
