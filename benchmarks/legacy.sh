#!/usr/bin/env bash
# The old message formats (magic 0/1) beside the v2 path, each against a fresh release-built logbroker-server: first
# producing through the Produce v0-2 conversion (legacy.py), then consuming through the Fetch v0-3 down-conversion
# (legacy_fetch.py), each table with its v2 rows from the same run (progress on stderr). See the two scripts for
# their rows and environment variables (LEGACY_RECORDS, LEGACY_COUNT, LEGACY_ROUNDS, LEGACY_TIMEOUT);
# LOGBROKER_SCRATCH_PATH is passed to swift as --scratch-path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v kcat >/dev/null || { echo "kcat is missing (bin/setup installs it)" >&2; exit 1; }
source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"
python3 "$root/benchmarks/legacy.py" "$server"
python3 "$root/benchmarks/legacy_fetch.py" "$server"
