#!/usr/bin/env bash
# Make .venv and install the project with its dev tools. Idempotent: a warm run costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "bootstrap: no $PY on PATH; install Python 3.11+ first" >&2; exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing cu-reconciler and dev tools into .venv" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
# Redis for the real Argo CD proof (tests/gitops/test_argocd_real.py): Debian's redis-server.
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing redis-server (Debian) for the Argo CD test" >&2
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }
  else
    echo "bootstrap: redis-server missing; install it (apt-get install redis-server) for the Argo CD test" >&2
  fi
fi
