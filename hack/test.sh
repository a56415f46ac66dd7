#!/usr/bin/env bash
# The whole test suite: install, build the local control plane, lint, type-check the layers, test.
# .ci/run calls exactly this. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/bootstrap.sh
./hack/build-k8s.sh
./hack/build-argocd.sh
./hack/build-flux.sh
./hack/build-plugin.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
.venv/bin/mypy
exec .venv/bin/pytest "$@"
