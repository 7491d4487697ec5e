#!/usr/bin/env bash
# Parley local engines without Docker: install (if missing) and run MariaDB, Redis, Kafka and
# Elasticsearch as local processes on loopback, state under $PARLEY_STATE_DIR
# (default <repo>/.state/engines). See docs/operations-engines.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL=(mariadb redis kafka elasticsearch)

usage() {
  cat <<USAGE
usage: deploy/local/engines.sh {up|down|status|env} [engine...]

engines: ${ALL[*]} (default: all)

  up      install what is missing, start, wait until each answers (idempotent; fast when running)
  down    stop (pid files, SIGTERM, wait)
  status  print each engine up/down (exit 0 only if all listed are up)
  env     print export lines: PARLEY_DATABASE_URL, PARLEY_REDIS_URL,
          PARLEY_KAFKA_BOOTSTRAP, PARLEY_ELASTICSEARCH_URL
          (use: eval "\$(deploy/local/engines.sh env)")

ports (127.0.0.1): mariadb 13306, redis 16379, kafka 19092 (controller 19093),
                   elasticsearch 19200 (transport 19300)
environment: PARLEY_STATE_DIR (state folder), PARLEY_ENGINES_TIMEOUT (seconds to wait, default 180),
             PARLEY_MVN_OPTS (extra maven options), KAFKA_HEAP_OPTS, ES_HEAP_OPTS
USAGE
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in -h|--help|help) usage; exit 0 ;; up|down|status|env) ;; *) usage >&2; exit 2 ;; esac

engines=("$@")
[ ${#engines[@]} -eq 0 ] && engines=("${ALL[@]}")
for e in "${engines[@]}"; do
  case " ${ALL[*]} " in *" $e "*) ;; *) echo "[engines] unknown engine: $e (known: ${ALL[*]})" >&2; exit 2 ;; esac
done

run() { bash "$HERE/$1.sh" "${@:2}"; }

case "$cmd" in
  up)
    t0=$(date +%s%3N)
    # install all first (apt runs once), then launch all, then wait for each: start-ups overlap
    # one apt-get update/install for every missing Debian package
    pkgs=()
    for e in "${engines[@]}"; do read -r -a p <<<"$(run "$e" packages)"; pkgs+=("${p[@]}"); done
    if [ ${#pkgs[@]} -gt 0 ]; then (source "$HERE/lib.sh"; apt_ensure "${pkgs[@]}"); fi
    for e in "${engines[@]}"; do run "$e" install; done
    for e in "${engines[@]}"; do run "$e" start; done
    for e in "${engines[@]}"; do run "$e" wait; done
    echo "[engines] all up in $(( $(date +%s%3N) - t0 )) ms: ${engines[*]}" >&2
    for e in "${engines[@]}"; do run "$e" status; done
    ;;
  down)
    # reverse order
    for ((i = ${#engines[@]} - 1; i >= 0; i--)); do run "${engines[$i]}" down; done
    ;;
  status)
    rc=0
    for e in "${engines[@]}"; do run "$e" status || rc=3; done
    exit $rc
    ;;
  env)
    for e in "${engines[@]}"; do run "$e" env; done
    ;;
esac
