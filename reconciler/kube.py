"""The one way cu-reconciler talks HTTP to a kube-apiserver: plain JSON over the client.

Bodies go out as dicts and come back as dicts through the ``kubernetes`` client's transport
(TLS, credentials and host from the kubeconfig), not through its generated models: the
diff must see exactly what the apiserver stored, server-side apply needs
``application/apply-patch+yaml``, and a model round-trip can drop or add fields.
This module only sends and decodes; each stage translates failures into its own error type.

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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient

APPLY_PATCH = "application/apply-patch+yaml"
Query = Mapping[str, str] | Sequence[tuple[str, str]] | None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    data: Any
    """The decoded JSON body; the raw text when the body is not JSON; None when empty."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    def reason(self) -> str:
        """``HTTP 422 Invalid: message`` from a Status body, for error messages."""
        if isinstance(self.data, dict):
            return (
                f"HTTP {self.status} {self.data.get('reason', '')}: {self.data.get('message', '')}"
            )
        return f"HTTP {self.status}: {str(self.data)[:300]}"


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
    """
    attempt = 0
    while True:
        try:
            resp, resp_headers = _send(
                api, method, path, body, query, content_type, headers, timeout
            )
        except TRANSIENT_ERRORS:
            if attempt + 1 >= retry.attempts:
                raise
            sleep(retry.delay(attempt))
            attempt += 1
            continue
        if resp.status not in TRANSIENT_STATUS or attempt + 1 >= retry.attempts:
            return resp
        wait = _retry_after(resp_headers)
        sleep(wait if wait is not None else retry.delay(attempt))
        attempt += 1


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
    all_headers = {"Accept": "application/json", **(headers or {})}
    if body is not None:
        all_headers["Content-Type"] = content_type
    method_, url, headers_, body_, _ = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=params,
        header_params=all_headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(method_, url, header_params=headers_, body=body_, _request_timeout=timeout)
    raw: bytes = resp.read()  # type: ignore[no-untyped-call]
    text = raw.decode("utf-8") if raw else ""
    try:
        data: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        data = text
    got = resp.getheaders() or {}  # type: ignore[no-untyped-call]
    return Response(int(resp.status), data), dict(got)
