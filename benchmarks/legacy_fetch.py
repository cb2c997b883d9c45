"""Consuming through Fetch v0-3's down-conversion beside the normal path, on one fresh broker.

kcat (Debian's, librdkafka 2.0.2) writes LEGACY_COUNT records of 100 B into one topic per codec (none and gzip;
`-X linger.ms=5 -X batch.size=1000000`), then reads each topic back whole, in turns:

- `v2`: kcat as it is: Fetch v11, the stored batches sent with sendfile;
- `v1 (0.10.0)`: kcat with `-X api.version.request=false -X broker.version.fallback=0.10.0`: Fetch v2, so the
  broker reads the batches into memory and converts them to message format v1 (one message per record, or one
  gzip wrapper per batch, which the broker decompresses and compresses again).

Each read is `kcat -C -o 0 -c COUNT -e -q` with a prefetch queue that holds the whole topic (as broker.sh does),
timed around the process and counted; the broker's CPU seconds (user + system from /proc/PID/stat) are taken
around each read. Each row is the median of LEGACY_ROUNDS reads. MB/s counts record values (100 B each, 10^6 B
per MB). kcat and the broker share the machine, so rates are of the pair; the CPU seconds are the broker's own.

Usage: legacy_fetch.py LOGBROKER_SERVER (benchmarks/legacy_fetch.sh builds it in release mode first).
Environment: LEGACY_COUNT (default 1000000), LEGACY_ROUNDS (default 3), LEGACY_TIMEOUT (seconds each kcat may
take, default 300).
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from benchtools import log, median, settle, start_logbroker

COUNT = int(os.environ.get("LEGACY_COUNT", "1000000"))
ROUNDS = int(os.environ.get("LEGACY_ROUNDS", "3"))
TIMEOUT = int(os.environ.get("LEGACY_TIMEOUT", "300"))
SIZE = 100
PATHS = [("v2", []), ("v1 (0.10.0)", ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.10.0"])]


def input_file(workdir):
    """COUNT lines of SIZE bytes (newline included): a sequence number and words from a small vocabulary, so the
    codecs find some redundancy, as in log lines."""
    path = os.path.join(workdir, "records.txt")
    rng = random.Random(42)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(512)]
    text = " ".join(rng.choices(words, k=1 << 18))
    with open(path, "w") as out:
        for number in range(COUNT):
            head = f"{number:010d} "
            start = rng.randrange(len(text) - SIZE)
            out.write(head + text[start:start + SIZE - 1 - len(head)] + "\n")
    return path


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(command, stdout=subprocess.DEVNULL):
    result = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, timeout=TIMEOUT)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:6])}... failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result


def consume(broker, topic, options):
    """Seconds, broker CPU seconds."""
    cpu = cpu_seconds(broker.process.pid)
    started = time.monotonic()
    result = run(["kcat", "-b", broker.address, "-C", "-t", topic, "-p", "0", "-o", "0", "-c", str(COUNT), "-e",
                  "-q", "-X", "queued.min.messages=10000000", "-X", "queued.max.messages.kbytes=2097151"] + options,
                 stdout=subprocess.PIPE)
    elapsed = time.monotonic() - started
    received = result.stdout.count(b"\n")
    if received != COUNT:
        sys.exit(f"{topic} {options}: produced {COUNT}, kcat read {received}")
    return elapsed, cpu_seconds(broker.process.pid) - cpu


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    workdir = tempfile.mkdtemp(prefix="logbroker-legacy-fetch-")
    broker = None
    try:
        log(f"generating {COUNT} records of {SIZE} B")
        path = input_file(workdir)
        broker = start_logbroker(sys.argv[1], workdir)
        log(f"broker pid {broker.process.pid} on {broker.address}")
        rows = []
        for codec in ("none", "gzip"):
            topic = f"legacy-{codec}"
            log(f"produce {topic}")
            run(["kcat", "-b", broker.address, "-P", "-t", topic, "-p", "0", "-z", codec, "-X", "linger.ms=5",
                 "-X", "batch.size=1000000", "-l", path])
            settle()
            runs = {name: [] for name, _ in PATHS}
            for round_number in range(ROUNDS):
                for name, options in PATHS:
                    log(f"consume {topic} {name}, round {round_number + 1}")
                    runs[name].append(consume(broker, topic, options))
            for name, _ in PATHS:
                seconds = median([elapsed for elapsed, _ in runs[name]])
                cpu = median([cpu for _, cpu in runs[name]])
                rows.append((codec, name, COUNT / seconds, COUNT * SIZE / 1e6 / seconds, cpu))
        print(f"| codec | fetch path | records/s | MB/s | broker CPU s per {COUNT:,} records |")
        print("| --- | --- | ---: | ---: | ---: |")
        for codec, name, rate, megabytes, cpu in rows:
            print(f"| {codec} | {name} | {rate:,.0f} | {megabytes:.1f} | {cpu:.2f} |")
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
