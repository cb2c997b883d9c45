#!/usr/bin/env bash
# Builds logbroker-server in release mode and measures a three-node cluster over one etcd: creating partitions at
# replication factor 3, the image load of a restarted node, and controller failover; see benchmarks/cluster.py for
# the method. Prints one table (progress goes to stderr).
#
# Environment: CLUSTER_PARTITIONS (default 3000), CLUSTER_ROUNDS (failovers, default 3), LOGBROKER_SCRATCH_PATH
# (passed to swift as --scratch-path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"

exec python3 "$root/benchmarks/cluster.py" "$server"
