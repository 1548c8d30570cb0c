#!/usr/bin/env bash
# Make sure Debian's chromium exists at /usr/bin/chromium for the browser tests (tests/browser/):
# Playwright (pip) launches it by that path; no browser is ever downloaded (`playwright install` is never run).
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "chromium not found; installing Debian's chromium package" >&2
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2; }
  exit 0
fi
echo "error: chromium is not installed and cannot be installed automatically (need root + apt-get)." >&2
echo "Install it (e.g. 'sudo apt-get install chromium') so that $CHROMIUM exists, and retry." >&2
exit 1
