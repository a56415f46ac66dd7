"""The one way cu-reconciler talks HTTP to a kube-apiserver: plain JSON over the client.

Bodies go out as dicts and come back as dicts over the ``kubernetes`` client's connection
pool (TLS, credentials and host from the kubeconfig, its bearer-token refresh), not through
its generated models: the diff must see exactly what the apiserver stored, server-side apply
needs ``application/apply-patch+yaml``, and a model round-trip can drop or add fields.
A body is encoded once, by ``json.dumps``, and a response decoded once from bytes: the
client's own ``param_serialize``/``sanitize_for_serialization`` walk every body again, which
for thousands of writes was a noticeable share of apply's CPU (BENCHMARKS.md, issue 8).
:func:`ensure_pool` keeps one TLS connection per concurrent request, so parallel writes do
not open and discard connections. This module only sends and decodes; each stage translates
failures into its own error type.

Transient failures are retried here, once for every caller (observe, plan, apply, the
controller): connection refused or reset, timeouts, HTTP 429 and 5xx, with a bounded number
of attempts and exponential backoff with full jitter (AWS architecture blog, "Exponential
Backoff And Jitter"; client-go's ``wait.Backoff`` does the same), honouring ``Retry-After``.
Every verb we send is safe to repeat: server-side apply is idempotent, deletes carry
uid/resourceVersion preconditions, and creates that raced answer 409, which callers handle.
"""

from __future__ import annotations

import json
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes.client import ApiClient

APPLY_PATCH = "application/apply-patch+yaml"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
"""An ``Accept`` that asks for the object's metadata only (the apiserver transforms any
response, writes included): for a write whose caller needs just the new resourceVersion."""
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"
"""The same for a list: names, labels, annotations and managedFields, no specs."""
Query = Mapping[str, str] | Sequence[tuple[str, str]] | None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    data: Any
    """The decoded JSON body; the raw text when the body is not JSON; None when empty."""
    note: str = ""
    """What we know about the cause that the body does not say (see :func:`call`)."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    def reason(self) -> str:
        """``HTTP 422 Invalid: message`` from a Status body, for error messages."""
        if isinstance(self.data, dict):
            text = (
                f"HTTP {self.status} {self.data.get('reason', '')}: {self.data.get('message', '')}"
            )
        else:
            text = f"HTTP {self.status}: {str(self.data)[:300]}"
        return f"{text} ({self.note})" if self.note else text


RESTART_WINDOW = 60.0
"""Seconds after this client last found the apiserver unreachable during which a 403 is
taken for its authorizer still loading RBAC after a restart, and retried."""
RBAC_PATIENCE = 30.0
"""Up to this many seconds after the apiserver was unreachable, its 403s are retried once a
second (a restarted kube-apiserver took about 10 s on 2 busy cores to authorize again)."""
_unreachable: weakref.WeakKeyDictionary[ApiClient, float] = weakref.WeakKeyDictionary()


def _restarting(api: ApiClient, status: int, data: Any) -> float | None:
    """Seconds since this client found the apiserver unreachable, when ``status`` is a 403
    that a restarting apiserver gives (its RBAC authorizer not synced yet: the roles its
    bindings name are "not found"); None otherwise."""
    if status != 403:
        return None
    since = _unreachable.get(api)
    ago = time.monotonic() - since if since is not None else None
    message = str(data.get("message", "")) if isinstance(data, dict) else str(data)
    warming = "RBAC:" in message and "not found" in message
    if ago is not None and ago <= RESTART_WINDOW:
        return ago
    return 0.0 if warming else None


TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,  # MaxRetryError, ProtocolError, NewConnectionError, timeouts
    ConnectionError,  # refused, reset, aborted
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    attempts: int = 6
    """Total tries (1 = no retry). 6 tries with these delays wait at most ~15 s in all."""
    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return float(rng() * min(self.cap, self.base * (2**attempt)))


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(float(value), 30.0)
    except ValueError:
        return None


def call(
    api: ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: Query = None,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
) -> Response:
    """Send one request, retrying transient failures per ``retry``.

    After the last attempt, a transient HTTP status is returned as the Response and a
    transport error propagates to the caller (each stage translates it once).

    A 403 right after the apiserver was unreachable (or naming RBAC roles "not found") is
    what a restarted apiserver answers until its authorizer has loaded RBAC: it is retried
    like a transient failure, and if it persists the Response says so in ``note`` instead
    of leaving a bare "Forbidden" (issue 19).
    """
    attempt = 0
    while True:
        try:
            resp, resp_headers = _send(
                api, method, path, body, query, content_type, headers, timeout
            )
        except TRANSIENT_ERRORS:
            _unreachable[api] = time.monotonic()
            if attempt + 1 >= retry.attempts:
                raise
            sleep(retry.delay(attempt))
            attempt += 1
            continue
        ago = _restarting(api, resp.status, resp.data)
        if ago is not None:
            patient = 0 < ago < RBAC_PATIENCE and retry.attempts > 1
            if patient or attempt + 1 < retry.attempts:
                sleep(1.0 if patient else retry.delay(attempt))
                attempt += 1
                continue
            since = f"unreachable {ago:.0f}s before" if ago else "restarting"
            return Response(
                resp.status,
                resp.data,
                f"the apiserver was {since}: it restarted and its authorization (RBAC) is not "
                f"ready yet, still refused after {attempt + 1} tries; retry in a few seconds",
            )
        if resp.status not in TRANSIENT_STATUS or attempt + 1 >= retry.attempts:
            return resp
        wait = _retry_after(resp_headers)
        sleep(wait if wait is not None else retry.delay(attempt))
        attempt += 1


AUTH_TTL = 1.0
"""Seconds one answer of the client's authentication step is reused. The step runs the
kubeconfig loader's refresh hook, which re-resolves proxies from the whole environment on
every call (about half of apply's client CPU per request); tokens live for minutes and the
in-cluster loader re-reads its file once a minute, so a second-old answer is as fresh."""

_auth_cache: weakref.WeakKeyDictionary[ApiClient, tuple[float, dict[str, str], list[Any]]] = (
    weakref.WeakKeyDictionary()
)
_auth_lock = threading.Lock()


def _auth(api: ApiClient) -> tuple[dict[str, str], list[Any]]:
    """The headers and query parameters the client's authentication step adds (a bearer
    token, refreshed by its hook), computed at most once per :data:`AUTH_TTL` per client."""
    now = time.monotonic()
    with _auth_lock:
        cached = _auth_cache.get(api)
    if cached is not None and now - cached[0] < AUTH_TTL:
        return cached[1], cached[2]
    headers: dict[str, str] = {}
    query: list[Any] = []
    api.update_params_for_auth(headers, query, ["BearerToken"], "", "GET", None)
    with _auth_lock:
        _auth_cache[api] = (now, headers, query)
    return headers, query


def ensure_pool(api: ApiClient, size: int) -> None:
    """Keep at least ``size`` connections per host in ``api``'s pool.

    urllib3 opens a new connection when every pooled one is busy and discards it afterwards
    when the pool is full: with more parallel requests than the pool holds (the client's
    default is 5 per CPU), every surplus request pays a TLS handshake. Pools already made
    are dropped so the next request builds one of the new size.
    """
    manager = api.rest_client.pool_manager
    if int(manager.connection_pool_kw.get("maxsize") or 1) >= size:
        return
    manager.connection_pool_kw["maxsize"] = size
    manager.clear()


def _send(
    api: ApiClient,
    method: str,
    path: str,
    body: Any,
    query: Query,
    content_type: str,
    headers: Mapping[str, str] | None,
    timeout: float,
) -> tuple[Response, Mapping[str, str]]:
    params = list(query.items()) if isinstance(query, Mapping) else list(query or [])
    all_headers = {**api.default_headers, "Accept": "application/json", **(headers or {})}
    payload: bytes | None = None
    if body is not None:
        all_headers["Content-Type"] = content_type
        # Compact, as kubectl sends it: the apiserver parses an apply patch as YAML, and
        # every byte of the default ", " / ": " padding goes through that parser.
        payload = (
            body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        )
    auth_headers, auth_query = _auth(api)
    all_headers.update(auth_headers)
    params.extend(auth_query)
    url = api.configuration.host + path + (f"?{urlencode(params)}" if params else "")
    resp = api.rest_client.pool_manager.request(
        method,
        url,
        body=payload,
        headers=all_headers,
        timeout=urllib3.Timeout(total=timeout),
        preload_content=True,
    )
    raw: bytes = resp.data
    try:
        data: Any = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = raw.decode("utf-8", "replace")
    return Response(int(resp.status), data), dict(resp.headers)
