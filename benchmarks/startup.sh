#!/usr/bin/env bash
# Builds logbroker-server in release mode and measures how long a broker with many partitions takes to start again
# after a clean stop (SIGTERM) and after a crash (SIGKILL); see benchmarks/startup.py for the method. Prints one
# table (progress goes to stderr).
#
# Environment: STARTUP_PARTITIONS (default 10000), STARTUP_ROUNDS (default 3), STARTUP_DIR (where the temporary
# log dir goes; the file system to measure), STARTUP_TIMEOUT (seconds any one step may take, default 900),
# LOGBROKER_SCRATCH_PATH (passed to swift as --scratch-path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"

exec python3 "$root/benchmarks/startup.py" "$server"
