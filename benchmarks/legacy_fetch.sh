#!/usr/bin/env bash
# Fetch through the down-conversion path (v0-3: message formats v0/v1) beside the normal v2 path, in one
# run against a fresh broker; prints one table (progress on stderr). Builds logbroker-server in release mode first.
# See legacy_fetch.py for what is measured and its environment variables; LOGBROKER_SCRATCH_PATH is passed to swift
# as --scratch-path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v kcat >/dev/null || { echo "kcat is missing (bin/setup installs it)" >&2; exit 1; }
source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"
exec python3 "$root/benchmarks/legacy_fetch.py" "$server"
