#!/usr/bin/env bash
# The ZooKeeper board's contract tests against other kazoo releases than the one in .venv: the
# oldest of the supported range and the newest on the package index (or those given).
# Each release is installed alone into .kazoo-matrix/<version> (git-ignored) and put in front
# of .venv's kazoo on PYTHONPATH. About 20 s per release, with ZooKeeper running.
# Usage: scripts/kazoo-matrix.sh [VERSION...]     (default: 2.10.0 and the newest)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=.venv/bin/python
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  newest=$("$python" -m pip index versions kazoo 2>/dev/null | sed -n 's/^kazoo (\(.*\))$/\1/p')
  if [ -z "$newest" ]; then
    echo "kazoo-matrix: cannot find the newest kazoo release on the package index" >&2
    exit 1
  fi
  versions=(2.10.0 "$newest")
fi
for version in "${versions[@]}"; do
  target=".kazoo-matrix/$version"
  if [ ! -f "$target/kazoo/version.py" ]; then
    rm -rf "$target"
    "$python" -m pip install --quiet --no-deps --target "$target" "kazoo==$version"
  fi
  echo "== kazoo $version"
  LEGATO_TEST_KAZOO_VERSION="$version" PYTHONPATH="$root/$target" "$python" -m pytest -q -p no:cacheprovider \
    tests/contract/test_jobboard_zookeeper.py tests/unit/test_zookeeper_kazoo.py
done
