#!/usr/bin/env bash
# Add the peer systems that bench/peers.py runs beside Legato to the benchmark virtualenv:
# DBOS Transact, Procrastinate and Celery (with its Redis transport). Benchmark only: none of
# them is a Legato dependency.
# Usage: bench/venv-peers.sh  ->  $BENCH_VENV or .venv-bench (made by bench/venv.sh if missing)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${BENCH_VENV:-$root/.venv-bench}"
if [ ! -x "$venv/bin/python" ]; then
    BENCH_VENV="$venv" "$root/bench/venv.sh"
fi
"$venv/bin/pip" install --quiet dbos procrastinate "celery[redis]" "psycopg[binary]"
"$venv/bin/python" -c "import dbos, procrastinate, celery; print('peers ready:', '$venv')"
