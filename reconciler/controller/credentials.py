"""Git credentials: kept out of every echo of the repository URL, handed to git privately.

Why: a URL such as ``https://x-access-token:TOKEN@host/repo.git`` given to ``--repo`` would
otherwise be copied into the CUSync spec the controller creates, its status, Events, logs and
the clone's ``.git/config``; anyone who can read a CUSync or an Event in ``default`` would
hold the token. The controller splits such a URL once (:func:`split`): the public part goes
everywhere, the user and password only into the environment of the git processes it starts,
read back by a credential helper (:func:`git_env`). :func:`redact` is applied to every text
that leaves the process (status, Events, logs), so a URL with credentials that reaches a
message by another path (git's own stderr, a spec someone wrote by hand) is masked too.

The supported way to pass credentials is a Secret: ``spec.git.secretRef`` names one in the
controller's namespace, with Flux GitRepository's keys (:func:`from_secret`); it is read at
each fetch (a rotation takes effect at the next one) and its values reach git only through the
environment of the git process (:func:`git_env`): never argv, a URL, ``.git/config``, a log,
the status or an Event. An ssh key is the exception git imposes: ssh reads it from a file, so
it is written to a private temporary directory (0700/0600) that is removed with the clone's
handle (:class:`SshFiles`). The Deployment's mounted Secret ``cu-reconciler-git`` (a
credential store file) still works as before (docs/controller.md).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
USER_VAR = "CU_GIT_USERNAME"
PASSWORD_VAR = "CU_GIT_PASSWORD"
_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'printf "username=%s\\npassword=%s\\n" "${USER_VAR}" "${PASSWORD_VAR}"; }}; f'
)


SECRET_KEYS = ("username", "password", "bearerToken", "identity", "known_hosts")
"""The keys read from a ``spec.git.secretRef`` Secret: Flux GitRepository's names."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What git needs to authenticate: HTTP basic (username, password), an HTTP bearer
    token, or an ssh private key with the known_hosts to check the server against."""

    username: str
    password: str
    bearer_token: str = ""
    identity: str = ""
    known_hosts: str = ""

    def __repr__(self) -> str:  # never printed, even in a traceback's locals
        return f"Credentials({MASK})"

    @property
    def ssh(self) -> bool:
        return bool(self.identity)


def from_secret(where: str, data: Mapping[str, str] | None) -> Credentials:
    """Credentials from a Secret's ``data`` (base64 values), Flux's keys: ``username`` and
    ``password`` (HTTP basic), or ``bearerToken`` (HTTP), or ``identity`` (an ssh private
    key) with ``known_hosts``. ``where`` (``Secret ns/name``) names it in the ValueError;
    the message names keys, never values."""
    values: dict[str, str] = {}
    for key, raw in (data or {}).items():
        if key not in SECRET_KEYS:
            continue
        try:
            values[key] = base64.b64decode(str(raw), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: key {key!r} is not base64 text") from exc
    values = {k: v for k, v in values.items() if v.strip()}
    if "identity" in values:
        if "known_hosts" not in values:
            raise ValueError(
                f"{where}: an ssh `identity` needs `known_hosts` (the server's host keys): "
                "the controller never trusts a host key on first use"
            )
        return Credentials("", "", identity=values["identity"], known_hosts=values["known_hosts"])
    if "bearerToken" in values:
        return Credentials("", "", bearer_token=values["bearerToken"].strip())
    if "username" in values or "password" in values:
        missing = [k for k in ("username", "password") if k not in values]
        if missing:
            raise ValueError(f"{where}: HTTP basic auth needs both `username` and `password`")
        return Credentials(values["username"], values["password"])
    raise ValueError(
        f"{where}: none of the keys username/password, bearerToken or identity/known_hosts "
        "holds a value"
    )


class SshFiles:
    """An ssh key and known_hosts in a private temporary directory, for ``GIT_SSH_COMMAND``
    (ssh reads keys only from files); :meth:`remove` deletes them."""

    def __init__(self, credentials: Credentials) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cu-ssh-"))  # mode 0700
        self.identity = self.dir / "identity"
        self.known_hosts = self.dir / "known_hosts"
        for path, text in ((self.identity, credentials.identity), (self.known_hosts, None)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                body = credentials.known_hosts if text is None else text
                out.write(body if body.endswith("\n") else body + "\n")

    def command(self) -> str:
        return (
            f"ssh -i {self.identity} -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
        )

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _masked(match: re.Match[str]) -> str:
    scheme, userinfo = match.group("scheme"), match.group("userinfo")
    if scheme[:-3].lower() in _SSH_SCHEMES and ":" not in userinfo:
        return match.group(0)  # ssh://git@host: a user name, no secret
    return f"{scheme}{MASK}@"


def redact(text: str) -> str:
    """``text`` with the user information of every URL in it masked (ssh user names kept)."""
    return _USERINFO.sub(_masked, text) if "@" in text else text


def split(url: str) -> tuple[str, Credentials | None]:
    """The URL without user information, and the credentials it carried (None: none).

    An ssh URL keeps its user name (``ssh://git@host``: not a secret) unless it carries a
    password. A path or an scp-like ``git@host:repo`` is returned unchanged."""
    if "://" not in url:
        return url, None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    if parts.scheme.lower() in _SSH_SCHEMES and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    public = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return public, Credentials(unquote(parts.username or ""), unquote(parts.password or ""))


def git_env(credentials: Credentials | None, ssh: SshFiles | None = None) -> dict[str, str]:
    """Environment for the git processes: never prompt; with HTTP basic credentials, a
    helper that answers from two variables (appended after any helper the Deployment
    configures); with a bearer token, an ``Authorization`` header as configuration from the
    environment (``GIT_CONFIG_*``: unlike ``git -c`` it is not in argv, which ``ps`` shows);
    with an ssh key, ``GIT_SSH_COMMAND`` pointing at ``ssh``'s files."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if credentials is None:
        return env
    try:
        index = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
    except ValueError:
        index = 0
    if credentials.ssh:
        if ssh is not None:
            env["GIT_SSH_COMMAND"] = ssh.command()
        return env
    if credentials.bearer_token:
        key, value = "http.extraHeader", f"Authorization: Bearer {credentials.bearer_token}"
    else:
        key, value = "credential.helper", _HELPER
        env.update({USER_VAR: credentials.username, PASSWORD_VAR: credentials.password})
    env.update(
        {
            "GIT_CONFIG_COUNT": str(index + 1),
            f"GIT_CONFIG_KEY_{index}": key,
            f"GIT_CONFIG_VALUE_{index}": value,
        }
    )
    return env


ENV_KEYS = ("GIT_CONFIG_COUNT", "GIT_SSH_COMMAND", USER_VAR, PASSWORD_VAR)
"""Variables :func:`git_env` may set beyond ``GIT_CONFIG_KEY_n``/``VALUE_n``."""
