# shellcheck shell=bash
# Shared helpers for deploy/local/*.sh (sourced, not executed).
#
# Every engine script defines engine_install, engine_start (launch, do not wait),
# engine_wait (wait until it answers + post-start setup), engine_stop, engine_alive,
# engine_env, engine_describe, and then calls `engine_main "$@"`.

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd)"
PARLEY_STATE_DIR="${PARLEY_STATE_DIR:-$REPO_ROOT/.state/engines}"
# seconds to wait for an engine to answer after start
PARLEY_ENGINES_TIMEOUT="${PARLEY_ENGINES_TIMEOUT:-180}"
export PARLEY_STATE_DIR

log() { printf '[engines] %s\n' "$*" >&2; }
die() { printf '[engines] ERROR: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

# apt_ensure PKG... : install the Debian packages that are missing (apt-get update first).
# apt's output goes to $PARLEY_STATE_DIR/apt.log (shown on failure).
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  mkdir -p "$PARLEY_STATE_DIR"
  local alog="$PARLEY_STATE_DIR/apt.log" t0; t0=$(date +%s)
  log "apt: installing ${missing[*]} (log: $alog)…"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$alog" 2>&1; then
    tail_log "$alog"; die "apt-get update failed"
  fi
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >>"$alog" 2>&1; then
    tail_log "$alog"; die "apt-get install ${missing[*]} failed"
  fi
  log "apt: installed ${missing[*]} in $(( $(date +%s) - t0 ))s"
}

ensure_java() {
  if ! command -v java >/dev/null 2>&1; then apt_ensure openjdk-17-jre-headless; fi
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "java >= 17 required (found '${v:-none}')"
}

ensure_maven() {
  ensure_java
  command -v mvn >/dev/null 2>&1 || apt_ensure maven
}

# mvn_q ARGS... : quiet batch-mode maven; PARLEY_MVN_OPTS adds options (e.g. -Dmaven.repo.local=...)
mvn_q() {
  # shellcheck disable=SC2086
  mvn -q -B -Dstyle.color=never ${PARLEY_MVN_OPTS:-} "$@" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2
}

# hash of files (for "is the installed copy up to date" stamps)
files_hash() { cat "$@" | sha256sum | cut -c1-16; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# read_pid FILE : prints the pid in FILE if that process is alive and is this engine
# ($PID_MATCH, a fixed string looked for in /proc/PID/cmdline, guards against reused pids)
read_pid() {
  local f="$1" p
  [ -f "$f" ] || return 1
  p="$(tr -dc '0-9' <"$f")"
  pid_alive "$p" || return 1
  if [ -n "${PID_MATCH:-}" ] && [ -r "/proc/$p/cmdline" ]; then
    tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "$PID_MATCH" || return 1
  fi
  printf '%s\n' "$p"
}

# port_busy PORT : true if something listens on 127.0.0.1:PORT
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until DESC TIMEOUT PID CMD... : poll CMD until it succeeds; fail early if PID dies.
wait_until() {
  local desc="$1" timeout="$2" pid="$3"; shift 3
  local start; start=$(date +%s)
  local next_note=$((start + 10))
  while true; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -n "$pid" ] && ! pid_alive "$pid"; then
      log "$desc: process $pid exited while starting"
      return 1
    fi
    local t; t=$(date +%s)
    if [ $((t - start)) -ge "$timeout" ]; then
      log "$desc: no answer after ${timeout}s"
      return 1
    fi
    if [ "$t" -ge "$next_note" ]; then
      log "$desc: still waiting ($((t - start))s)…"
      next_note=$((t + 10))
    fi
    sleep 0.3
  done
}

# stop_pidfile NAME PIDFILE [TIMEOUT] : SIGTERM, wait, then SIGKILL
stop_pidfile() {
  local name="$1" f="$2" timeout="${3:-60}" p
  if ! p="$(read_pid "$f")"; then
    rm -f "$f"
    log "$name: not running"
    return 0
  fi
  log "$name: stopping (pid $p)…"
  kill -TERM "$p" 2>/dev/null || true
  local i=0
  while pid_alive "$p"; do
    sleep 0.2; i=$((i + 1))
    if [ "$i" -ge $((timeout * 5)) ]; then
      log "$name: still alive after ${timeout}s, sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      sleep 0.5
      break
    fi
  done
  rm -f "$f"
  log "$name: stopped"
}

# spawn LOGFILE PIDFILE CMD... : start CMD detached (own session, stdin from /dev/null,
# output appended to LOGFILE); the pid of CMD itself is written to PIDFILE.
spawn() {
  local logf="$1" pidf="$2"; shift 2
  rm -f "$pidf"
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  # the child closes every inherited descriptor above 2 (lock files, callers' pipes) so
  # that a long-lived engine never holds a lock or keeps a CI log pipe open
  # shellcheck disable=SC2016
  "${launcher[@]}" bash -c '
    for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"; done 2>/dev/null
    echo $$ >"$0"; exec "$@"' "$pidf" "$@" </dev/null >>"$logf" 2>&1 &
  local i=0
  while [ ! -s "$pidf" ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  [ -s "$pidf" ] || die "could not start: $*"
}

tail_log() {
  local f="$1"
  [ -f "$f" ] || return 0
  log "last lines of $f:"
  tail -n 25 "$f" | sed 's/^/    /' >&2
}

engine_usage() {
  cat <<EOF
usage: $(basename "$0") {up|down|status|env|install|start|wait}

  up       install if missing, start, wait until it answers (idempotent)
  down     stop (SIGTERM via pid file, then wait)
  status   print up/down (exit 0 only when up)
  env      print shell export lines for Parley
  install  install only (packages / maven downloads)
  start    launch without waiting (engines.sh uses start+wait to overlap start-ups)
  wait     wait until it answers, then do post-start setup

State: \$PARLEY_STATE_DIR (now: $PARLEY_STATE_DIR)
EOF
}

engine_up() {
  local t0; t0=$(now_ms)
  engine_install
  if engine_alive; then
    engine_wait
    log "$ENGINE: already running ($(engine_describe))"
    return 0
  fi
  engine_start
  engine_wait
  log "$ENGINE: up in $(( $(now_ms) - t0 )) ms ($(engine_describe))"
}

engine_status() {
  if engine_alive; then
    printf '%-14s up    %s\n' "$ENGINE" "$(engine_describe)"
    return 0
  fi
  printf '%-14s down\n' "$ENGINE"
  return 3
}

# take_lock : serialize mutating commands per engine (held until this process exits)
take_lock() {
  mkdir -p "$PARLEY_STATE_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$PARLEY_STATE_DIR/.lock-$ENGINE"
    flock -w 900 9 || die "$ENGINE: could not take lock $PARLEY_STATE_DIR/.lock-$ENGINE"
  fi
}

engine_main() {
  local cmd="${1:-}"
  case "$cmd" in
    up) take_lock; engine_up ;;
    down) take_lock; engine_stop ;;
    status) engine_status ;;
    env) engine_env ;;
    install) take_lock; engine_install ;;
    start)
      take_lock
      engine_install
      if engine_alive; then log "$ENGINE: already running"; else engine_start; fi ;;
    wait) engine_wait ;;
    packages) echo "${ENGINE_PACKAGES:-}" ;;
    -h|--help|help) engine_usage ;;
    *) engine_usage >&2; exit 2 ;;
  esac
}
