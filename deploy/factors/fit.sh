#!/bin/sh
# Clone the desired-state repository, learn factors from the records and push the bot
# branch for review. `cuctl factors fit --write` commits with Git plumbing on top of the
# base branch (the clone's checkout is never touched), commits nothing when the branch
# already holds the same content, and pushes as a compare-and-swap against the bot branch
# as fetched here: a push by anyone else in between, or a reviewer's commit on the branch,
# makes it refuse (exit 2) and change nothing on the remote.
#
# The last line says what happened, and the exit code matches it:
#   0  "cu-factors: changed: ..."            factors changed, branch pushed for review
#   0  "cu-factors: nothing to change: ..."  every factor held or unchanged, nothing pushed
#   2  "cu-factors: failed: ..."             bad input, invalid repository, refused push, …
# (a failure of git clone itself exits with git's code). Anything non-zero fails the Job.
set -eu
: "${REPO_URL:?}" "${BASE_BRANCH:?}" "${BRANCH:?}" "${RECORDS:?}"
export GIT_SSH_COMMAND="ssh -i /etc/git-secret/ssh-privatekey -o IdentitiesOnly=yes -o UserKnownHostsFile=/etc/git-secret/known_hosts -o StrictHostKeyChecking=yes"
export GIT_TERMINAL_PROMPT=0
work=$(mktemp -d)
git clone --quiet --single-branch --branch "$BASE_BRANCH" "$REPO_URL" "$work/repo"
cd "$work/repo"
# The bot branch as the remote has it (absent on the first run), as a local branch (an
# unchanged fit is then recognised and moves nothing) and as the remote-tracking ref the
# push leases against.
git fetch --quiet origin "+refs/heads/$BRANCH:refs/heads/$BRANCH" \
  "+refs/heads/$BRANCH:refs/remotes/origin/$BRANCH" 2>/dev/null || true
set -- factors fit --records "$RECORDS" --repo "$work/repo/${REPO_PATH:-.}" \
  --base HEAD --write --branch "$BRANCH" --push --remote origin --engine "${ENGINE:-local}"
if [ -n "${DASK_SCHEDULER:-}" ]; then
  set -- "$@" --scheduler "$DASK_SCHEDULER"
fi
rc=0
cuctl "$@" 2>"$work/stderr" || rc=$?
cat "$work/stderr" >&2
# Exit 1 is "changed" only with cuctl's own line saying where the branch now is: anything
# else that exits 1 (an interpreter dying with a traceback) is a failure, not a change.
if [ "$rc" -eq 1 ] && ! grep -q " on $BRANCH (base [0-9a-f]*): .* (pushed to origin)\$" "$work/stderr"; then
  rc=3
fi
case "$rc" in
0)
  echo "cu-factors: nothing to change: every factor held or unchanged; nothing pushed"
  exit 0
  ;;
1)
  echo "cu-factors: changed: factors moved; $BRANCH pushed to origin for review"
  exit 0
  ;;
*)
  echo "cu-factors: failed (cuctl exit $rc): nothing pushed; see the errors above" >&2
  exit 2
  ;;
esac
