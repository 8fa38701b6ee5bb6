#!/usr/bin/env bash
# Create (or refresh) the benchmark virtualenv: Legato (editable, all extras) plus OpenStack
# TaskFlow and its drivers, so both run side by side in one interpreter.
# Usage: bench/venv.sh  ->  /work/main/.venv-bench  (git-ignored)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${BENCH_VENV:-$root/.venv-bench}"
if [ ! -x "$venv/bin/python" ]; then
    python3.11 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -e "$root[all]" taskflow redis kazoo sqlalchemy alembic
"$venv/bin/python" -c "import legato, taskflow; print('bench venv ready:', '$venv')"
