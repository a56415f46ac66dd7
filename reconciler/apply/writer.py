"""The I/O seam of apply: one small Protocol and its Kubernetes implementation.

Server-side apply sends the target as a plain dict with ``application/apply-patch+yaml``, a
field manager and ``force`` (controllers own their fields, per the SSA documentation).
A dry run goes in the query for patches and in the DeleteOptions *body* for deletes: when a
DELETE carries a body, the apiserver reads its options from the body only, and a
``?dryRun=All`` beside a body without ``dryRun`` deletes for real.
Transport and HTTP errors are translated once, here, into
:class:`reconciler.errors.ApplyError` naming the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client as k8s_client

from reconciler import errors, kube
from reconciler.model import kinds, ownership

FIELD_MANAGER = ownership.FIELD_MANAGER
JSON_PATCH = "application/json-patch+json"


class Writer(Protocol):
    """Writes one object. ``dry_run`` asks the server to validate and admit without storing."""

    def whoami(self) -> str:
        """The username the API server authenticates this writer as."""
        ...

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """Server-side apply; returns the object as it would be stored (dry run), or, for a
        real write, its apiVersion, kind and new ``metadata`` (the resourceVersion that
        counts it)."""
        ...

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        """Delete with the object's uid/resourceVersion as preconditions; False = NotFound."""
        ...

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """Replace (PUT) the whole object; ``obj`` carries the uid and resourceVersion it
        must still have (else HTTP 409). Returns the object as stored (or as it would be)."""
        ...

    def set_managed_fields(
        self, live: Mapping[str, Any], fields: list[Any], *, dry_run: bool
    ) -> dict[str, Any]:
        """Replace ``metadata.managedFields`` if ``live``'s resourceVersion still holds."""
        ...

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored object of that name (None = NotFound): who holds a name we want."""
        ...

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Every stored object of ``kind``, in every namespace, as its ``metadata`` by
        (namespace, name): one list finds every name a batch of creates would collide with."""
        ...


class QuotaExceededError(errors.ApplyError):
    """A ResourceQuota refused a create (HTTP 403 "exceeded quota"), or its admission lost
    the race to update the quota's usage (HTTP 409 on ``resourcequotas``).

    After a delete, the quota's usage drops only once kube-controller-manager's quota
    controller has seen the deletion, so a replace's re-create may be refused for a moment;
    while that controller writes the quota's status, the create's own usage update can
    conflict with it (seen in the fault-injection test on a busy control plane). Both pass.
    """


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
    page: int = 500
    """Items per page of :meth:`holders`' list."""

    def _call(
        self,
        method: str,
        path: str,
        *,
        subject: str,
        query: list[tuple[str, str]],
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> kube.Response:
        try:
            return kube.call(
                self.api,
                method,
                path,
                body=body,
                query=query,
                content_type=content_type,
                headers={"Accept": accept},
                timeout=self.timeout,
            )
        except Exception as exc:  # urllib3, ssl, socket: translate once, at the boundary
            raise errors.ApplyError(f"{method} {path}: {exc}", subject=subject) from exc

    def whoami(self) -> str:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        path = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        resp = self._call("POST", path, subject="SelfSubjectReview", query=[], body=review)
        if not resp.ok or not isinstance(resp.data, dict):
            raise errors.ApplyError(resp.reason(), subject="SelfSubjectReview")
        return str(resp.data.get("status", {}).get("userInfo", {}).get("username", ""))

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        subject = subject_of(obj)
        # fieldValidation=Ignore: left unset, the apiserver ("Warn") parses the YAML patch a
        # second time, strictly, only to warn of duplicate keys, which a body serialised from
        # a dict cannot hold; about 8 % of its CPU (pprof: BENCHMARKS.md, session 5). Unknown
        # fields are still refused: server-side apply types the patch against the schema.
        query = [("fieldManager", self.field_manager), ("force", "true")]
        query.append(("fieldValidation", "Ignore"))
        if dry_run:
            query.append(("dryRun", "All"))
        body = {k: v for k, v in obj.items() if k != "status"}
        resp = self._call(
            "PATCH",
            path_of(obj),
            subject=subject,
            query=query,
            body=body,
            content_type=kube.APPLY_PATCH,
            # A real write needs only the new resourceVersion back: the dry run already
            # showed the stored object, and encoding it again costs the apiserver CPU.
            accept="application/json" if dry_run else kube.METADATA_ONLY,
        )
        reason = resp.reason()
        if (resp.status == 403 and "exceeded quota" in reason) or (
            resp.status == 409 and "resourcequotas" in reason
        ):
            raise QuotaExceededError(reason, subject=subject)
        if not resp.ok:
            raise errors.ApplyError(resp.reason(), subject=subject)
        data = resp.data if isinstance(resp.data, dict) else {}
        if dry_run:
            return data
        # PartialObjectMetadata names no kind of ours: keep the object's own identity, so
        # what a write returns can be deleted or compared like any object we hold.
        meta = data.get("metadata")
        return {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "metadata": meta or {},
        }

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        subject = subject_of(obj)
        meta = _meta(obj)
        preconditions = {
            k: meta[k] for k in ("uid", "resourceVersion") if isinstance(meta.get(k), str)
        }
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if preconditions:
            body["preconditions"] = preconditions
        query: list[tuple[str, str]] = []
        if dry_run:  # in the body: with a body present, the query's dryRun is ignored
            body["dryRun"] = ["All"]
            query.append(("dryRun", "All"))
        resp = self._call("DELETE", path_of(obj), subject=subject, query=query, body=body)
        if resp.status == 404:
            return False
        if not resp.ok:
            raise errors.ApplyError(resp.reason(), subject=subject)
        return True

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        subject = subject_of(obj)
        query = [("fieldManager", self.field_manager)]
        if dry_run:
            query.append(("dryRun", "All"))
        body = {k: v for k, v in obj.items() if k != "status"}
        resp = self._call("PUT", path_of(obj), subject=subject, query=query, body=body)
        if not resp.ok:
            raise errors.ApplyError(resp.reason(), subject=subject)
        return resp.data if isinstance(resp.data, dict) else {}

    def set_managed_fields(
        self, live: Mapping[str, Any], fields: list[Any], *, dry_run: bool
    ) -> dict[str, Any]:
        subject = subject_of(live)
        version = str(_meta(live).get("resourceVersion", ""))
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "replace", "path": "/metadata/managedFields", "value": fields},
        ]
        query = [("fieldManager", self.field_manager)]
        if dry_run:
            query.append(("dryRun", "All"))
        resp = self._call(
            "PATCH",
            path_of(live),
            subject=subject,
            query=query,
            body=patch,
            content_type=JSON_PATCH,
        )
        if not resp.ok:
            details = resp.data.get("details") if isinstance(resp.data, dict) else None
            causes = f" {details.get('causes')}" if isinstance(details, dict) else ""
            raise errors.ApplyError(resp.reason() + causes, subject=subject)
        return resp.data if isinstance(resp.data, dict) else {}

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        k = kinds.of(kind)
        out: dict[tuple[str, str], dict[str, Any]] = {}
        token = ""
        while True:  # pages, so a cluster with many claims is not one huge response
            query = [("limit", str(self.page))] + ([("continue", token)] if token else [])
            resp = self._call(
                "GET",
                k.collection_path(),
                subject=kind,
                query=query,
                accept=kube.METADATA_LIST,
            )
            if not resp.ok or not isinstance(resp.data, dict):
                raise errors.ApplyError(resp.reason(), subject=kind)
            for item in resp.data.get("items") or []:
                meta = item.get("metadata") or {}
                out[(str(meta.get("namespace") or ""), str(meta.get("name", "")))] = meta
            token = str((resp.data.get("metadata") or {}).get("continue") or "")
            if not token:
                return out

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        subject = subject_of(obj)
        resp = self._call("GET", path_of(obj), subject=subject, query=[])
        if resp.status == 404:
            return None
        if not resp.ok:
            raise errors.ApplyError(resp.reason(), subject=subject)
        return resp.data if isinstance(resp.data, dict) else None
