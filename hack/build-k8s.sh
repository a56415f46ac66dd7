#!/usr/bin/env bash
# Build the local control plane from Go modules: kube-apiserver, kube-scheduler,
# kube-controller-manager, kubectl and kubelet from k8s.io/kubernetes (through the wrapper module hack/k8sbin), and
# etcd from go.etcd.io/etcd/server/v3 (through hack/etcdbin). Versions come from
# hack/versions.env only. Binaries land in a per-user cache keyed by version and by a hash of the
# wrapper modules, so a warm run only hashes a few files.
#
# Why wrappers: k8s.io/kubernetes requires its ~30 staging modules at v0.0.0 and replaces them
# with ./staging/src paths, which a dependent module ignores and `go install pkg@version` refuses.
# hack/k8sbin requires k8s.io/kubernetes and replaces every staging module with its published
# v0.<minor>.<patch>. etcd has its own replaces, so it gets a separate module whose dependency
# versions never mix with Kubernetes'.
#
# Usage:
#   hack/build-k8s.sh            build what is not cached; print KUBE_BIN_DIR=... ETCD_BIN_DIR=...
#   hack/build-k8s.sh --print    print the cache directories; build nothing; exit 1 if not built
#   hack/build-k8s.sh --update   regenerate hack/k8sbin and hack/etcdbin (go.mod, go.sum) after
#                                a change of hack/versions.env (needs the Go module proxy)
# Exit codes: 0 ok, 1 not built (--print), 2 usage, 3 no usable Go toolchain, 4 module download
# failed, 5 compile failed. Progress goes to stderr; only the KEY=value lines go to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
. "$ROOT/hack/versions.env"
K8S_MODDIR=$ROOT/hack/k8sbin
ETCD_MODDIR=$ROOT/hack/etcdbin
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/cu-reconciler/bin
RECIPE=1 # bump when the build recipe changes in a way that the hashed inputs below do not show

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off

K8S_MINOR=${KUBERNETES_VERSION#*.}
K8S_MINOR=${K8S_MINOR%%.*}
STAGING_VERSION=v0.${KUBERNETES_VERSION#*.} # 1.37.2 -> v0.37.2
# The control plane, plus kubectl (benchmarks, kustomize, auth checks) and kubelet (real nodes).
K8S_CMDS=(kube-apiserver kube-scheduler kube-controller-manager kubectl kubelet)
K8S_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBERNETES_VERSION"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=$K8S_MINOR"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"
ETCD_LDFLAGS="-s -w"

say() { echo "build-k8s: $*" >&2; }
die() {
  local code=$1
  shift
  echo "build-k8s: error: $*" >&2
  exit "$code"
}

# key <moddir> <ldflags> <version>: a short hash of everything that decides the binaries.
key() {
  {
    echo "recipe=$RECIPE version=$3 ldflags=$2 os=$(uname -s) arch=$(uname -m)"
    cat "$1"/go.mod "$1"/go.sum "$1"/*.go 2>/dev/null || true
  } | sha256sum | cut -c1-12
}

K8S_DIR=$CACHE/kubernetes-v$KUBERNETES_VERSION-$(key "$K8S_MODDIR" "$K8S_LDFLAGS" "$KUBERNETES_VERSION")
ETCD_DIR=$CACHE/etcd-v$ETCD_VERSION-$(key "$ETCD_MODDIR" "$ETCD_LDFLAGS" "$ETCD_VERSION")

built() { [ -f "$1/BUILDINFO" ]; }

print_dirs() {
  echo "KUBE_BIN_DIR=$K8S_DIR"
  echo "ETCD_BIN_DIR=$ETCD_DIR"
}

# need_go: one clear message instead of a stack of errors when Go is missing or too old.
need_go() {
  command -v go >/dev/null 2>&1 ||
    die 3 "the Go toolchain is not on PATH. Building the local control plane (Kubernetes" \
      "v$KUBERNETES_VERSION, etcd v$ETCD_VERSION) needs Go >= 1.26 (https://go.dev/dl/)" \
      "and access to a Go module proxy (GOPROXY)."
  local v
  v=$(go env GOVERSION 2>/dev/null) || die 3 "'go env GOVERSION' failed; is the Go install broken?"
  v=${v#go}
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  minor=${minor%%[!0-9]*}
  if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "${minor:-0}" -lt 26 ]; }; then
    die 3 "Go $v is too old: Kubernetes v$KUBERNETES_VERSION needs Go >= 1.26 (GOTOOLCHAIN=local)."
  fi
}

# download <moddir> <what>: fetch modules first, so an unreachable proxy is one clear message.
download() {
  local err
  if ! err=$(cd "$1" && go mod download 2>&1); then
    die 4 "cannot download the Go modules for $2 (module ${1#"$ROOT"/}) from" \
      "GOPROXY=$(go env GOPROXY); is the Go module proxy reachable? go said:" \
      "$(printf '%s' "$err" | head -n 3 | tr '\n' ' ')"
  fi
}

# compile <label> <log> <go build args...>: run go build -v, print a progress line every
# 100 compiled packages, keep the full log, and show its tail on failure.
compile() {
  local label=$1 log=$2
  shift 2
  local start=$SECONDS n=0 line
  say "$label: compiling (go build -v, log: $log)"
  set +e
  (go build -v "$@" 2>&1; echo "rc=$?") | tee "$log" | while IFS= read -r line; do
    case $line in
    rc=*) ;;
    *)
      n=$((n + 1))
      if [ $((n % 100)) -eq 0 ]; then say "$label: $n packages compiled, $((SECONDS - start))s ($line)"; fi
      ;;
    esac
  done
  set -e
  local rc
  rc=$(tail -n1 "$log")
  if [ "$rc" != "rc=0" ]; then
    tail -n 30 "$log" >&2
    die 5 "$label: go build failed ($rc); full log: $log"
  fi
  say "$label: done in $((SECONDS - start))s"
}

# install_dir <final> <tmp> <info>: write BUILDINFO last and rename, so a half build never counts.
install_dir() {
  printf '%s\n' "$3" "go=$(go env GOVERSION)" "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$2/BUILDINFO"
  rm -rf "$1"
  mv -T "$2" "$1"
}

build_k8s() {
  built "$K8S_DIR" && return 0
  need_go
  local t0=$SECONDS tmp=$K8S_DIR.tmp.$$
  say "Kubernetes v$KUBERNETES_VERSION not cached; building ${K8S_CMDS[*]} into $K8S_DIR"
  say "about 15 min on 2 cores with an empty Go build cache, under a minute with a warm one"
  download "$K8S_MODDIR" "k8s.io/kubernetes@v$KUBERNETES_VERSION"
  mkdir -p "$tmp"
  local pkgs=()
  for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$K8S_MODDIR" && compile kubernetes "$tmp.log" -mod=readonly -trimpath \
    -ldflags "$K8S_LDFLAGS" -o "$tmp/" "${pkgs[@]}")
  install_dir "$K8S_DIR" "$tmp" "kubernetes=v$KUBERNETES_VERSION"
  rm -f "$tmp.log"
  say "Kubernetes v$KUBERNETES_VERSION built in $((SECONDS - t0))s"
}

build_etcd() {
  built "$ETCD_DIR" && return 0
  need_go
  local t0=$SECONDS tmp=$ETCD_DIR.tmp.$$
  say "etcd v$ETCD_VERSION not cached; building into $ETCD_DIR"
  download "$ETCD_MODDIR" "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  mkdir -p "$tmp"
  (cd "$ETCD_MODDIR" && compile etcd "$tmp.log" -mod=readonly -trimpath \
    -ldflags "$ETCD_LDFLAGS" -o "$tmp/etcd" .)
  install_dir "$ETCD_DIR" "$tmp" "etcd=v$ETCD_VERSION"
  rm -f "$tmp.log"
  say "etcd v$ETCD_VERSION built in $((SECONDS - t0))s"
}

# update: regenerate both wrapper modules from hack/versions.env.
update() {
  need_go
  local kgomod staging
  say "resolving k8s.io/kubernetes@v$KUBERNETES_VERSION"
  kgomod=$(go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p') || die 4 "cannot download k8s.io/kubernetes@v$KUBERNETES_VERSION"
  [ -n "$kgomod" ] || die 4 "cannot download k8s.io/kubernetes@v$KUBERNETES_VERSION"
  # The staging modules are exactly those that k8s.io/kubernetes replaces with ./staging/src.
  staging=$(grep -E '=> \./staging/src/' "$kgomod" | awk '{print $1}' | sort -u)
  (
    cd "$K8S_MODDIR"
    rm -f go.mod go.sum
    go mod init cu-reconciler.invalid/k8sbin >/dev/null 2>&1
    go mod edit -go=1.26.0 -godebug=default=go1.26
    for m in $staging; do go mod edit -replace="$m=$m@$STAGING_VERSION"; done
    say "k8sbin: go get -tool ${K8S_CMDS[*]} @v$KUBERNETES_VERSION"
    local tools=()
    for c in "${K8S_CMDS[@]}"; do tools+=("k8s.io/kubernetes/cmd/$c@v$KUBERNETES_VERSION"); done
    go get -tool "${tools[@]}"
    go mod tidy
  ) || die 4 "regenerating hack/k8sbin failed (see above)"
  (
    cd "$ETCD_MODDIR"
    rm -f go.mod go.sum
    go mod init cu-reconciler.invalid/etcdbin >/dev/null 2>&1
    go mod edit -go=1.26.0
    say "etcdbin: go get go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    go mod tidy
  ) || die 4 "regenerating hack/etcdbin failed (see above)"
  say "updated hack/k8sbin and hack/etcdbin; commit their go.mod and go.sum"
}

check_pins() {
  grep -qE "k8s.io/kubernetes v$KUBERNETES_VERSION( //.*)?\$" "$K8S_MODDIR/go.mod" ||
    die 2 "hack/k8sbin/go.mod does not require k8s.io/kubernetes v$KUBERNETES_VERSION" \
      "(hack/versions.env); run hack/build-k8s.sh --update"
  grep -qE "go.etcd.io/etcd/server/v3 v$ETCD_VERSION( //.*)?\$" "$ETCD_MODDIR/go.mod" ||
    die 2 "hack/etcdbin/go.mod does not require go.etcd.io/etcd/server/v3 v$ETCD_VERSION" \
      "(hack/versions.env); run hack/build-k8s.sh --update"
}

case ${1:-} in
--update)
  update
  ;;
--print)
  print_dirs
  built "$K8S_DIR" && built "$ETCD_DIR"
  ;;
"")
  check_pins
  mkdir -p "$CACHE"
  # One build at a time per user: a second caller waits, then finds the cache warm.
  exec 9>"$CACHE/.lock"
  if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    say "another build holds $CACHE/.lock; waiting"
    flock 9
  fi
  build_etcd
  build_k8s
  print_dirs
  ;;
*)
  echo "usage: $0 [--print|--update]" >&2
  exit 2
  ;;
esac
