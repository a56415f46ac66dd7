"""Git credentials come from the Secret ``spec.git.secretRef`` names (issue 20, item 5).

``cuctl run`` (as the reconciler's ServiceAccount, with deploy/rbac.yaml) follows a repository
served over real HTTP by ``git http-backend`` that refuses anyone without the right
``Authorization``. A Secret the Role does not name, a missing Secret and a wrong password each
end as Ready=False with a message naming the Secret; the right password converges, and so
does a bearer token after a rotation. No value of the Secret appears in the CUSync, an Event,
the controller's log, any file of its cache (``.git/config`` included) or a request line.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from githttp import GitHTTP
from harness import Env, listening, wait_for

from reconciler.controller import credentials
from reconciler.controller import status as st
from reconciler.devcluster import rawapi

pytestmark = pytest.mark.integration

SECRETS = "/api/v1/namespaces/cu-system/secrets"
NAME = "cu-reconciler-git"
EVENTS = "/apis/events.k8s.io/v1/namespaces/default/events"
USER, PASSWORD, WRONG, TOKEN = "deployer", "pw-7Hq2-right", "pw-0000-wrong", "tok-9Zx4-bearer"


def _put_secret(env: Env, data: dict[str, str]) -> None:
    rawapi.delete(env.admin, f"{SECRETS}/{NAME}")
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NAME, "namespace": "cu-system"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    rawapi.request(env.admin, "POST", SECRETS, body=body)


@pytest.fixture
def server(env: Env) -> Iterator[GitHTTP]:
    rawapi.delete(env.admin, f"{SECRETS}/{NAME}")
    served = GitHTTP(env.remote.parent, basic=(USER, PASSWORD), bearer=TOKEN)
    yield served
    served.close()
    rawapi.delete(env.admin, f"{SECRETS}/{NAME}")


def _failing_with(env: Env, *words: str) -> dict[str, Any] | None:
    ready = env.condition("Ready")
    if not ready or ready["status"] != "False" or ready["reason"] != "GitOperationFailed":
        return None
    return ready if all(w in ready["message"] for w in words) else None


def test_credentials_come_from_the_secret_ref_and_never_leave_it(env: Env, server: GitHTTP) -> None:
    url = server.url(env.remote.name)
    sync = {
        "apiVersion": f"{st.GROUP}/{st.VERSION}",
        "kind": st.KIND,
        "metadata": {"name": "default"},
        "spec": {
            "git": {"url": url, "branch": "main", "path": ".", "secretRef": {"name": "other"}},
            "interval": "1s",
        },
    }
    rawapi.request(env.admin, "POST", st.COLLECTION, body=sync)
    replica = env.start(interval="1s", resync="30s", extra=("--repo", url))
    # Issue 20.1: with the default flags /metrics and the probes listen on loopback only; the
    # webhook, which forges must reach, on --bind-address (default: all interfaces).
    assert wait_for("the metrics port", lambda: listening(replica.metrics_port), 60) == {
        "127.0.0.1"
    }
    assert listening(replica.webhook_port) == {"0.0.0.0"}

    # A Secret the Role does not name: refused by RBAC, and the message says where to fix it.
    wait_for(
        "a forbidden Secret",
        lambda: _failing_with(env, "Secret cu-system/other", "cu-reconciler-git-secret"),
        60,
    )
    assert server.denied == 0, "nothing was sent to Git without credentials"
    spec_git = {**sync["spec"]["git"], "secretRef": {"name": NAME}}  # type: ignore[index]
    patch = {"spec": {"git": spec_git}}
    rawapi.request(
        env.admin,
        "PATCH",
        st.path("default"),
        body=patch,
        content_type="application/merge-patch+json",
    )
    wait_for(
        "a missing Secret", lambda: _failing_with(env, f"Secret cu-system/{NAME}", "not found")
    )

    _put_secret(env, {"username": USER, "password": WRONG})
    wait_for(
        "a wrong password",
        lambda: _failing_with(
            env, "Authentication failed", f"(credentials from Secret cu-system/{NAME})"
        ),
        90,
    )
    assert server.denied > 0

    _put_secret(env, {"username": USER, "password": PASSWORD})
    env.ready_at(env.head(), timeout=120)

    # Rotated to a bearer token: the next commit is fetched with it.
    _put_secret(env, {"bearerToken": TOKEN})
    sha = env.commit("after the rotation", lambda root: (root / "NOTES.md").write_text("x\n"))
    env.ready_at(sha, timeout=120)

    replica.stop()
    secrets = (PASSWORD, WRONG, TOKEN)
    events = rawapi.request(env.admin, "GET", EVENTS)["items"]
    places = {
        "CUSync": json.dumps(env.sync()),
        "Events": json.dumps(events),
        "log": replica.log.read_text(errors="replace"),
        "request lines": "\n".join(server.requests),
    }
    for path in (env.work / f"cache-{replica.identity}").rglob("*"):
        if path.is_file():
            with contextlib.suppress(OSError):
                places[str(path)] = path.read_bytes().decode(errors="replace")
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a Secret value in {where}"
    assert any("Authentication failed" in json.dumps(e) for e in events), "the failure is an Event"


def test_the_secret_is_read_by_flux_keys_and_names_what_is_missing() -> None:
    def data(**values: str) -> dict[str, str]:
        return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}

    basic = credentials.from_secret("Secret s", data(username="u", password="p"))
    assert (basic.username, basic.password) == ("u", "p")
    assert credentials.from_secret("Secret s", data(bearerToken="t\n")).bearer_token == "t"
    ssh = credentials.from_secret("Secret s", data(identity="KEY", known_hosts="host ssh-ed25519"))
    assert ssh.ssh and "KEY" not in repr(ssh)
    for bad, words in (
        (data(username="u"), "both `username` and `password`"),
        (data(identity="KEY"), "known_hosts"),
        (data(other="x"), "none of the keys"),
        ({"password": "%%%"}, "not base64"),
    ):
        with pytest.raises(ValueError, match="Secret s") as info:
            credentials.from_secret("Secret s", bad)
        assert words in str(info.value) and "KEY" not in str(info.value)


def test_git_gets_the_secret_from_its_environment_only(tmp_path: Path) -> None:
    """Bearer: an ``http.extraHeader`` from ``GIT_CONFIG_*`` (not ``-c``, which ps shows);
    ssh: ``GIT_SSH_COMMAND`` naming private files that are removed afterwards."""
    token = credentials.Credentials("", "", bearer_token="tok")
    env = credentials.git_env(token)
    index = int(env["GIT_CONFIG_COUNT"]) - 1
    assert env[f"GIT_CONFIG_KEY_{index}"] == "http.extraHeader"
    assert env[f"GIT_CONFIG_VALUE_{index}"] == "Authorization: Bearer tok"
    key = credentials.Credentials("", "", identity="KEY", known_hosts="h ssh-ed25519 AAAA")
    files = credentials.SshFiles(key)
    try:
        env = credentials.git_env(key, files)
        assert str(files.identity) in env["GIT_SSH_COMMAND"]
        assert "StrictHostKeyChecking=yes" in env["GIT_SSH_COMMAND"]
        assert "KEY" not in json.dumps(env)
        assert files.dir.stat().st_mode & 0o777 == 0o700
        assert files.identity.stat().st_mode & 0o777 == 0o600
        assert files.identity.read_text() == "KEY\n"
    finally:
        files.remove()
    assert not files.dir.exists()
