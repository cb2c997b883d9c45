#!/usr/bin/env bash
# Builds logbroker-server in release mode, starts a fresh broker (temporary log dir, an ephemeral port of 127.0.0.1)
# and measures produce and consume throughput with kcat (librdkafka) for 100-byte and 1 KiB records, acks=1 and
# acks=all, codecs none and lz4: each run into a new topic of one partition. Prints one table (progress goes to
# stderr): records/s and MiB/s of record values each way, the broker's CPU time (user + system, /proc/PID/stat) for
# each, and its peak resident memory (VmHWM) during each produce and consume (reset between phases through
# /proc/PID/clear_refs, so each row shows its own peak). The CPU time says whether the broker or the client limits
# a rate: on a shared machine it varies less than the wall-clock rates do.
#
# Produce: `kcat -P -l FILE` (one record per line) with `-X acks=...`, `linger.ms=5` and `batch.size=1000000`
# (librdkafka's defaults, spelled out). Consume: `kcat -C -o beginning -c COUNT -e -q` into `wc -l`, which must count
# every record. `-c` ends it at the last record: with `-e` alone kcat waits for the end-of-partition signal, a fetch
# at the high watermark that the broker holds for fetch.wait.max.ms (500 ms), as Kafka does, which would add half a
# second to every consume. The consumer gets a prefetch queue large enough for the whole topic
# (queued.min.messages, queued.max.messages.kbytes): at librdkafka 2.0.2's defaults (100,000 messages, 64 MiB)
# kcat's own output falls behind the fetches, the queue fills, and librdkafka stops fetching for up to a second at a
# time (seen with `-d fetch`), which measures that pause rather than the broker; BROKERBENCH_CONSUME_OPTS="" measures
# with the defaults. kcat runs on the same machine, so the rates are of the pair, not of the broker alone.
#
# Environment: BROKERBENCH_DIR (default: a new temporary directory; the file system to measure),
# BROKERBENCH_SMALL (records of 100 B, default 1000000), BROKERBENCH_LARGE (records of 1 KiB, default 500000),
# BROKERBENCH_ROUNDS (default 3: each row is the median time of that many runs, each into a new topic, and the
# largest peak), BROKERBENCH_CONSUME_OPTS (kcat -X options for consuming, see above), BROKERBENCH_TIMEOUT (seconds
# each kcat may take, default 300: a broker that stops serving fails the run instead of hanging it),
# LOGBROKER_SCRATCH_PATH (passed to swift as --scratch-path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

command -v kcat >/dev/null || { echo "kcat is missing (bin/setup installs it)" >&2; exit 1; }

source "$root/benchmarks/release-build.sh"
server="$(release_binary logbroker-server)"

small="${BROKERBENCH_SMALL:-1000000}"
large="${BROKERBENCH_LARGE:-500000}"
rounds="${BROKERBENCH_ROUNDS:-3}"
limit="${BROKERBENCH_TIMEOUT:-300}"
consume_opts="${BROKERBENCH_CONSUME_OPTS--X queued.min.messages=10000000 -X queued.max.messages.kbytes=2097151}"
if [ -n "${BROKERBENCH_DIR:-}" ]; then
    dir="$BROKERBENCH_DIR"
    rm -rf "$dir"
    mkdir -p "$dir"
else
    dir="$(mktemp -d -t logbroker-brokerbench.XXXXXX)"
fi
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid" || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

# Input files, generated once: each line is a sequence number and words drawn from a small vocabulary at a random
# place in a shared text, padded to the record size, so lz4 finds some redundancy (about 2:1), as in log lines.
echo "generating $small records of 100 B and $large of 1 KiB" >&2
python3 - "$dir" "$small" "$large" <<'EOF'
import random, sys
directory, small, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
letters = "abcdefghijklmnopqrstuvwxyz"
words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(512)]
text = " ".join(rng.choices(words, k=1 << 20))
for name, count, size in (("records-100.txt", small, 100), ("records-1024.txt", large, 1024)):
    with open(f"{directory}/{name}", "w") as out:
        lines = []
        for number in range(count):
            head = f"{number:010d} "
            start = rng.randrange(len(text) - size)
            lines.append(head + text[start:start + size - len(head)] + "\n")
            if len(lines) == 10000:
                out.write("".join(lines))
                lines = []
        out.write("".join(lines))
EOF

cat >"$dir/server.properties" <<EOF
node.id=1
process.roles=broker,controller
listeners=PLAINTEXT://127.0.0.1:0
log.dirs=$dir/logs
EOF
"$server" "$dir/server.properties" 2>"$dir/server.log" &
pid=$!
port=""
for _ in $(seq 1 400); do
    if grep -q "LogBroker started" "$dir/server.log"; then
        port="$(sed -n 's/.*listener=PLAINTEXT port=\([0-9]*\).*/\1/p' "$dir/server.log" | head -1)"
        [ -n "$port" ] && break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log" >&2; echo "logbroker-server exited" >&2; exit 1; }
    sleep 0.05
done
[ -n "$port" ] || { cat "$dir/server.log" >&2; echo "logbroker-server did not start" >&2; exit 1; }
broker="127.0.0.1:$port"
echo "broker pid $pid on $broker" >&2

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
per_second() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
mib_per_second() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1048576 }'; }
# The broker's peak resident set since the last reset, in MiB; then resets it (5 > clear_refs) for the next phase.
peak() {
    local kb
    kb="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")"
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
    echo $((kb / 1024))
}

# median VALUES...: the middle value (the upper middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] }'; }
# The broker's user + system CPU time so far, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
cpu_seconds() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'; }
larger() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }

peak >/dev/null
echo "| records | size | codec | acks | produce rec/s | produce MiB/s | consume rec/s | consume MiB/s" \
    "| broker CPU produce / consume | broker VmHWM produce / consume |"
echo "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for size in 100 1024; do
    if [ "$size" = 100 ]; then count="$small"; else count="$large"; fi
    input="$dir/records-$size.txt"
    bytes=$((count * size))
    for codec in none lz4; do
        for acks in 1 all; do
            produce_times=()
            consume_times=()
            produce_ticks=()
            consume_ticks=()
            produce_peak=0
            consume_peak=0
            for round in $(seq 1 "$rounds"); do
                topic="bench-$size-$codec-acks-$acks-$round"
                echo "produce $topic" >&2
                cpu=$(ticks)
                start=$(now)
                timeout "$limit" kcat -b "$broker" -P -t "$topic" -z "$codec" -X acks="$acks" -X linger.ms=5 \
                    -X batch.size=1000000 -l "$input" || { echo "$topic: kcat -P failed or timed out" >&2; exit 1; }
                end=$(now)
                produce_times+=("$(seconds "$start" "$end")")
                produce_ticks+=($(($(ticks) - cpu)))
                produce_peak=$(larger "$produce_peak" "$(peak)")
                echo "consume $topic" >&2
                cpu=$(ticks)
                start=$(now)
                # shellcheck disable=SC2086 # the options are words on purpose
                consumed=$(timeout "$limit" kcat -b "$broker" -C -t "$topic" -o beginning -c "$count" -e -q \
                    $consume_opts | wc -l) || true
                end=$(now)
                consume_times+=("$(seconds "$start" "$end")")
                consume_ticks+=($(($(ticks) - cpu)))
                consume_peak=$(larger "$consume_peak" "$(peak)")
                if [ "$consumed" != "$count" ]; then
                    echo "$topic: produced $count records, consumed $consumed" >&2
                    exit 1
                fi
            done
            produce_seconds=$(median "${produce_times[@]}")
            consume_seconds=$(median "${consume_times[@]}")
            printf '| %s | %s B | %s | %s | %s | %s | %s | %s | %s / %s s | %s / %s MiB |\n' \
                "$count" "$size" "$codec" "$acks" \
                "$(per_second "$count" "$produce_seconds")" "$(mib_per_second "$bytes" "$produce_seconds")" \
                "$(per_second "$count" "$consume_seconds")" "$(mib_per_second "$bytes" "$consume_seconds")" \
                "$(cpu_seconds "$(median "${produce_ticks[@]}")")" "$(cpu_seconds "$(median "${consume_ticks[@]}")")" \
                "$produce_peak" "$consume_peak"
        done
    done
done
echo "broker log dir: $(du -sh "$dir/logs" | cut -f1) stored" >&2
