#!/usr/bin/env bash
# Start a private ZooKeeper on 127.0.0.1:2181 for tests and benchmarks (installs it if missing).
# Usage: scripts/zookeeper.sh [start|stop|status]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
state=${LEGATO_ZK_DIR:-/var/tmp/legato-zookeeper}
port=${LEGATO_ZK_PORT:-2181}
jar=/usr/share/java/zookeeper.jar

zk_ok() { python3 - "$port" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    s.sendall(b"ruok"); ok = s.recv(4) == b"imok"; s.close()
except OSError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

install_zk() {
  if [ ! -f "$jar" ]; then
    echo "installing ZooKeeper from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq zookeeper >/dev/null
  fi
}

start() {
  if zk_ok; then echo "zookeeper already running on 127.0.0.1:$port"; return 0; fi
  install_zk
  mkdir -p "$state/data" "$state/conf"
  cat > "$state/conf/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$state/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=60000
4lw.commands.whitelist=ruok,srvr,stat,mntr,envi
CFG
  cat > "$state/conf/log4j.properties" <<'L4J'
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zk.log.file}
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d %p %c{1}: %m%n
L4J
  nohup java -Dzk.log.file="$state/zookeeper.log" -Dzookeeper.admin.enableServer=false \
    -Xmx512m -cp "$state/conf:$jar" org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$state/conf/zoo.cfg" >"$state/stdout.log" 2>&1 &
  echo $! > "$state/pid"
  for _ in $(seq 1 120); do
    if zk_ok; then echo "zookeeper started on 127.0.0.1:$port"; return 0; fi
    sleep 0.5
  done
  echo "zookeeper did not start; see $state/stdout.log" >&2
  tail -20 "$state/stdout.log" >&2 || true
  return 1
}

stop() {
  if [ -f "$state/pid" ]; then kill "$(cat "$state/pid")" 2>/dev/null || true; rm -f "$state/pid"; fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) if zk_ok; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
