#!/usr/bin/env bash
# Builds logbroker-microbench in release mode and prints its table (progress goes to stderr).
# LOGBROKER_SCRATCH_PATH, if set, is passed to swift as --scratch-path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

swift_opts=(-c release)
if [ -n "${LOGBROKER_SCRATCH_PATH:-}" ]; then
    swift_opts+=(--scratch-path "$LOGBROKER_SCRATCH_PATH")
fi

swift build "${swift_opts[@]}" --product logbroker-microbench >&2
"$(swift build "${swift_opts[@]}" --show-bin-path)/logbroker-microbench" "$@"
