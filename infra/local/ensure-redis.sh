#!/usr/bin/env bash
# Make sure a redis-server binary exists. Tests always start their own server on a free port
# (never touching a shared one), so the binary is what they need, not a running instance.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "redis-server not found; installing Debian's redis-server package" >&2
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2; }
  # The package may auto-start a service; we only wanted the binary. Leave any service as the OS set it.
  exit 0
fi
echo "error: redis-server is not installed and cannot be installed automatically (need root + apt-get)." >&2
echo "Install Redis 6+ (e.g. 'sudo apt-get install redis-server' or 'brew install redis') and retry." >&2
exit 1
