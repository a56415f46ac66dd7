"""Kubernetes identities the fence may admit: a grammar, checked before anything reaches CEL.

``ClusterSettings.spec.admittedIdentities`` names the users (besides the reconciler's own
ServiceAccount) that the fence's admission policy lets create CU claims. The string is
compared with ``request.userInfo.username``, so it is *data*: the planner writes it into the
policy as an escaped CEL string literal (:mod:`reconciler.plan.cel`), and this grammar keeps
out everything that is not a plausible username in the first place, so a typo or a hostile
commit fails ``cuctl validate`` with the file and line instead of producing a policy.

Kubernetes itself does not restrict usernames (an x509 CN or an OIDC claim can hold
anything), so the grammar here is ours, and deliberately narrow:

- ``system:serviceaccount:<namespace>:<name>``: a DNS label and a DNS subdomain, the form
  the apiserver gives a ServiceAccount token (and Argo CD or Flux impersonates);
- any other ``system:`` name is refused: the prefix is reserved for Kubernetes components,
  and the ones the fence must admit (kube-controller-manager) are admitted already;
  ``system:anonymous`` would admit unauthenticated requests;
- group names (``system:serviceaccounts``, ``system:authenticated``, ``system:masters``, …)
  are refused: the fence compares usernames, and admitting a group would admit every member;
- any other user: printable ASCII letters, digits and ``. _ @ + - = ' / # : ~``, starting
  with a letter or digit, at most 253 characters. This covers e-mail addresses (``o'brien@
  example.com``) and OIDC issuer-prefixed names (``https://issuer.example.com#1234``).
  Whitespace, control characters, quotes other than the apostrophe, backslashes, brackets,
  ``|``, ``&``, ``(`` and ``)`` are refused, and so is non-ASCII text: a homoglyph
  (a Cyrillic ``а`` in ``аrgocd``) would read as a trusted name in a review.
"""

from __future__ import annotations

import re

__all__ = [
    "ENGINE_CONTROLLERS",
    "MAX_LENGTH",
    "SERVICE_ACCOUNT_PREFIX",
    "is_engine_controller",
    "problem",
    "service_account",
]

MAX_LENGTH = 253
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=/#:~'-]*")
_GROUPS = frozenset(
    {"system:authenticated", "system:unauthenticated", "system:masters", "system:nodes"}
)


ENGINE_CONTROLLERS = frozenset(
    {"argocd-application-controller", "kustomize-controller", "helm-controller"}
)
"""ServiceAccount names of GitOps engines' own controllers: shared by every Application or
Kustomization the engine syncs, so admitting one admits them all (issue 18, item 6)."""


def is_engine_controller(identity: str) -> bool:
    """Whether ``identity`` is a GitOps engine controller's ServiceAccount, in any namespace."""
    if not identity.startswith(SERVICE_ACCOUNT_PREFIX):
        return False
    return identity.rpartition(":")[2] in ENGINE_CONTROLLERS


def service_account(namespace: str, name: str) -> str:
    """The username a ServiceAccount's requests carry."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def problem(identity: str) -> str | None:
    """What is wrong with ``identity`` as an admitted username, and what to write instead;
    None when it fits the grammar above."""
    if not identity:
        return "is empty; name a user or system:serviceaccount:<namespace>:<name>"
    if len(identity) > MAX_LENGTH:
        return f"is longer than {MAX_LENGTH} characters"
    if identity.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace, sep, name = identity[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        if not sep or not _DNS_LABEL.fullmatch(namespace) or len(namespace) > 63:
            return (
                "is not system:serviceaccount:<namespace>:<name> with a DNS-label namespace "
                "(lowercase letters, digits and '-')"
            )
        if not _DNS_SUBDOMAIN.fullmatch(name):
            return (
                "names a ServiceAccount that is not a DNS subdomain (lowercase letters, "
                "digits, '-' and '.')"
            )
        return None
    if identity in _GROUPS or identity.startswith("system:serviceaccounts"):
        return (
            "is a group, not a user: the fence compares usernames, and a group would admit "
            "every member; name the one ServiceAccount the engine syncs as"
        )
    if identity.startswith("system:"):
        return (
            "uses the 'system:' prefix Kubernetes reserves for its components (and "
            "system:anonymous would admit unauthenticated requests); the fence already "
            "admits kube-controller-manager; name system:serviceaccount:<namespace>:<name> "
            "or a user"
        )
    if not identity.isascii() or not identity.isprintable():
        return (
            "holds non-ASCII or unprintable characters (a look-alike letter reads as a "
            "trusted name in review); write the username in ASCII"
        )
    if not _USER.fullmatch(identity):
        return (
            "is not a username: use letters, digits and . _ @ + = ' / # : ~ -, starting "
            "with a letter or digit (no spaces, quotes, backslashes, brackets or operators)"
        )
    return None
