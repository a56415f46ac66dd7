"""Push webhooks from GitHub, GitLab and Gitea: verify, then ask for a reconcile.

Verification (each forge's documented scheme): GitHub ``X-Hub-Signature-256: sha256=<hex>``
and Gitea ``X-Gitea-Signature: <hex>`` are HMAC-SHA256 of the raw body with the shared
secret; GitLab sends the secret itself in ``X-Gitlab-Token``. Comparisons are constant-time.
A request that fails verification changes nothing and gets 401; a push to another branch
gets 202 and is ignored. The payload is only a hint: the controller fetches the branch
itself, so a forged (but signed) "after" SHA cannot make it apply anything not on the branch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping

from reconciler.controller import httpserver

MAX_BODY = 1024 * 1024
"""Push payloads above this are refused (413) before they are read. A forge's payload is
only a hint (the branch is fetched), so a refused one costs nothing: the next poll finds the
commit. GitHub documents up to 25 MB for huge pushes; ordinary ones are a few KB."""
LIMITS = httpserver.Limits(max_body=MAX_BODY, max_connections=32, methods=frozenset({"POST"}))


def verified(secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
    """True when the request carries a valid signature or token for ``secret``."""
    lower = {k.lower(): v for k, v in headers.items()}
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    github = lower.get("x-hub-signature-256", "")
    if github:
        return hmac.compare_digest(github, f"sha256={digest}")
    gitea = lower.get("x-gitea-signature", "") or lower.get("x-gogs-signature", "")
    if gitea:
        return hmac.compare_digest(gitea, digest)
    gitlab = lower.get("x-gitlab-token", "")
    if gitlab:
        return hmac.compare_digest(gitlab.encode(), secret)
    return False


def pushed_branch(body: bytes) -> str | None:
    """The branch a push payload names (``ref: refs/heads/<branch>``), None otherwise."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    if isinstance(ref, str) and ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    return None


def handler(secret: bytes, branch: str, on_push: Callable[[], None]) -> httpserver.Handler:
    """The webhook's request handler (any path): verify, then ask for a reconcile."""

    def handle(req: httpserver.Request) -> httpserver.Response:
        if not secret or not verified(secret, req.headers, req.body):
            return httpserver.Response(401, b"signature or token invalid\n")
        event = (
            req.headers.get("x-github-event")
            or req.headers.get("x-gitea-event")
            or req.headers.get("x-gitlab-event")
            or ""
        )
        if event.lower() == "ping":
            return httpserver.Response(200, b"pong\n")
        if pushed_branch(req.body) != branch:
            return httpserver.Response(202, b"ignored: not a push to the tracked branch\n")
        on_push()
        return httpserver.Response(202, b"reconcile requested\n")

    return handle


def serve(
    port: int,
    secret: bytes,
    branch: str,
    on_push: Callable[[], None],
    host: str = "0.0.0.0",
    tls: httpserver.TLS | None = None,
    limits: httpserver.Limits = LIMITS,
) -> httpserver.Server:
    """Serve ``POST`` (any path) on a daemon thread; return the server."""
    return httpserver.start(handler(secret, branch, on_push), host, port, "webhook", limits, tls)
