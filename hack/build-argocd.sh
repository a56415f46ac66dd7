#!/usr/bin/env bash
# Build Argo CD (application controller, repo-server, config-management-plugin server, ApplicationSet
# controller) from Go modules through the wrapper module hack/argocdbin, pinned by hack/versions.env,
# cached per user like hack/build-k8s.sh. One binary; the four component names are symlinks to it.
# Next to it, the kustomize binary the repo-server runs for Kustomize sources (the Argo CD image
# ships one; the ApplicationSet's per-cluster CUSync is a Kustomize source), pinned likewise.
#
# Why a wrapper: argo-cd v3.3.9 replaces github.com/argoproj/gitops-engine with ./gitops-engine,
# which a dependent module ignores; hack/argocdbin requires the published gitops-engine pseudo-
# version instead and copies argo-cd's other replace lines.
#
# Usage:
#   hack/build-argocd.sh          build if not cached; print ARGOCD_BIN_DIR=...
#   hack/build-argocd.sh --print  print the cache directory; exit 1 if not built
# Exit codes: 0 ok, 1 not built (--print), 2 usage or pin mismatch, 3 no Go, 4 download failed,
# 5 compile failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
. "$ROOT/hack/versions.env"
MODDIR=$ROOT/hack/argocdbin
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/cu-reconciler/bin
RECIPE=2
LDFLAGS="-s -w -X github.com/argoproj/argo-cd/v3/common.version=$ARGOCD_VERSION"
NAMES=(argocd-application-controller argocd-repo-server argocd-cmp-server argocd-applicationset-controller)

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off

say() { echo "build-argocd: $*" >&2; }
die() {
  local code=$1
  shift
  echo "build-argocd: error: $*" >&2
  exit "$code"
}

KEY=$({
  echo "recipe=$RECIPE version=$ARGOCD_VERSION kustomize=$KUSTOMIZE_VERSION ldflags=$LDFLAGS os=$(uname -s) arch=$(uname -m)"
  cat "$MODDIR"/go.mod "$MODDIR"/go.sum "$MODDIR"/*.go
} | sha256sum | cut -c1-12)
DIR=$CACHE/argocd-v$ARGOCD_VERSION-$KEY

built() { [ -f "$DIR/BUILDINFO" ]; }

build() {
  built && return 0
  command -v go >/dev/null 2>&1 || die 3 "the Go toolchain is not on PATH; Argo CD v$ARGOCD_VERSION needs Go >= 1.25"
  grep -qE "github.com/argoproj/argo-cd/v3 v$ARGOCD_VERSION\$" "$MODDIR/go.mod" ||
    die 2 "hack/argocdbin/go.mod does not require argo-cd v$ARGOCD_VERSION (hack/versions.env)"
  local t0=$SECONDS tmp=$DIR.tmp.$$ err
  say "Argo CD v$ARGOCD_VERSION not cached; building into $DIR (several minutes on 2 cores)"
  err=$(cd "$MODDIR" && go mod download 2>&1) ||
    die 4 "cannot download the Go modules for Argo CD v$ARGOCD_VERSION: $(printf '%s' "$err" | head -n 3 | tr '\n' ' ')"
  mkdir -p "$tmp"
  if ! (cd "$MODDIR" && go build -mod=readonly -trimpath -ldflags "$LDFLAGS" -o "$tmp/argocd" .) >"$tmp.log" 2>&1; then
    tail -n 30 "$tmp.log" >&2
    die 5 "go build failed; full log: $tmp.log"
  fi
  for n in "${NAMES[@]}"; do ln -sf argocd "$tmp/$n"; done
  if ! (cd "$tmp" && GOBIN=$tmp go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kustomize/kustomize/v5@v$KUSTOMIZE_VERSION") >"$tmp.log" 2>&1; then
    tail -n 30 "$tmp.log" >&2
    die 5 "go install of kustomize v$KUSTOMIZE_VERSION failed; full log: $tmp.log"
  fi
  printf '%s\n' "argocd=v$ARGOCD_VERSION" "kustomize=v$KUSTOMIZE_VERSION" "go=$(go env GOVERSION)" "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$tmp/BUILDINFO"
  rm -rf "$DIR"
  mv -T "$tmp" "$DIR"
  rm -f "$tmp.log"
  say "Argo CD v$ARGOCD_VERSION built in $((SECONDS - t0))s"
}

case ${1:-} in
--print)
  echo "ARGOCD_BIN_DIR=$DIR"
  built
  ;;
"")
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.argocd.lock"
  if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    say "another build holds $CACHE/.argocd.lock; waiting"
    flock 9
  fi
  build
  echo "ARGOCD_BIN_DIR=$DIR"
  ;;
*)
  echo "usage: $0 [--print]" >&2
  exit 2
  ;;
esac
