#!/usr/bin/env bash
# The pull-request preview: cuctl validate (annotations), cuctl plan --base (one comment).
# Inputs (environment): CU_PATH, CU_BASE_REF (target branch), CU_COMMENT (true/false),
# GITHUB_TOKEN, GITHUB_REPOSITORY, CU_PR_NUMBER, CU_COMMENT_AUTHOR, GITHUB_API_URL,
# GITHUB_OUTPUT and GITHUB_STEP_SUMMARY (optional), CU_WORK (scratch directory, default a
# temporary one). Exit 1 when the desired state is invalid or the plan cannot be computed; a plan
# with changes is not a failure, and neither is a comment GitHub refuses (a warning).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
path=${CU_PATH:-.}
base=${CU_BASE_REF:?CU_BASE_REF: the target branch is required}
work=${CU_WORK:-$(mktemp -d)}
out=${GITHUB_OUTPUT:-/dev/null}
summary=${GITHUB_STEP_SUMMARY:-/dev/null}

# The base branch must exist locally as a ref (actions/checkout fetches only the PR head).
if ! git -C "$path" rev-parse --verify --quiet "refs/remotes/origin/$base" >/dev/null; then
  git -C "$path" fetch --no-tags --quiet origin "+refs/heads/$base:refs/remotes/origin/$base" || true
fi
base_rev="origin/$base"
git -C "$path" rev-parse --verify --quiet "$base_rev^{commit}" >/dev/null || base_rev=$base

cuctl validate "$path" --rev HEAD -o json >"$work/validate.json" 2>"$work/validate.err"
validate_rc=$?
# cuctl's messages quote file names and values from the pull request: relayed, never run as
# workflow commands (annotate.py relay).
python3 "$here/annotate.py" relay <"$work/validate.err" >&2
python3 "$here/annotate.py" --root "$path" <"$work/validate.json"

plan_rc=2
: >"$work/plan.md"
: >"$work/plan.err"
if [ "$validate_rc" -le 1 ]; then
  cuctl plan "$path" --rev HEAD --base "$base_rev" -o markdown >"$work/plan.md" 2>"$work/plan.err"
  plan_rc=$?
  python3 "$here/annotate.py" relay <"$work/plan.err" >&2
fi

# The outputs and the job summary come first: a comment GitHub refuses (a fork's read-only
# token) must not lose them.
{
  [ "$validate_rc" -eq 0 ] && echo "valid=true" || echo "valid=false"
  [ "$plan_rc" -eq 1 ] && echo "changes=true" || echo "changes=false"
} >>"$out"

python3 "$here/comment.py" body \
  --validate "$work/validate.json" --validate-rc "$validate_rc" --validate-err "$work/validate.err" \
  --plan "$work/plan.md" --plan-err "$work/plan.err" --plan-rc "$plan_rc" \
  --base "$base" --head "$(git -C "$path" rev-parse HEAD)" \
  --summary "$work/summary.md" >"$work/comment.md"
body_rc=$?
if [ "$body_rc" -ne 0 ]; then
  printf '%s\n' "::warning title=cu-reconciler preview::the preview text could not be built (exit $body_rc)"
  printf '**cu-reconciler preview**: the preview text could not be built; see the log.\n' >"$work/summary.md"
fi
cat "$work/summary.md" >>"$summary"

if [ "$body_rc" -eq 0 ] && [ "${CU_COMMENT:-true}" = "true" ] && [ -n "${CU_PR_NUMBER:-}" ]; then
  python3 "$here/comment.py" post --body "$work/comment.md" --output "$out"
else
  echo "comment=skipped" >>"$out"
fi
[ "$validate_rc" -eq 0 ] && [ "$plan_rc" -le 1 ]
