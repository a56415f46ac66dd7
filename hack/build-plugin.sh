#!/usr/bin/env bash
# Build the CU kubelet plugin and the fake CRI runtime from the Go module kubeletplugin/
# (pinned to the same Kubernetes staging versions as hack/k8sbin). Binaries land in a per-user
# cache keyed by a hash of the module's sources, so a warm run only hashes a few files; a
# change to any .go file, go.mod or go.sum builds again.
#
# Usage:
#   hack/build-plugin.sh          build what is not cached; print PLUGIN_BIN_DIR=...
#   hack/build-plugin.sh --print  print the cache directory; build nothing; exit 1 if not built
# Exit codes: 0 ok, 1 not built (--print), 2 usage, 3 no usable Go toolchain, 4 module
# download failed, 5 compile failed. Progress goes to stderr; only KEY=value lines to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODDIR=$ROOT/kubeletplugin
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/cu-reconciler/bin
RECIPE=1 # bump when the build recipe changes in a way the hashed inputs do not show
CMDS=(cu-kubelet-plugin cu-fake-cri)
LDFLAGS="-s -w"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off

say() { echo "build-plugin: $*" >&2; }
die() {
  local code=$1
  shift
  echo "build-plugin: error: $*" >&2
  exit "$code"
}

key() {
  {
    echo "recipe=$RECIPE ldflags=$LDFLAGS os=$(uname -s) arch=$(uname -m)"
    cd "$MODDIR" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | xargs cat
  } | sha256sum | cut -c1-12
}

DIR=$CACHE/kubeletplugin-$(key)

built() { [ -f "$DIR/BUILDINFO" ]; }

case ${1:-} in
--print)
  echo "PLUGIN_BIN_DIR=$DIR"
  built
  exit $?
  ;;
"") ;;
*)
  echo "usage: $0 [--print]" >&2
  exit 2
  ;;
esac

if built; then
  echo "PLUGIN_BIN_DIR=$DIR"
  exit 0
fi
command -v go >/dev/null 2>&1 || die 3 "the Go toolchain is not on PATH; the kubelet plugin needs Go >= 1.26"
mkdir -p "$CACHE"
exec 9>"$CACHE/.plugin.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  say "another build holds $CACHE/.plugin.lock; waiting"
  flock 9
fi
if built; then
  echo "PLUGIN_BIN_DIR=$DIR"
  exit 0
fi
err=$(cd "$MODDIR" && go mod download 2>&1) ||
  die 4 "cannot download the Go modules of kubeletplugin/ from GOPROXY=$(go env GOPROXY): $(printf '%s' "$err" | head -n 3 | tr '\n' ' ')"
tmp=$DIR.tmp.$$
mkdir -p "$tmp"
t0=$SECONDS
say "building ${CMDS[*]} into $DIR (shares the Go build cache with hack/build-k8s.sh)"
pkgs=()
for c in "${CMDS[@]}"; do pkgs+=("./cmd/$c"); done
if ! (cd "$MODDIR" && go build -mod=readonly -trimpath -ldflags "$LDFLAGS" -o "$tmp/" "${pkgs[@]}") >"$tmp.log" 2>&1; then
  tail -n 30 "$tmp.log" >&2
  rm -rf "$tmp"
  die 5 "go build failed; full log: $tmp.log"
fi
printf '%s\n' "go=$(go env GOVERSION)" "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$tmp/BUILDINFO"
rm -rf "$DIR" "$tmp.log"
mv -T "$tmp" "$DIR"
say "built in $((SECONDS - t0))s"
echo "PLUGIN_BIN_DIR=$DIR"
