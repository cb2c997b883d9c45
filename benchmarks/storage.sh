#!/usr/bin/env bash
# Builds logbroker-storagebench in release mode, runs its phases and prints one table (progress goes to stderr):
#   append throughput of ~1 MiB batches of 100-byte records, as leader and as follower, against dd writing the same
#   number of bytes with the same block size (bs=1M, no fsync for any of them) to the same file system;
#   read throughput (range look-up + pread through the page cache) against dd reading the same log; recovery of the
#   whole appended log as an unclean tail; open time, VmRSS and descriptors for PARTITIONS partitions.
#
# Method for the append comparison: both sides are timed around their write loop only (dd's own summary line; the
# appends inside the process), since starting a process costs as much as writing 100 MiB here. Page-cache writes
# are only comparable when each run starts from the same state, so before every timed run the previous files are
# removed, `sync` runs, the script waits until Dirty + Writeback in /proc/meminfo fall below 64 MiB (at most 60 s),
# and a scratch file of the same size is written and deleted (`warm`, below). dd and the two append modes run in
# every round, in an order that rotates per round; the table gives each one's median over ROUNDS rounds and the
# ratio of medians (every round's figures go to stderr). The default size (1 GiB) stays far below
# dirty_background_ratio on a machine with a few GiB of RAM, so neither side is throttled by writeback during its
# run; check that it does on yours (the script prints the dirty limits it found).
#
# Environment: STORAGEBENCH_DIR (default /tmp/logbroker-storagebench; must be on the file system to measure),
# STORAGEBENCH_MB (default 1024), STORAGEBENCH_PARTITIONS (default 10000), STORAGEBENCH_ROUNDS (default 5),
# LOGBROKER_SCRATCH_PATH (passed to swift as --scratch-path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source "$root/benchmarks/release-build.sh"
bench="$(release_binary logbroker-storagebench)"

dir="${STORAGEBENCH_DIR:-/tmp/logbroker-storagebench}"
mb="${STORAGEBENCH_MB:-1024}"
partitions="${STORAGEBENCH_PARTITIONS:-10000}"
rounds="${STORAGEBENCH_ROUNDS:-5}"
rm -rf "$dir"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

now() { date +%s.%N; }
# value KEY FILE: the value of a `key value` line.
value() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'; }
median() {
    printf '%s\n' "$@" | sort -n |
        awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
percent() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 100 * a / b }'; }
dirty_kb() { awk '$1 == "Dirty:" || $1 == "Writeback:" { sum += $2 } END { print sum }' /proc/meminfo; }

# warm: writes and deletes a scratch file of the run's size, so the timed run gets page-cache memory that was
# just in use. Without it the same dd swung between 0.4 and 6 GB/s on a VM whose freshly freed memory costs the
# host a fault on first touch again; with it, both sides start from recently used pages.
warm() {
    dd if=/dev/zero of="$dir/warm.out" bs=1M count="$mb" status=none
    rm -f "$dir/warm.out"
}

# settle: flush dirty pages and wait until what is left is small, so the next timed run starts from a quiet cache.
settle() {
    sync
    local waited=0
    while [ "$(dirty_kb)" -gt 65536 ] && [ "$waited" -lt 600 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
}

echo "dirty_ratio $(cat /proc/sys/vm/dirty_ratio)% dirty_background_ratio $(cat /proc/sys/vm/dirty_background_ratio)%" \
    "MemTotal $(awk '$1 == "MemTotal:" { print int($2 / 1024) }' /proc/meminfo) MiB; writing $mb MiB per run" >&2

bytes=$((mb * 1048576))
dd_rates=()
leader_rates=()
follower_rates=()
run_dd() {
    rm -f "$dir/dd.out"
    settle
    warm
    # dd's own timing of its copy loop (its summary line), like the in-process timing of the appends: neither
    # counts starting the process.
    local seconds_taken
    seconds_taken=$(LC_ALL=C dd if=/dev/zero of="$dir/dd.out" bs=1M count="$mb" 2>&1 |
        awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1) }')
    dd_rates+=("$(rate "$bytes" "$seconds_taken")")
    rm -f "$dir/dd.out"
}
run_append() { # role
    rm -rf "$dir/$1"
    settle
    warm
    "$bench" append "$dir/$1" "$mb" "$1" >"$dir/$1.txt"
    local rate_now
    rate_now=$(rate "$(value append_bytes "$dir/$1.txt")" "$(value append_seconds "$dir/$1.txt")")
    if [ "$1" = leader ]; then leader_rates+=("$rate_now"); else follower_rates+=("$rate_now"); fi
}
for round in $(seq 1 "$rounds"); do
    case $((round % 3)) in
        1) order="dd leader follower" ;;
        2) order="leader follower dd" ;;
        0) order="follower dd leader" ;;
    esac
    for step in $order; do
        if [ "$step" = dd ]; then run_dd; else run_append "$step"; fi
    done
    echo "round $round ($order): dd ${dd_rates[-1]} MiB/s, leader ${leader_rates[-1]} MiB/s," \
        "follower ${follower_rates[-1]} MiB/s" >&2
done
rm -rf "$dir/follower"
dd_median=$(median "${dd_rates[@]}")
leader_median=$(median "${leader_rates[@]}")
follower_median=$(median "${follower_rates[@]}")
rows=()
rows+=("| append as leader, median of $rounds | $leader_median MiB/s | dd: $dd_median MiB/s | $(percent "$leader_median" "$dd_median") % of dd (rounds: ${leader_rates[*]} vs ${dd_rates[*]}) |")
rows+=("| append as follower, median of $rounds | $follower_median MiB/s | dd: $dd_median MiB/s | $(percent "$follower_median" "$dd_median") % of dd (rounds: ${follower_rates[*]}) |")

# The leader log of the last round is an unclean tail: recover it (then a clean stop), then read it.
settle
echo "recover" >&2
"$bench" recover "$dir/leader" >"$dir/recover.txt"
recover_seconds=$(value recover_seconds "$dir/recover.txt")
recover_bytes=$(value recover_bytes "$dir/recover.txt")
rows+=("| recovery of a $((recover_bytes / 1048576)) MiB unclean tail (warm page cache) | ${recover_seconds%????} s | $(rate "$recover_bytes" "$recover_seconds") MiB/s | from recovery point $(value recover_recovery_points "$dir/recover.txt") |")

echo "read" >&2
"$bench" read "$dir/leader" >"$dir/read.txt"
read_bytes=$(value read_bytes "$dir/read.txt")
read_seconds=$(value read_seconds "$dir/read.txt")
start=$(now)
cat "$dir"/leader/bench-0/*.log | dd of=/dev/null bs=1M status=none
end=$(now)
dd_read_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
dd_read_bytes=$(cat "$dir"/leader/bench-0/*.log | wc -c)
rows+=("| read (range look-up + pread, page cache) | $(rate "$read_bytes" "$read_seconds") MiB/s | cat\|dd: $(rate "$dd_read_bytes" "$dd_read_seconds") MiB/s | $(value read_segments "$dir/read.txt") segment(s) |")
rm -rf "$dir/leader"

echo "create $partitions partitions" >&2
"$bench" create "$dir/many" "$partitions" >"$dir/create.txt"
echo "open $partitions partitions" >&2
"$bench" open "$dir/many" >"$dir/open.txt"
o() { value "$1" "$dir/open.txt"; }
rows+=("| open $(o open_partitions) partitions x 3 segments (clean) | $(o open_seconds | cut -c1-6) s | VmRSS $(($(o open_rss_before_kb) / 1024)) -> $(($(o open_rss_after_kb) / 1024)) MiB | $(o open_descriptors) fds open, budget $(o open_budget), $(o open_logs_open) logs and $(o open_segments_open) segments open |")
rows+=("| then read every partition from its start once | $(o touch_seconds | cut -c1-6) s | VmRSS $(($(o touch_rss_after_kb) / 1024)) MiB | $(o touch_descriptors) fds open, $(o touch_segment_evictions) cold segments and $(o touch_evictions) whole logs closed, $(o touch_logs_open) logs open |")
rows+=("| (creating them, for reference) | $(value create_seconds "$dir/create.txt" | cut -c1-6) s | | |")

echo "| measure | LogBroker | reference | note |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
