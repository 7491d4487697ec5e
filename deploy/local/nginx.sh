#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs Debian's nginx package (only the package: configuration and start-up belong to
# whoever owns the nginx config). Usage: deploy/local/nginx.sh install
set -euo pipefail
ENGINE=nginx
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

case "${1:-}" in
  install)
    apt_ensure nginx
    log "nginx: installed ($(nginx -v 2>&1 | sed 's/^nginx version: //'))"
    ;;
  -h|--help|help) echo "usage: $(basename "$0") install   (installs the Debian nginx package)" ;;
  *) echo "usage: $(basename "$0") install" >&2; exit 2 ;;
esac
