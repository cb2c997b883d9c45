#!/usr/bin/env bash
# Builds logbroker-microbench in release mode and prints its table (progress goes to stderr).
# LOGBROKER_SCRATCH_PATH, if set, is passed to swift as --scratch-path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source "$root/benchmarks/release-build.sh"
"$(release_binary logbroker-microbench)" "$@"
