#!/usr/bin/env bash
# Start the extra Redis servers the Redis board's TLS and Sentinel tests need, on private
# loopback ports (the shared Redis on 6379 is never touched):
#   * a TLS-only redis-server (--port 0) that requires client certificates, signed by a
#     throwaway CA generated here with openssl (a second CA, trusted by nobody, and a client
#     certificate from it are generated too, for the "wrong CA" tests);
#   * a master with an ACL user and password, and a Sentinel watching it with a password of
#     its own (requirepass) and the master's credentials (sentinel auth-user/auth-pass).
# Everything lives in $LEGATO_REDIS_EXTRA_DIR (default /var/tmp/legato-redis-extra); tests read
# services.json there (legato.testing.services). Passwords are random, made once, mode 600.
# Idempotent: what already runs is left alone.
# Usage: scripts/redis-extra.sh [start|stop|status]
set -euo pipefail
state=${LEGATO_REDIS_EXTRA_DIR:-/var/tmp/legato-redis-extra}
tls_port=${LEGATO_REDIS_TLS_PORT:-16380}
master_port=${LEGATO_REDIS_MASTER_PORT:-16381}
sentinel_port=${LEGATO_REDIS_SENTINEL_PORT:-26380}
service=legato-test
server=$(command -v redis-server || true)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.25; done
  echo "redis on port $1 did not come up; see $state/*.log" >&2; return 1
}

secret() { [ -s "$1" ] || (umask 077; openssl rand -hex 16 > "$1"); cat "$1"; }

certs() {
  local d=$state/tls
  [ -s "$d/client.key" ] && [ -s "$d/other-client.key" ] && return 0
  mkdir -p "$d"; chmod 700 "$d"
  local subj ext
  for ca in ca other-ca; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=legato test $ca" \
      -keyout "$d/$ca.key" -out "$d/$ca.crt" 2>/dev/null
  done
  ext=$d/san.ext
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$ext"
  for pair in server:ca client:ca other-client:other-ca; do
    local name=${pair%%:*} ca=${pair#*:}
    subj="/CN=legato test $name"
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$d/$name.key" \
      -out "$d/$name.csr" 2>/dev/null
    openssl x509 -req -in "$d/$name.csr" -CA "$d/$ca.crt" -CAkey "$d/$ca.key" \
      -CAcreateserial -days 3650 -extfile "$ext" -out "$d/$name.crt" 2>/dev/null
    rm -f "$d/$name.csr"
  done
  chmod 600 "$d"/*.key
}

start_tls() {
  port_open "$tls_port" && return 0
  local d=$state/tls
  "$server" --port 0 --tls-port "$tls_port" --bind 127.0.0.1 \
    --tls-cert-file "$d/server.crt" --tls-key-file "$d/server.key" \
    --tls-ca-cert-file "$d/ca.crt" --tls-auth-clients yes \
    --save "" --appendonly no --daemonize yes --dir "$state" \
    --pidfile "$state/tls.pid" --logfile "$state/tls.log"
  wait_port "$tls_port"
}

start_master() {
  port_open "$master_port" && return 0
  local pw; pw=$(secret "$state/master.password")
  (umask 077; cat > "$state/master.conf" <<CONF
port $master_port
bind 127.0.0.1
save ""
appendonly no
daemonize yes
dir $state
pidfile $state/master.pid
logfile $state/master.log
user default off
user legato on >$pw ~* &* +@all
CONF
  )
  "$server" "$state/master.conf"
  wait_port "$master_port"
}

start_sentinel() {
  port_open "$sentinel_port" && return 0
  local mpw spw; mpw=$(secret "$state/master.password"); spw=$(secret "$state/sentinel.password")
  # Sentinel rewrites its config file, so it gets a fresh one at every start.
  (umask 077; cat > "$state/sentinel.conf" <<CONF
port $sentinel_port
bind 127.0.0.1
daemonize yes
dir $state
pidfile $state/sentinel.pid
logfile $state/sentinel.log
user default off
user watcher on >$spw ~* &* +@all
sentinel monitor $service 127.0.0.1 $master_port 1
sentinel auth-user $service legato
sentinel auth-pass $service $mpw
sentinel down-after-milliseconds $service 10000
CONF
  )
  "$server" "$state/sentinel.conf" --sentinel
  wait_port "$sentinel_port"
}

describe() {
  local d=$state/tls
  (umask 077; cat > "$state/services.json" <<JSON
{"tls_port": $tls_port, "ca": "$d/ca.crt", "cert": "$d/client.crt", "key": "$d/client.key",
 "other_ca": "$d/other-ca.crt", "other_cert": "$d/other-client.crt",
 "other_key": "$d/other-client.key",
 "master_port": $master_port, "master_username": "legato",
 "master_password": "$(cat "$state/master.password")",
 "sentinel_port": $sentinel_port, "sentinel_username": "watcher",
 "sentinel_password": "$(cat "$state/sentinel.password")", "service": "$service"}
JSON
  )
}

start() {
  if [ -z "$server" ]; then echo "redis-server is not installed" >&2; return 1; fi
  if ! command -v openssl >/dev/null; then echo "openssl is not installed" >&2; return 1; fi
  mkdir -p "$state"; chmod 700 "$state"
  certs
  start_tls
  start_master
  start_sentinel
  describe
  echo "redis extras: TLS on 127.0.0.1:$tls_port, Sentinel on 127.0.0.1:$sentinel_port" \
       "(master $master_port); see $state/services.json"
}

stop() {
  for name in sentinel master tls; do
    if [ -f "$state/$name.pid" ]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status)
    for p in "$tls_port" "$master_port" "$sentinel_port"; do
      port_open "$p" || { echo stopped; exit 1; }
    done
    echo running ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
