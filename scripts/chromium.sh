#!/usr/bin/env bash
# Install headless Chromium and its WebDriver from Debian's packages for the browser tests
# (tests/browser). Idempotent: does nothing when both are there.
# Usage: scripts/chromium.sh
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "chromium missing: install Debian's chromium and chromium-driver (browser tests skip)" >&2
  exit 0
fi
echo "installing chromium and chromium-driver from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
