#!/usr/bin/env bash
# Parley browser tests: Debian's Chromium (driven headless by Playwright for Python, which is
# told to use /usr/bin/chromium — no browser download). Idempotent: does nothing when it is there.
#   deploy/local/browser.sh
# Other scripts may run apt at the same time: apt waits up to 10 minutes for the dpkg lock
# instead of failing at once.
set -euo pipefail

PACKAGES=(chromium fonts-dejavu-core fonts-noto-color-emoji)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if command -v chromium >/dev/null 2>&1 && [ ${#missing[@]} -eq 0 ]; then
  echo "[browser] $(chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
echo "[browser] installing ${missing[*]}…" >&2
as_root env DEBIAN_FRONTEND=noninteractive "${APT[@]}" update -qq
# The fonts: readable text and emoji (reactions) in screenshots taken on a bare machine.
as_root env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq "${missing[@]}"
echo "[browser] $(chromium --version 2>/dev/null)"
