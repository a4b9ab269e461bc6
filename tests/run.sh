#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs the Debian packages that
# the tests drive as real peers when they are missing, then runs every test.
#   prometheus        promtool and a real Prometheus server (tests/telemetry.rs)
#   chromium, chromium-driver   the admin dashboard in a real browser (tests/dashboard.rs)
#   curl, openssl     TLS clients against the server (tests/tls.rs)
# Extra arguments go to `cargo test` (e.g. `bash tests/run.sh --test e2e`).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo test --locked "$@"
