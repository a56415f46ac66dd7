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
from http.server import ThreadingHTTPServer

from reconciler.controller import httpserver

MAX_BODY = 5 * 1024 * 1024


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


def serve(
    port: int,
    secret: bytes,
    branch: str,
    on_push: Callable[[], None],
    host: str = "0.0.0.0",
) -> ThreadingHTTPServer:
    """Serve ``POST /hook`` (any path) on a daemon thread; return the server."""

    class Handler(httpserver.QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, b"payload too large\n")
                return
            body = self.rfile.read(length)
            if not secret or not verified(secret, dict(self.headers.items()), body):
                self._send(401, b"signature or token invalid\n")
                return
            event = (
                self.headers.get("X-GitHub-Event")
                or self.headers.get("X-Gitea-Event")
                or self.headers.get("X-Gitlab-Event")
                or ""
            )
            if event.lower() in ("ping",):
                self._send(200, b"pong\n")
                return
            if pushed_branch(body) != branch:
                self._send(202, b"ignored: not a push to the tracked branch\n")
                return
            on_push()
            self._send(202, b"reconcile requested\n")

    return httpserver.start(Handler, host, port, "webhook")
