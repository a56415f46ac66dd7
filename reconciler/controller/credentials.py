"""Git credentials: kept out of every echo of the repository URL, handed to git privately.

Why: a URL such as ``https://x-access-token:TOKEN@host/repo.git`` given to ``--repo`` would
otherwise be copied into the CUSync spec the controller creates, its status, Events, logs and
the clone's ``.git/config``; anyone who can read a CUSync or an Event in ``default`` would
hold the token. The controller splits such a URL once (:func:`split`): the public part goes
everywhere, the user and password only into the environment of the git processes it starts,
read back by a credential helper (:func:`git_env`). :func:`redact` is applied to every text
that leaves the process (status, Events, logs), so a URL with credentials that reaches a
message by another path (git's own stderr, a spec someone wrote by hand) is masked too.
The supported way to pass credentials is the Secret ``cu-reconciler-git`` (docs/controller.md).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never printed, even in a traceback's locals
        return f"Credentials(username={MASK}, password={MASK})"


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


def git_env(credentials: Credentials | None) -> dict[str, str]:
    """Environment for the git processes: never prompt; with credentials, a helper that
    answers from two variables (appended after any helper the Deployment configures)."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if credentials is None:
        return env
    try:
        index = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
    except ValueError:
        index = 0
    env.update(
        {
            "GIT_CONFIG_COUNT": str(index + 1),
            f"GIT_CONFIG_KEY_{index}": "credential.helper",
            f"GIT_CONFIG_VALUE_{index}": _HELPER,
            USER_VAR: credentials.username,
            PASSWORD_VAR: credentials.password,
        }
    )
    return env
