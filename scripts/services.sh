#!/usr/bin/env bash
# Make sure every service the test suite talks to is running on loopback; start what is not.
# PostgreSQL, MariaDB and Redis come with the machine; ZooKeeper is installed and started here,
# and so are the TLS Redis and the password-protected Sentinel (scripts/redis-extra.sh).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  echo "service on port $1 did not come up" >&2; return 1
}

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start && wait_port 5432
fi
if ! port_open 6379 && command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log && wait_port 6379
fi
if ! port_open 3306 && [ -x /usr/sbin/mariadbd ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd && wait_port 3306
fi
"$root/scripts/zookeeper.sh" start
"$root/scripts/redis-extra.sh" start  # a TLS Redis and a password-protected Sentinel
"$root/scripts/chromium.sh"  # headless browser for tests/browser
