#!/usr/bin/env bash
# Create .venv and install Legato with the given extras, only when pyproject.toml changed.
# Usage: scripts/venv.sh [EXTRAS]   (default: test)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
extras=${1:-test}
venv=${LEGATO_VENV:-$root/.venv}
stamp="$venv/.legato-$extras.stamp"
want=$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -e "$root[$extras]"
  echo "$want" > "$stamp"
fi
