#!/usr/bin/env bash
# Load benchmark: switchyard vs nginx, HAProxy and Pingora, all on 127.0.0.1.
#
#   bash benches/load/run.sh            # full run: 3 rounds x 10 s (~10 min)
#   bash benches/load/run.sh --quick    # smoke test: 1 round x 2 s
#   bash benches/load/run.sh --scaling  # also switchyard --threads 2
#   bash benches/load/run.sh --help     # every option
#
# It installs nothing: it checks the tools and says what is missing (install
# them with `bash benches/load/setup.sh` as root). It does build the two
# release binaries it runs (switchyard and benches/pingora-peer) with cargo.
# Results: printed as Markdown and written to target/loadbench/results.md
# (and results.json).
#
# With valgrind installed, the rotation scenario also counts instructions per
# request (callgrind, 1 name vs 1,000 names; ~30 s; the figure the machine's
# load does not move). Without it that step is skipped with a note;
# --no-instructions skips it, and so does --quick.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

case " $* " in
*" --help "* | *" -h "*) exec python3 benches/load/loadbench.py --help ;;
esac

missing=()
for tool in python3 nginx haproxy wrk oha cargo; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# The pingora peer's zlib-ng build needs cmake unless it is already built.
if [ ! -x benches/pingora-peer/target/release/pingora-peer ] && ! command -v cmake >/dev/null 2>&1; then
    missing+=("cmake")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "run.sh: missing tools: ${missing[*]}" >&2
    echo "run.sh: install them with: bash benches/load/setup.sh   (as root: apt-get nginx-light haproxy wrk cmake; cargo install oha)" >&2
    exit 1
fi

echo "run.sh: building switchyard (release)" >&2
cargo build --release --quiet --bin switchyard
echo "run.sh: building the pingora peer (release)" >&2
(cd benches/pingora-peer && cargo build --release --quiet)

# loadbench.py kills everything it starts on exit; this trap makes sure an
# interrupt of this script reaches it too.
python3 benches/load/loadbench.py "$@" &
bench=$!
trap 'kill -TERM "$bench" 2>/dev/null || true; wait "$bench" 2>/dev/null || true' INT TERM HUP
wait "$bench"
