"""A tenant creating ResourceClaims in a tight loop against the real apiserver (issue 18).

Shared by the fence-window tests of ``cuctl apply`` (tests/integration), ``cuctl run``
(tests/controller) and the real Flux (tests/gitops): an impersonated user with RBAC for
claims in its own namespace (without our quota, so only the fence can refuse it) posts, in a
thread, every claim the fence must refuse; each outcome is counted, and each admitted claim
is kept so the test can check that it is reported (a FenceBypass finding) and that no tenant
claim holds a CU-managed device.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes.client import ApiClient

from reconciler import kube
from reconciler.devcluster import rawapi, workloads
from reconciler.plan import fence

FENCE_KEY = "cu-reconciler.io/managed"
Attempts = Callable[[int], list[tuple[str, dict[str, Any]]]]

# The pool every fence-window test adds and removes: the example's dev-tier Hygon nodes.
NEW_POOL = "dev-hygon"
DEV_HYGON = f"""\
apiVersion: cu-reconciler.io/v1alpha1
kind: CUPool
metadata:
  name: {NEW_POOL}
spec:
  selector:
    vendors: [hygon]
    nodeSelector:
      matchExpressions:
        - key: platform.example.com/tier
          operator: In
          values: [dev]
"""


def grant_claims(api: ApiClient, namespace: str, user: str) -> None:
    """RBAC for an impersonated user to create and delete claims in ``namespace``."""
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "fence-test-claims", "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["resource.k8s.io"],
                "resources": ["resourceclaims"],
                "verbs": ["create", "delete", "get"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": f"fence-test-claims-{abs(hash(user)) % 10**8}",
            "namespace": namespace,
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "fence-test-claims",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    rawapi.apply(api, f"{base}/roles/fence-test-claims", role, field_manager="fence-test")
    name = binding["metadata"]["name"]
    rawapi.apply(api, f"{base}/rolebindings/{name}", binding, field_manager="fence-test")


def post_as(
    api: ApiClient,
    user: str,
    body: dict[str, Any],
    *,
    dry_run: bool = False,
    retry: kube.RetryPolicy = kube.DEFAULT_RETRY,
) -> kube.Response:
    namespace = body["metadata"]["namespace"]
    return kube.call(
        api,
        "POST",
        f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims",
        body=body,
        query=[("dryRun", "All")] if dry_run else None,
        headers={"Impersonate-User": user},
        retry=retry,
    )


def tolerating_claim_admitted(api: ApiClient, namespace: str) -> bool:
    """An admin's dry-run create of a claim tolerating the fence key is admitted (False:
    refused by the fence's policy, :func:`fenced`)."""
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "fence-probe"},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "gpu",
                        "exactly": {
                            "deviceClassName": "fence-probe",
                            "tolerations": [{"key": FENCE_KEY, "operator": "Exists"}],
                        },
                    }
                ]
            }
        },
    }
    path = f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims"
    resp = kube.call(api, "POST", path, body=claim, query=[("dryRun", "All")])
    if fenced(resp):
        return False
    if not resp.ok:  # a 403 from RBAC or quota is not the fence: say so, do not wait on it
        raise AssertionError(f"dry-run create in {namespace}: {resp.reason()}")
    return True


def wait_fence(api: ApiClient, namespace: str, *, enforced: bool, timeout: float = 90.0) -> None:
    """Wait until the apiserver enforces the fence policy (``enforced``) or no longer does.

    Policies reach the admission plugin through its informer, a moment after a create or a
    delete: a just-deleted policy still denies the next test's tolerating claims (403), and a
    just-created one does not yet deny them.
    """
    workloads.wait_for(
        lambda: tolerating_claim_admitted(api, namespace) is not enforced,
        timeout=timeout,
        what=f"the apiserver to {'enforce' if enforced else 'stop enforcing'} the fence policy",
    )


def fenced(resp: kube.Response) -> bool:
    """Refused by the fence's policy (not by RBAC, quota or validation)."""
    return resp.status == 403 and fence.POLICY_NAME in resp.reason()


def fence_attempts(
    namespace: str,
    *,
    cu_classes: Iterable[str],
    tolerating_classes: Iterable[str],
) -> Attempts:
    """The tenant's round: a claim naming each CU class (before it exists, while it exists,
    after it is pruned), a fence toleration and a wildcard toleration on each other class."""
    cu_classes, tolerating_classes = tuple(cu_classes), tuple(tolerating_classes)

    def round_(n: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for i, name in enumerate(cu_classes):
            body = workloads.resource_claim(f"t{n}-class-{i}", name, namespace=namespace)
            out.append((f"class {name}", body))
        for i, name in enumerate(tolerating_classes):
            for kind, toleration in (
                ("fence", {"key": FENCE_KEY, "operator": "Exists"}),
                ("wildcard", {"operator": "Exists"}),
            ):
                body = workloads.resource_claim(
                    f"t{n}-{kind}-{i}", name, namespace=namespace, tolerations=[toleration]
                )
                out.append((f"{kind} toleration on {name}", body))
        return out

    return round_


@dataclass
class Loop:
    """The tenant's tight loop in a thread: every attempt's outcome and time.

    Each attempt is one request, never retried (a tenant does not wait: kube.call would
    hold a 403 for up to 30 s after an outage, taking it for RBAC still loading).
    ``unavailable`` counts attempts the apiserver did not answer (it is restarting),
    ``forbidden`` those RBAC refused (a restarted apiserver before its authorizer has loaded;
    the test checks the tenant's RBAC beforehand); anything else that is neither the fence's
    403 nor a 201 is ``unexpected``.
    """

    api: ApiClient
    user: str
    attempts: Attempts
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: Counter[str] = field(default_factory=Counter)
    admitted: list[tuple[float, str, str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    unavailable: int = 0
    forbidden: int = 0

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            for what, body in self.attempts(n):
                try:
                    resp = post_as(self.api, self.user, body, retry=kube.NO_RETRY)
                except (urllib3.exceptions.HTTPError, OSError):
                    self.unavailable += 1
                    time.sleep(0.05)
                    continue
                meta = body["metadata"]
                if fenced(resp):
                    self.outcomes[f"{what}: denied"] += 1
                elif resp.ok:
                    self.outcomes[f"{what}: ADMITTED"] += 1
                    self.admitted.append((time.monotonic(), what, meta["namespace"], meta["name"]))
                elif resp.status in (500, 502, 503, 504):
                    self.unavailable += 1
                    time.sleep(0.05)
                elif resp.status == 403:
                    self.forbidden += 1
                else:
                    self.unexpected.append(f"{what}: {resp.status} {resp.reason()[:200]}")

    @property
    def attempts_made(self) -> int:
        return sum(self.outcomes.values())

    @contextmanager
    def running(self) -> Iterator[Loop]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(timeout=60)

    def summary(self) -> str:
        return (
            f"{self.attempts_made} answered tenant attempts, {len(self.admitted)} admitted, "
            f"{self.unavailable} unanswered, {self.forbidden} refused by RBAC; "
            f"{dict(self.outcomes)}"
        )


def cu_held(api: ApiClient, namespace: str, cu_driver: str) -> list[str]:
    """Claims in ``namespace`` allocated a CU-managed device: one under our CU driver or a
    vendor device a live fence DeviceTaintRule selects."""
    rules = rawapi.request(api, "GET", "/apis/resource.k8s.io/v1/devicetaintrules")["items"]
    selectors = [
        r["spec"]["deviceSelector"]
        for r in rules
        if r["spec"].get("taint", {}).get("key") == FENCE_KEY
    ]

    def fenced_device(result: dict[str, Any]) -> bool:
        return result["driver"] == cu_driver or any(
            s.get("driver") == result["driver"]
            and s.get("pool") == result["pool"]
            and s.get("device", result["device"]) == result["device"]
            for s in selectors
        )

    claims = rawapi.request(
        api, "GET", f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims"
    )
    out = []
    for claim in claims["items"]:
        allocation = (claim.get("status") or {}).get("allocation") or {}
        for result in (allocation.get("devices") or {}).get("results") or ():
            if fenced_device(result):
                out.append(
                    f"{claim['metadata']['name']}: {result['driver']}/{result['pool']}/"
                    f"{result['device']}"
                )
    return out
