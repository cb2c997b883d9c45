"""The issue's performance targets that the side-by-side table does not cover, each against a fresh LogBroker,
driven by logbroker-perf on the same machine:

1. Latency at half load: the maximum rate of 100 B records with linger.ms=0 and acks=1 on one partition, then a run
   paced at half of it; p99 from send to acknowledgement.
2. Large records: 64 KiB records in 1 MiB batches (acks=1, one partition), MB/s into the broker, beside dd writing
   as many bytes (bs=1M, no fsync) to the same file system just before, each after a same-size scratch write;
   the median of TARGETS_LARGE_ROUNDS runs.
3. Memory over a long load: a producer paced at TARGETS_SOAK_RATE records/s and a consumer reading along, for
   TARGETS_SOAK_SECONDS; the broker's resident memory (VmRSS) sampled every 10 s, and the slope of a least-squares
   line through the samples after the first quarter (warm-up), in MB per minute.

Usage: targets.py LOGBROKER_SERVER LOGBROKER_PERF (benchmarks/targets.sh builds both in release mode first).
Environment: TARGETS_SOAK_SECONDS (default 600), TARGETS_SOAK_RATE (default 100000), TARGETS_LARGE_MB (MB of 64 KiB
records per run, default 2048), TARGETS_LARGE_ROUNDS (runs of them, default 5).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from benchtools import log, median, settle, start_logbroker, warm, write_zeros

SOAK_SECONDS = int(os.environ.get("TARGETS_SOAK_SECONDS", "600"))
SOAK_RATE = int(os.environ.get("TARGETS_SOAK_RATE", "100000"))
LARGE_MB = int(os.environ.get("TARGETS_LARGE_MB", "2048"))
LARGE_ROUNDS = int(os.environ.get("TARGETS_LARGE_ROUNDS", "5"))


def perf(binary, broker, *arguments):
    result = subprocess.run([binary, *arguments, "-b", broker, "--json", "--reporting-interval", "600000"],
                            capture_output=True)
    if result.returncode != 0:
        sys.exit(f"logbroker-perf {' '.join(arguments)} failed: {result.stderr.decode(errors='replace')}")
    return json.loads(result.stdout)


def dd_mb_per_second(workdir, megabytes):
    """dd's rate writing `megabytes` MiB with bs=1M into the page cache, timed around the process."""
    target = os.path.join(workdir, "dd.out")
    started = time.monotonic()
    write_zeros(target, megabytes)
    elapsed = time.monotonic() - started
    os.remove(target)
    return megabytes * 1.048576 / elapsed


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def slope_per_minute(samples):
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    count = len(samples)
    mean_t = sum(t for t, _ in samples) / count
    mean_m = sum(m for _, m in samples) / count
    numerator = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    denominator = sum((t - mean_t) ** 2 for t, _ in samples) or 1
    return numerator / denominator * 60


def main():
    server, binary = sys.argv[1], sys.argv[2]
    workdir = tempfile.mkdtemp(prefix="logbroker-targets-")
    logbroker = None
    try:
        logbroker = start_logbroker(server, workdir)
        broker = logbroker.address
        rows = []

        log("latency: the maximum rate with linger.ms=0")
        peak = perf(binary, broker, "producer", "--topic", "latency-max", "--partitions", "1", "--record-size", "100",
                    "--num-records", "1000000", "--linger-ms", "0", "--acks", "1")
        half = int(peak["records_per_second"] / 2)
        settle()
        log(f"latency: paced at {half} records/s for 20 s")
        paced = perf(binary, broker, "producer", "--topic", "latency-half", "--partitions", "1", "--record-size", "100",
                     "--num-records", str(half * 20), "--throughput", str(half), "--linger-ms", "0", "--acks", "1")
        rows.append((f"p99 send to acknowledgement at half of {peak['records_per_second']:,.0f} records/s "
                     f"(linger.ms=0, acks=1)", f"{paced['latency_ms']['p99']:.2f} ms "
                     f"(p50 {paced['latency_ms']['p50']:.2f}, max {paced['latency_ms']['max']:.2f})", "<= 5 ms"))

        settle()
        large_mib = LARGE_MB * 1_000_000 // 1_048_576
        ours, theirs = [], []
        for round_ in range(LARGE_ROUNDS):
            log(f"large records, round {round_ + 1} of {LARGE_ROUNDS}: {LARGE_MB} MB of 64 KiB records, and dd of the "
                f"same size")
            warm(workdir, large_mib)
            theirs.append(dd_mb_per_second(workdir, large_mib))
            warm(workdir, large_mib)
            large = perf(binary, broker, "producer", "--topic", f"large-{round_}", "--partitions", "1",
                         "--record-size", "65536", "--num-records", str(LARGE_MB * 1_000_000 // 65536),
                         "--batch-size", "1048576", "--linger-ms", "5", "--acks", "1")
            ours.append(large["mb_per_second"] * 1.048576)
        rows.append((f"64 KiB records, 1 MiB batches, acks=1: MB/s into the broker (median of {LARGE_ROUNDS}; "
                     f"each run {', '.join(f'{rate:,.0f}' for rate in ours)})",
                     f"{median(ours):,.0f} MB/s (dd bs=1M: {median(theirs):,.0f} MB/s)", ">= 1,000 MB/s"))

        settle()
        log(f"memory: {SOAK_RATE} records/s for {SOAK_SECONDS} s, a consumer reading along")
        count = SOAK_RATE * SOAK_SECONDS
        results = {}

        def run(name, *arguments):
            results[name] = perf(binary, broker, *arguments)

        subprocess.run([binary, "producer", "-b", broker, "--topic", "soak", "--partitions", "1", "--record-size",
                        "100", "--num-records", "1", "--json"], capture_output=True, check=True)
        threads = [
            threading.Thread(target=run, args=("producer", "producer", "--topic", "soak", "--record-size", "100",
                                               "--num-records", str(count), "--throughput", str(SOAK_RATE),
                                               "--acks", "1")),
            threading.Thread(target=run, args=("consumer", "consumer", "--topic", "soak", "--messages",
                                               str(count + 1), "--timeout", "60000")),
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        samples = []
        while any(thread.is_alive() for thread in threads):
            samples.append((time.monotonic() - started, rss_mb(logbroker.process.pid)))
            for thread in threads:
                thread.join(timeout=10 / len(threads))
        after_warmup = [sample for sample in samples if sample[0] >= SOAK_SECONDS / 4]
        slope = slope_per_minute(after_warmup) if len(after_warmup) >= 2 else float("nan")
        rows.append((f"broker RSS slope after warm-up, {SOAK_SECONDS} s at {SOAK_RATE:,} records/s in and out "
                     f"({len(samples)} samples, {samples[0][1]:.0f} to {samples[-1][1]:.0f} MB)",
                     f"{slope:+.2f} MB/min", "< 1 MB/min"))
        audit = (results["producer"]["records_acknowledged"], results["consumer"]["records_received"])
        if audit != (count, count + 1):
            sys.exit(f"soak audit: acknowledged {audit[0]} of {count}, received {audit[1]} of {count + 1}")

        print("| target | measured | wanted |")
        print("| --- | ---: | ---: |")
        for row in rows:
            print(f"| {row[0]} | {row[1]} | {row[2]} |")
    finally:
        if logbroker is not None:
            logbroker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
