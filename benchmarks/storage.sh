#!/usr/bin/env bash
# Builds logbroker-storagebench in release mode, runs its phases and prints one table (progress goes to stderr):
#   append throughput of ~1 MiB batches of 100-byte records vs dd (bs=1M, conv=notrunc, no fsync for either) on the
#   same file system, read throughput (pread through the page cache) vs dd reading the same log, recovery of the
#   whole appended log as an unclean tail, and open time / VmRSS / descriptors for PARTITIONS partitions.
# Environment: STORAGEBENCH_DIR (default /tmp/logbroker-storagebench; must be on the file system to measure),
# STORAGEBENCH_MB (default 1024), STORAGEBENCH_PARTITIONS (default 10000), STORAGEBENCH_ROUNDS (default 3),
# LOGBROKER_SCRATCH_PATH (passed to swift as --scratch-path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

swift_opts=(-c release)
if [ -n "${LOGBROKER_SCRATCH_PATH:-}" ]; then
    swift_opts+=(--scratch-path "$LOGBROKER_SCRATCH_PATH")
fi
swift build "${swift_opts[@]}" --product logbroker-storagebench >&2
bench="$(swift build "${swift_opts[@]}" --show-bin-path)/logbroker-storagebench"

dir="${STORAGEBENCH_DIR:-/tmp/logbroker-storagebench}"
mb="${STORAGEBENCH_MB:-1024}"
partitions="${STORAGEBENCH_PARTITIONS:-10000}"
rounds="${STORAGEBENCH_ROUNDS:-3}"
rm -rf "$dir"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

now() { date +%s.%N; }
# value KEY FILE: the value of a `key value` line.
value() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'; }

rows=()
for round in $(seq 1 "$rounds"); do
    rm -rf "$dir/log" "$dir/dd.out"
    sync
    echo "round $round: dd" >&2
    start=$(now)
    dd if=/dev/zero of="$dir/dd.out" bs=1M count="$mb" conv=notrunc status=none
    end=$(now)
    dd_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
    dd_bytes=$((mb * 1048576))
    rm -f "$dir/dd.out"
    sync
    echo "round $round: append" >&2
    "$bench" append "$dir/log" "$mb" >"$dir/append.txt"
    append_bytes=$(value append_bytes "$dir/append.txt")
    append_seconds=$(value append_seconds "$dir/append.txt")
    dd_rate=$(rate "$dd_bytes" "$dd_seconds")
    append_rate=$(rate "$append_bytes" "$append_seconds")
    percent=$(awk -v a="$append_rate" -v d="$dd_rate" 'BEGIN { printf "%.0f", 100 * a / d }')
    follower_rate=$(rate "$(value follower_append_bytes "$dir/append.txt")" "$(value follower_append_seconds "$dir/append.txt")")
    follower_percent=$(awk -v a="$follower_rate" -v d="$dd_rate" 'BEGIN { printf "%.0f", 100 * a / d }')
    rows+=("| append as leader, round $round | $append_rate MiB/s | dd: $dd_rate MiB/s | $percent % of dd |")
    rows+=("| append as follower, round $round | $follower_rate MiB/s | dd: $dd_rate MiB/s | $follower_percent % of dd |")
done

read_bytes=$(value read_bytes "$dir/append.txt")
read_seconds=$(value read_seconds "$dir/append.txt")
logfile=$(ls "$dir"/log/bench-0/*.log | head -1)
start=$(now)
dd if="$logfile" of=/dev/null bs=1M status=none
end=$(now)
dd_read_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
dd_read_bytes=$(stat -c %s "$logfile")
rows+=("| read (range look-up + pread, page cache) | $(rate "$read_bytes" "$read_seconds") MiB/s | dd: $(rate "$dd_read_bytes" "$dd_read_seconds") MiB/s | |")

echo "recover" >&2
"$bench" recover "$dir/log" >"$dir/recover.txt"
recover_seconds=$(value recover_seconds "$dir/recover.txt")
recover_bytes=$(value recover_bytes "$dir/recover.txt")
rows+=("| recovery of a $((recover_bytes / 1048576)) MiB unclean tail (warm page cache) | ${recover_seconds%????} s | $(rate "$recover_bytes" "$recover_seconds") MiB/s | |")
rm -rf "$dir/log"

echo "create $partitions partitions" >&2
"$bench" create "$dir/many" "$partitions" >"$dir/create.txt"
echo "open $partitions partitions" >&2
"$bench" open "$dir/many" >"$dir/open.txt"
o() { value "$1" "$dir/open.txt"; }
rows+=("| open $(o open_partitions) partitions x 3 segments (clean) | $(o open_seconds | cut -c1-6) s | VmRSS $(( $(o open_rss_before_kb) / 1024 )) -> $(( $(o open_rss_after_kb) / 1024 )) MiB | $(o open_descriptors) fds open, budget $(o open_budget), $(o open_logs_open) logs open |")
rows+=("| then read every partition once | $(o touch_seconds | cut -c1-6) s | VmRSS $(( $(o touch_rss_after_kb) / 1024 )) MiB | $(o touch_descriptors) fds open, $(o touch_evictions) evictions |")
rows+=("| (creating them, for reference) | $(value create_seconds "$dir/create.txt" | cut -c1-6) s | | |")

echo "| measure | LogBroker | reference | note |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
