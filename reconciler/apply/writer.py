"""The I/O seam of apply: one small Protocol and its Kubernetes implementation.

Bodies go out as plain dicts through the ``kubernetes`` client's transport (``call_api``):
server-side apply needs ``application/apply-patch+yaml``, a field manager and ``force``,
and a round-trip through the generated models could drop fields. HTTP and transport errors
are translated once, here, into :class:`reconciler.errors.ApplyError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client as k8s_client

from reconciler import errors
from reconciler.model import kinds

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "cu-reconciler"


class Writer(Protocol):
    """Writes one object. ``dry_run`` asks the server to validate and admit without storing."""

    def whoami(self) -> str:
        """The username the API server authenticates this writer as."""
        ...

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]: ...

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        """Delete with the object's uid/resourceVersion as preconditions; False = NotFound."""
        ...


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def path_of(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    kind = kinds.of(str(obj.get("kind", "")))
    return kind.object_path(str(meta.get("name", "")), str(meta.get("namespace") or ""))


def subject_of(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    ns = meta.get("namespace")
    name = meta.get("name", "")
    return f"{obj.get('kind', '')}/{ns}/{name}" if ns else f"{obj.get('kind', '')}/{name}"


@dataclass(frozen=True, slots=True)
class KubeWriter:
    """A :class:`Writer` on a real apiserver."""

    api: k8s_client.ApiClient
    field_manager: str = FIELD_MANAGER
    timeout: float = 30.0

    def _call(
        self,
        method: str,
        path: str,
        *,
        subject: str,
        query: list[tuple[str, str]],
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            method_, url, headers_, body_, _ = self.api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            resp = self.api.call_api(
                method_, url, header_params=headers_, body=body_, _request_timeout=self.timeout
            )
            raw: bytes = resp.read()  # type: ignore[no-untyped-call]
        except Exception as exc:  # urllib3, ssl, socket: translate once, at the boundary
            raise errors.ApplyError(f"{method} {path}: {exc}", subject=subject) from exc
        text = raw.decode("utf-8") if raw else ""
        data = json.loads(text) if text.startswith("{") else None
        return resp.status, data if data is not None else text

    def whoami(self) -> str:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        path = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        status, data = self._call("POST", path, subject="SelfSubjectReview", query=[], body=review)
        if not 200 <= status <= 299 or not isinstance(data, dict):
            raise errors.ApplyError(_reason(status, data), subject="SelfSubjectReview")
        return str(data.get("status", {}).get("userInfo", {}).get("username", ""))

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        subject = subject_of(obj)
        query = [("fieldManager", self.field_manager), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        body = {k: v for k, v in obj.items() if k != "status"}
        status, data = self._call(
            "PATCH", path_of(obj), subject=subject, query=query, body=body, content_type=APPLY_PATCH
        )
        if not 200 <= status <= 299:
            raise errors.ApplyError(_reason(status, data), subject=subject)
        return data if isinstance(data, dict) else {}

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        subject = subject_of(obj)
        meta = _meta(obj)
        preconditions = {
            k: meta[k] for k in ("uid", "resourceVersion") if isinstance(meta.get(k), str)
        }
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if preconditions:
            body["preconditions"] = preconditions
        query = [("dryRun", "All")] if dry_run else []
        status, data = self._call("DELETE", path_of(obj), subject=subject, query=query, body=body)
        if status == 404:
            return False
        if not 200 <= status <= 299:
            raise errors.ApplyError(_reason(status, data), subject=subject)
        return True


def _reason(status: int, data: Any) -> str:
    if isinstance(data, dict):
        return f"HTTP {status} {data.get('reason', '')}: {data.get('message', '')}".strip()
    return f"HTTP {status}: {str(data)[:300]}"
