"""Plain-JSON requests through a ``kubernetes.client.ApiClient``.

Why not the typed models: the test helpers must see exactly what the apiserver stored, field
for field, to prove that no feature gate dropped anything; a round-trip through the generated
pydantic models could hide or add fields. So bodies go out as dicts and come back as dicts,
while TLS, credentials and the host still come from the ApiClient (that is, the kubeconfig).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from reconciler import kube

APPLY_PATCH = kube.APPLY_PATCH
MERGE_PATCH = "application/merge-patch+json"


def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    content_type: str = "application/json",
    timeout: float = 30.0,
) -> Any:
    """Send one request and return the decoded JSON body (None when empty).

    Raises ``kubernetes.client.exceptions.ApiException`` for any non-2xx answer, like the
    typed client does, so callers handle errors one way (``exc.status == 404``).
    """
    resp = kube.call(
        api, method, path, body=body, query=query, content_type=content_type, timeout=timeout
    )
    if not resp.ok:
        text = resp.data if isinstance(resp.data, str) else json.dumps(resp.data)
        raise ApiException(status=resp.status, reason=resp.reason(), body=text)
    return resp.data


def apply(api: ApiClient, path: str, body: Mapping[str, Any], *, field_manager: str) -> Any:
    """Server-side apply ``body`` to ``path`` (the object's own URL), forcing conflicts."""
    return request(
        api,
        "PATCH",
        path,
        body=dict(body),
        query={"fieldManager": field_manager, "force": "true"},
        content_type=APPLY_PATCH,
    )


def delete(api: ApiClient, path: str, *, preconditions: Mapping[str, str] | None = None) -> bool:
    """Delete the object at ``path``; False if it was already gone (NotFound means done)."""
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if preconditions:
        body["preconditions"] = dict(preconditions)
    try:
        request(api, "DELETE", path, body=body)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
