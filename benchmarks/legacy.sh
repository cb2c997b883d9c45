#!/usr/bin/env bash
# The old message formats (magic 0/1) beside the v2 path, against one fresh release-built logbroker-server: kcat
# produces 100-byte records through the Produce v0-2 conversion and through the normal path, records/s and MB/s for
# each row (progress on stderr). See legacy.py for the rows and its environment variables (LEGACY_RECORDS,
# LEGACY_ROUNDS, LEGACY_TIMEOUT); LOGBROKER_SCRATCH_PATH is passed to swift as --scratch-path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v kcat >/dev/null || { echo "kcat is missing (bin/setup installs it)" >&2; exit 1; }
source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"
exec python3 "$root/benchmarks/legacy.py" "$server"
