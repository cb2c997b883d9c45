#!/usr/bin/env bash
# The performance targets the side-by-side table does not cover (64 KiB records, p99 at half load, memory over a
# long load) against a fresh LogBroker with logbroker-perf; prints one table (progress on stderr). Builds
# logbroker-server and logbroker-perf in release mode first. See targets.py for what is measured and its
# environment variables; LOGBROKER_SCRATCH_PATH is passed to swift as --scratch-path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"
perf="$(release_binary logbroker-perf)"
exec python3 "$root/benchmarks/targets.py" "$server" "$perf"
