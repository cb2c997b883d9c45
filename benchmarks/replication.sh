#!/usr/bin/env bash
# Builds logbroker-server and logbroker-perf in release mode and measures replication on a three-node cluster over
# one etcd: leader failover (detection, election, writable), produce throughput and p99 at RF 3 with acks=all and
# acks=1 beside a standalone broker, and a restarted follower's catch-up rate; see benchmarks/replication.py.
# Prints one table (progress goes to stderr).
#
# Environment: REPLICATION_PARTITIONS (default 3000), REPLICATION_RECORDS (default 500000), REPLICATION_CATCH_UP_MB
# (default 500), LOGBROKER_SCRATCH_PATH (passed to swift as --scratch-path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"
perf="$(release_binary logbroker-perf)"

exec python3 "$root/benchmarks/replication.py" "$server" "$perf"
