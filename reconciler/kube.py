"""The one way cu-reconciler talks HTTP to a kube-apiserver: plain JSON over the client.

Bodies go out as dicts and come back as dicts through the ``kubernetes`` client's transport
(TLS, credentials and host from the kubeconfig), not through its generated models: the
diff must see exactly what the apiserver stored, server-side apply needs
``application/apply-patch+yaml``, and a model round-trip can drop or add fields.
This module only sends and decodes; each stage translates failures into its own error type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
) -> Response:
    """Send one request; transport errors (TLS, connection) propagate to the caller."""
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
    return Response(int(resp.status), data)
