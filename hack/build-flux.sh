#!/usr/bin/env bash
# Build Flux's source-controller and kustomize-controller (the two controllers deploy/flux uses)
# from the Go module proxy, pinned by hack/versions.env, cached per user like hack/build-k8s.sh.
#
# Why not `go install module@version`: both controllers replace their own api module with ./api,
# a nested module the published zip leaves out, and `go install` refuses modules with replace
# directives. So each controller's module is copied from the module cache, its ./api replace is
# dropped for a requirement on the published api module of the same version (the same code), and
# it is built as the main module (-mod=mod: only the modules the binary needs are downloaded,
# not the test-only ones). Their CRDs (config/crd/bases) are copied next to the binaries.
#
# Usage:
#   hack/build-flux.sh          build if not cached; print FLUX_BIN_DIR=...
#   hack/build-flux.sh --print  print the cache directory; exit 1 if not built
# Exit codes: 0 ok, 1 not built (--print), 2 usage, 3 no Go, 4 download failed, 5 compile failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
. "$ROOT/hack/versions.env"
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/cu-reconciler/bin
RECIPE=1 # bump when the build recipe changes in a way the hashed inputs do not show
LDFLAGS="-s -w"
CONTROLLERS=("source-controller@v$FLUX_SOURCE_CONTROLLER_VERSION" "kustomize-controller@v$FLUX_KUSTOMIZE_CONTROLLER_VERSION")

# Modules the proxy reachable here does not serve at the version the controllers require (403),
# replaced by the nearest served patch release of the same minor version.
FLUX_REPLACES=("github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@v0.18.1")

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off

say() { echo "build-flux: $*" >&2; }
die() {
  local code=$1
  shift
  echo "build-flux: error: $*" >&2
  exit "$code"
}

KEY=$(echo "recipe=$RECIPE flux=$FLUX_VERSION ${CONTROLLERS[*]} ${FLUX_REPLACES[*]} ldflags=$LDFLAGS os=$(uname -s) arch=$(uname -m)" |
  sha256sum | cut -c1-12)
DIR=$CACHE/flux-v$FLUX_VERSION-$KEY

built() { [ -f "$DIR/BUILDINFO" ]; }

build_one() { # NAME@VERSION TMPDIR
  local name=${1%@*} version=${1#*@} tmp=$2 src err
  src=$(go mod download -json "github.com/fluxcd/$name@$version" 2>&1 | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p') ||
    true
  [ -n "$src" ] || die 4 "cannot download github.com/fluxcd/$name@$version: $(go mod download "github.com/fluxcd/$name@$version" 2>&1 | head -n 3 | tr '\n' ' ')"
  rm -rf "$tmp/src-$name"
  cp -r "$src" "$tmp/src-$name"
  chmod -R u+w "$tmp/src-$name"
  err=$(cd "$tmp/src-$name" &&
    go mod edit -dropreplace="github.com/fluxcd/$name/api" -require="github.com/fluxcd/$name/api@$version" \
      "${FLUX_REPLACES[@]/#/-replace=}" 2>&1) || die 4 "cannot edit go.mod of $name $version: $err"
  if ! (cd "$tmp/src-$name" && go build -mod=mod -trimpath -ldflags "$LDFLAGS" -o "$tmp/$name" .) >"$tmp/$name.log" 2>&1; then
    tail -n 30 "$tmp/$name.log" >&2
    die 5 "go build of $name $version failed; full log: $tmp/$name.log"
  fi
  mkdir -p "$tmp/crds"
  cp "$tmp/src-$name"/config/crd/bases/*.yaml "$tmp/crds/"
  rm -rf "$tmp/src-$name" "$tmp/$name.log"
  say "$name $version built"
}

build() {
  built && return 0
  command -v go >/dev/null 2>&1 || die 3 "the Go toolchain is not on PATH; Flux v$FLUX_VERSION needs Go >= 1.26"
  local t0=$SECONDS tmp=$DIR.tmp.$$ c
  say "Flux v$FLUX_VERSION controllers not cached; building into $DIR (several minutes on 2 cores)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for c in "${CONTROLLERS[@]}"; do build_one "$c" "$tmp"; done
  printf '%s\n' "flux=v$FLUX_VERSION" "${CONTROLLERS[@]}" "go=$(go env GOVERSION)" \
    "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "seconds=$((SECONDS - t0))" >"$tmp/BUILDINFO"
  rm -rf "$DIR"
  mv -T "$tmp" "$DIR"
  say "Flux v$FLUX_VERSION controllers built in $((SECONDS - t0))s"
}

case ${1:-} in
--print)
  echo "FLUX_BIN_DIR=$DIR"
  built
  ;;
"")
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.flux.lock"
  if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    say "another build holds $CACHE/.flux.lock; waiting"
    flock 9
  fi
  build
  echo "FLUX_BIN_DIR=$DIR"
  ;;
*)
  echo "usage: $0 [--print]" >&2
  exit 2
  ;;
esac
