#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Parley local Redis: Debian's redis-server on 127.0.0.1:16379, no persistence.
#   deploy/local/redis.sh {up|down|status|env|install|start|wait|--help}
# pid, log and working dir live in $PARLEY_STATE_DIR/redis/.
set -euo pipefail
ENGINE=redis
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# Debian packages this engine needs (engines.sh installs the union in one apt run)
PID_MATCH="redis-server"
ENGINE_PACKAGES="redis-server redis-tools"

PORT=16379
DIR="$PARLEY_STATE_DIR/redis"
PIDF="$DIR/redis.pid"
LOGF="$DIR/redis.log"

engine_describe() { echo "pid $(read_pid "$PIDF" || echo ?), 127.0.0.1:$PORT, $(redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')"; }

engine_install() {
  # shellcheck disable=SC2086
  apt_ensure $ENGINE_PACKAGES
}

engine_alive() { read_pid "$PIDF" >/dev/null; }

engine_start() {
  mkdir -p "$DIR/data"
  if port_busy "$PORT"; then die "redis: port $PORT is already in use by another process"; fi
  log "redis: starting on 127.0.0.1:$PORT…"
  spawn "$LOGF" "$PIDF" redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --dir "$DIR/data" --pidfile "$PIDF" --logfile "" --protected-mode yes
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" PING 2>/dev/null)" = PONG ]; }

engine_wait() {
  local pid; pid="$(read_pid "$PIDF" || true)"
  [ -n "$pid" ] || { tail_log "$LOGF"; die "redis: not running"; }
  wait_until redis "$PARLEY_ENGINES_TIMEOUT" "$pid" redis_ping || { tail_log "$LOGF"; die "redis: did not come up"; }
}

engine_stop() { stop_pidfile redis "$PIDF" 30; }

engine_env() { echo "export PARLEY_REDIS_URL='redis://127.0.0.1:$PORT/0'"; }

engine_main "$@"
