#!/usr/bin/env bash
# The quick start: install everything, build the local control plane, run the demo.
# Everything is made by the project's own scripts: .venv (PyPI), Kubernetes and etcd
# (Go module proxy, cached per user after the first build).
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/bootstrap.sh
./hack/build-k8s.sh >/dev/null
./hack/build-plugin.sh >/dev/null
exec .venv/bin/cuctl demo "$@"
