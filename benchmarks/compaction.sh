#!/usr/bin/env bash
# Builds logbroker-storagebench in release mode and measures the log cleaner: COMPACTION_MB of keyed records
# (100-byte values, batches of 1,000 uncompressed records) of which COMPACTION_LIVE percent of the keys are live,
# then one cleaning pass over the whole log, timed inside the process. Prints MB/s of log cleaned (bytes read by the
# pass over its time) next to the pass's figures.
#
# Environment: COMPACTION_DIR (default /tmp/logbroker-compaction), COMPACTION_MB (default 1024), COMPACTION_LIVE
# (default 10), LOGBROKER_SCRATCH_PATH (passed to swift as --scratch-path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source "$root/benchmarks/release-build.sh"
bench="$(release_binary logbroker-storagebench)"

dir="${COMPACTION_DIR:-/tmp/logbroker-compaction}"
mb="${COMPACTION_MB:-1024}"
live="${COMPACTION_LIVE:-10}"
rm -rf "$dir"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

out="$("$bench" clean "$dir" "$mb" "$live")"
value() { echo "$out" | awk -v key="$1" '$1 == key { print $2 }'; }
log_bytes="$(value log_bytes)"
seconds="$(value clean_seconds)"
printf '%-28s %s\n' "log written (MB)" "$((log_bytes >> 20))"
printf '%-28s %s\n' "live keys (%)" "$live"
printf '%-28s %s\n' "records" "$(value records)"
printf '%-28s %s\n' "records removed" "$(value records_removed)"
printf '%-28s %s\n' "bytes written (MB)" "$(( $(value bytes_written) >> 20 ))"
printf '%-28s %s\n' "cleaning pass (s)" "$seconds"
printf '%-28s %s\n' "cleaning throughput (MB/s)" "$(awk -v b="$log_bytes" -v s="$seconds" 'BEGIN { printf "%.0f", b / 1048576 / s }')"
