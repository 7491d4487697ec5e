#!/usr/bin/env bash
# Installs what validates docker-compose.yml on a machine without a Docker engine: Debian's
# `docker-compose` package (1.29, Compose-spec aware). CI calls this before the e2e tests;
# `make compose-config` then runs `docker-compose -f docker-compose.yml config -q`.
#   deploy/local/compose-tools.sh [install]
set -euo pipefail

log() { printf '[compose-tools] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else log "need root (or sudo) to run: $*"; exit 1; fi
}

case "${1:-install}" in
  install)
    if command -v docker-compose >/dev/null 2>&1; then
      log "docker-compose already installed ($(docker-compose version --short 2>/dev/null || echo '?'))"
      exit 0
    fi
    log "installing Debian's docker-compose…"
    # other scripts may hold the dpkg lock (engines, browsers): wait for it instead of failing
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends docker-compose >&2
    log "installed: $(docker-compose version --short 2>/dev/null || echo '?')"
    ;;
  -h|--help|help) echo "usage: $(basename "$0") [install]" ;;
  *) echo "usage: $(basename "$0") [install]" >&2; exit 2 ;;
esac
