"""The fence: vendor devices we sell as CU cannot be taken around CU accounting.

Three objects (design and limits in docs/double-allocation.md):

1. **DeviceTaintRules** (resource.k8s.io/v1, GA in 1.37) taint every managed vendor device
   with ``settings.fence.taintKey``. One rule per vendor pool when all of its devices are
   managed (a node-sized rule), one per device otherwise. A claim without a matching
   toleration can no longer be allocated such a device.
2. Our generated claims tolerate that taint on the vendor sub-requests only, and pair each
   CU device with its exact vendor device (``matchAttribute`` on the vendor's uuid).
3. A **ValidatingAdmissionPolicy** (+Binding) denies any ResourceClaim or
   ResourceClaimTemplate that tolerates the fence key (or tolerates everything) or asks for
   a DeviceClass whose name has our prefix (``cu-``, :data:`classes.CLASS_PREFIX`), unless
   the request comes from the reconciler's service account, from kube-controller-manager
   (which copies our vetted templates) or from an identity ``admittedIdentities`` names.

The policy depends on settings only (the taint key, the reconciler's namespace, the admitted
identities), never on the pools: it covers a pool's class before the class exists and after
it is pruned, so no apply order, engine wave or crash can open a window when pools are added
or removed. Every value from the desired state enters its CEL as an escaped literal
(:mod:`reconciler.plan.cel`); validation has already refused identities outside the
Kubernetes username grammar (:mod:`reconciler.model.identities`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import documents as docs
from reconciler.model import identities, ownership
from reconciler.model import observed as obs
from reconciler.plan import cel, classes

TAINT_RULE_API = "resource.k8s.io/v1"
ADMISSION_API = "admissionregistration.k8s.io/v1"
POLICY_NAME = "cu-reconciler-fence"
SERVICE_ACCOUNT = "cu-reconciler"
CONTROLLER_USERS = (
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:resource-claim-controller",
)
MAX_NAME = 253


def rule_name(vendor: str, pool: str, device: str | None = None) -> str:
    parts = ["cu-fence", vendor, pool] + ([device] if device else [])
    name = "-".join(parts).lower()
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME - 11].rstrip('-.')}-{digest}"


@dataclass(slots=True)
class Memo:
    """The rules :func:`taint_rules` wrote last time per vendor pool, with what they were
    made from (the pool's managed devices, its device count, the fence, labels and
    annotations): equal inputs give the same objects again. Pools not seen are forgotten."""

    pools: dict[tuple[str, str], tuple[tuple[object, ...], list[dict[str, Any]]]] = field(
        default_factory=dict
    )


def taint_rules(
    managed: Iterable[obs.ObservedDevice],
    all_devices: Iterable[obs.ObservedDevice],
    fence: docs.FenceSettings,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    memo: Memo | None = None,
) -> list[dict[str, Any]]:
    """One rule per fully managed vendor pool, else one per managed device."""
    managed_by_pool: dict[tuple[str, str], list[obs.ObservedDevice]] = defaultdict(list)
    for device in managed:
        managed_by_pool[(device.id.driver, device.id.pool)].append(device)
    total_by_pool: dict[tuple[str, str], int] = defaultdict(int)
    for device in all_devices:
        total_by_pool[(device.id.driver, device.id.pool)] += 1
    taint = {"key": fence.taint_key, "effect": fence.effect}
    out: list[dict[str, Any]] = []
    fresh: dict[tuple[str, str], tuple[tuple[object, ...], list[dict[str, Any]]]] = {}
    for (driver, pool), devices in sorted(managed_by_pool.items()):
        key = (tuple(devices), total_by_pool[(driver, pool)], fence, labels, annotations)
        hit = memo.pools.get((driver, pool)) if memo is not None else None
        if hit is not None and hit[0] == key:
            fresh[(driver, pool)] = hit
            out += hit[1]
            continue
        rules: list[dict[str, Any]] = []
        vendor = devices[0].vendor
        if len(devices) == total_by_pool[(driver, pool)]:
            selectors = [(rule_name(vendor, pool), {"driver": driver, "pool": pool})]
        else:
            selectors = [
                (
                    rule_name(vendor, pool, d.id.device),
                    {"driver": driver, "pool": pool, "device": d.id.device},
                )
                for d in sorted(devices, key=lambda d: d.id)
            ]
        for name, selector in selectors:
            rules.append(
                {
                    "apiVersion": TAINT_RULE_API,
                    "kind": "DeviceTaintRule",
                    "metadata": {
                        "name": name,
                        "labels": dict(
                            sorted({**labels, ownership.COMPONENT_LABEL: "fence"}.items())
                        ),
                        "annotations": dict(annotations),
                    },
                    "spec": {"deviceSelector": selector, "taint": dict(taint)},
                }
            )
        fresh[(driver, pool)] = (key, rules)
        out += rules
    if memo is not None:
        memo.pools = fresh
    return out


def _tolerates_fence(var: str, key: str) -> str:
    return (
        f"(has({var}.key) && {var}.key == {cel.string(key)}) || "
        f"((!has({var}.key) || {var}.key == '') && has({var}.operator) && "
        f"{var}.operator == 'Exists')"
    )


def exempt_users(settings: docs.ClusterSettingsSpec) -> tuple[str, ...]:
    """Who may create claims that tolerate the fence or use CU classes: the reconciler's
    ServiceAccount, kube-controller-manager stamping claims from our templates, and the
    identities ``admittedIdentities`` names (a GitOps engine applying the rendered objects)."""
    return (
        identities.service_account(settings.reconciler_namespace, SERVICE_ACCOUNT),
        *CONTROLLER_USERS,
        *sorted(set(settings.admitted_identities) - set(CONTROLLER_USERS)),
    )


def identity_problem(
    objects: Iterable[Mapping[str, Any]], settings: docs.ClusterSettingsSpec, username: str
) -> str | None:
    """Why ``username`` must not apply ``objects``, or None.

    When the target holds the fence's admission policy, a writer it does not exempt would
    install the policy and then be denied our own claims half-way through the apply (a
    server-side dry run cannot see a policy the same apply creates). So it is refused first.
    """
    fenced = any(
        o.get("kind") == "ValidatingAdmissionPolicy"
        and (o.get("metadata") or {}).get("name") == POLICY_NAME
        for o in objects
    )
    exempt = exempt_users(settings)
    reconciler = exempt[0]
    if not fenced or username == reconciler or username in settings.admitted_identities:
        return None
    return (
        f"the apply runs as {username!r}, but the fence's admission policy lets only "
        f"{reconciler!r} create CU claims: run cuctl apply (or the controller) as that "
        "ServiceAccount (deploy/rbac.yaml)"
    )


def admission_policy(
    settings: docs.ClusterSettingsSpec,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy and its Binding: a function of the settings alone, so
    adding or removing a pool never changes (and never narrows) it."""
    key = settings.fence.taint_key
    exempt = exempt_users(settings)
    tolerations_ok = (
        "variables.requests.all(r, "
        f"(!has(r.exactly) || !has(r.exactly.tolerations) || "
        f"r.exactly.tolerations.all(t, !({_tolerates_fence('t', key)}))) && "
        f"(!has(r.firstAvailable) || r.firstAvailable.all(s, !has(s.tolerations) || "
        f"s.tolerations.all(t, !({_tolerates_fence('t', key)})))))"
    )
    prefix = cel.string(classes.CLASS_PREFIX)
    classes_ok = (
        "variables.requests.all(r, "
        f"(!has(r.exactly) || !r.exactly.deviceClassName.startsWith({prefix})) && "
        f"(!has(r.firstAvailable) || "
        f"r.firstAvailable.all(s, !s.deviceClassName.startsWith({prefix}))))"
    )
    meta_labels = dict(sorted({**labels, ownership.COMPONENT_LABEL: "fence"}.items()))
    policy = {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME, "labels": meta_labels, "annotations": dict(annotations)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["resource.k8s.io"],
                        "apiVersions": ["v1"],
                        # CREATE only: claim and template specs are immutable, so a
                        # create is the only moment a toleration or a CU class can appear.
                        # Matching UPDATE would also deny kube-scheduler's finalizer and
                        # status writes on our own claims (seen on a real 1.37 scheduler).
                        "operations": ["CREATE"],
                        "resources": ["resourceclaims", "resourceclaimtemplates"],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "not-the-reconciler",
                    "expression": f"!(request.userInfo.username in {cel.strings(exempt)})",
                }
            ],
            "variables": [
                {
                    "name": "spec",
                    "expression": "request.resource.resource == 'resourceclaimtemplates' "
                    "? object.spec.spec : object.spec",
                },
                {
                    "name": "requests",
                    "expression": "has(variables.spec.devices) && "
                    "has(variables.spec.devices.requests) ? variables.spec.devices.requests : []",
                },
            ],
            "validations": [
                {
                    "expression": tolerations_ok,
                    "message": f"only cu-reconciler may tolerate the device taint {key}: "
                    "these vendor devices are sold as Compute Units; declare a CUClaim in Git",
                    "reason": "Forbidden",
                },
                {
                    "expression": classes_ok,
                    "message": f"DeviceClasses named {classes.CLASS_PREFIX}* (Compute Unit "
                    "pools, existing or not) are used only by claims that cu-reconciler "
                    "generates; declare a CUClaim in Git",
                    "reason": "Forbidden",
                },
            ],
        },
    }
    binding = {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME, "labels": meta_labels, "annotations": dict(annotations)},
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }
    return [policy, binding]
