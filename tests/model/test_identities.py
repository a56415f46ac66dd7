"""The username grammar for identities the fence admits (reconciler.model.identities)."""

from __future__ import annotations

import pytest

from reconciler.model import identities

HOSTILE = [
    pytest.param("x'] || true || 'a' in ['b", id="cel-injection-single-quote"),
    pytest.param('x"] || true || "a" in ["b', id="cel-injection-double-quote"),
    pytest.param("alice\\", id="trailing-backslash"),
    pytest.param("a\\' || true || '", id="escaped-quote"),
    pytest.param("alice\nbob", id="newline"),
    pytest.param("alice\x00", id="nul"),
    pytest.param(" alice", id="leading-space"),
    pytest.param("alice bob", id="space"),
    pytest.param("\u0430rgocd", id="cyrillic-look-alike"),
    pytest.param("alice\u202e", id="right-to-left-override"),
    pytest.param("alice\u200b", id="zero-width-space"),
    pytest.param("😀", id="emoji"),
    pytest.param("a) || (true", id="parentheses"),
    pytest.param("a]", id="bracket"),
    pytest.param("-alice", id="leading-dash"),
    pytest.param("", id="empty"),
    pytest.param("a" * 254, id="too-long"),
]
GROUPS_AND_SYSTEM = [
    pytest.param("system:anonymous", id="anonymous"),
    pytest.param("system:authenticated", id="authenticated-group"),
    pytest.param("system:unauthenticated", id="unauthenticated-group"),
    pytest.param("system:masters", id="masters-group"),
    pytest.param("system:serviceaccounts", id="all-service-accounts-group"),
    pytest.param("system:serviceaccounts:argocd", id="namespace-service-accounts-group"),
    pytest.param("system:kube-scheduler", id="component"),
    pytest.param("system:node:n1", id="node"),
    pytest.param("system:serviceaccount:argocd", id="service-account-without-name"),
    pytest.param("system:serviceaccount:Argo:cd", id="service-account-uppercase-namespace"),
    pytest.param("system:serviceaccount:argocd:a'b", id="service-account-quote"),
    pytest.param("system:serviceaccount:argocd:a:b", id="service-account-extra-colon"),
]
VALID = [
    pytest.param("system:serviceaccount:cu-system:cu-sync", id="service-account"),
    pytest.param("system:serviceaccount:argocd:argocd.sync-1", id="service-account-dotted"),
    pytest.param("alice", id="user"),
    pytest.param("o'brien", id="apostrophe"),
    pytest.param("o'brien@example.com", id="email-with-apostrophe"),
    pytest.param("https://issuer.example.com#1234", id="oidc-issuer-prefixed"),
    pytest.param("ci+deploy=bot/x~1", id="punctuation"),
    pytest.param("a" * 253, id="longest"),
]


@pytest.mark.parametrize("identity", HOSTILE + GROUPS_AND_SYSTEM)
def test_refused(identity: str) -> None:
    assert identities.problem(identity)


@pytest.mark.parametrize("identity", VALID)
def test_accepted(identity: str) -> None:
    assert identities.problem(identity) is None


def test_groups_say_why() -> None:
    assert "group" in str(identities.problem("system:serviceaccounts:argocd"))
    assert "unauthenticated" in str(identities.problem("system:anonymous"))
