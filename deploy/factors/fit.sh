#!/bin/sh
# Clone the desired-state repository, learn factors from the records and push the bot
# branch for review. `cuctl factors fit --write` commits with Git plumbing on top of the
# base branch (the clone's checkout is never touched), commits nothing when the branch
# already holds the same content, and pushes with a lease. Exit: 0 nothing to change or
# pushed; anything else fails the Job (visible in `kubectl get jobs`).
set -eu
: "${REPO_URL:?}" "${BASE_BRANCH:?}" "${BRANCH:?}" "${RECORDS:?}"
export GIT_SSH_COMMAND="ssh -i /etc/git-secret/ssh-privatekey -o IdentitiesOnly=yes -o UserKnownHostsFile=/etc/git-secret/known_hosts -o StrictHostKeyChecking=yes"
export GIT_TERMINAL_PROMPT=0
work=$(mktemp -d)
git clone --quiet --single-branch --branch "$BASE_BRANCH" "$REPO_URL" "$work/repo"
cd "$work/repo"
# The bot branch as the remote has it (absent on the first run): an unchanged fit is then
# recognised and moves nothing.
git fetch --quiet origin "+refs/heads/$BRANCH:refs/heads/$BRANCH" 2>/dev/null || true
set -- factors fit --records "$RECORDS" --repo "$work/repo/${REPO_PATH:-.}" \
  --base HEAD --write --branch "$BRANCH" --push --remote origin --engine "${ENGINE:-local}"
if [ -n "${DASK_SCHEDULER:-}" ]; then
  set -- "$@" --scheduler "$DASK_SCHEDULER"
fi
rc=0
cuctl "$@" || rc=$?
# 1 = factors changed (and were pushed for review): a success for the Job.
if [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]; then
  exit 0
fi
exit "$rc"
