#!/usr/bin/env bash
# Installs what benches/load/run.sh needs: the peers it compares switchyard
# with (nginx, HAProxy), the load generators (wrk, oha) and cmake, which the
# Pingora peer's zlib-ng build needs. Debian 12 package names; run as root.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (apt-get install needs it)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends nginx-light haproxy wrk cmake

# The distribution packages start system services; the benchmark runs its
# own instances with their own config files, so keep the system ones quiet.
for svc in nginx haproxy; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
        systemctl disable "$svc" || true
    fi
done

if ! command -v oha >/dev/null 2>&1; then
    cargo install oha --locked
fi

echo "setup.sh: done; now run: bash benches/load/run.sh"
