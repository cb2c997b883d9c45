#!/usr/bin/env bash
# LogBroker and Tansu side by side in one run, driven by kcat and logbroker-perf over the standard set; prints one
# table (progress on stderr). Builds logbroker-server and logbroker-perf in release mode first. See compare.py for
# what is measured and its environment variables (COMPARE_SMALL, COMPARE_LARGE, COMPARE_TIMEOUT);
# LOGBROKER_SCRATCH_PATH is passed to swift as --scratch-path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"
perf="$(release_binary logbroker-perf)"
exec python3 "$root/benchmarks/compare.py" "$server" "$perf"
