"""The old message formats (magic 0/1) beside the v2 path, in one run against one fresh LogBroker, driven by kcat
(Debian's, librdkafka 2.0.2) with 100-byte records.

Each row is a `Row`: a label, the codec, and a function that runs it once into a new topic and returns the seconds it
took. Produce rows time `kcat -P -l FILE` (linger.ms=5, batch.size=1000000, acks=1) and then check the topic's end
offset; the conversion rows add `api.version.request=false` and `broker.version.fallback=0.9.0`, which makes
librdkafka send Produce v1 with magic 0 message sets, converted by the broker into v2 batches. (librdkafka cannot be
made to send magic 1 here: with a fallback of 0.10.0 or later it asks ApiVersions anyway and, seeing Produce v3+,
sends magic 2.) Before timing, each kcat row produces a few records
with `-d msg` and must show the message version it is meant to measure. More rows go into ROWS; the Fetch side is
legacy_fetch.py. Every row runs LEGACY_ROUNDS times, the rows taking turns, each run into a new topic
deleted afterwards (so every run writes into page-cache memory earlier runs used; see compare.py). It prints one
table: median records/s and MB/s (of record values), and the broker's CPU time per run (user + system, from
/proc/PID/stat), which says whether the broker or kcat limits a row. kcat runs on the same machine.

Usage: legacy.py LOGBROKER_SERVER (benchmarks/legacy.sh builds it in release mode first).
Environment: LEGACY_RECORDS (records per run, default 1000000), LEGACY_ROUNDS (default 3), LEGACY_TIMEOUT (seconds
each kcat may take, default 300).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from benchtools import log, median, start_logbroker, warm
from compare import create_topic, delete_topic, input_file
from confluent_kafka import Consumer, TopicPartition

RECORDS = int(os.environ.get("LEGACY_RECORDS", "1000000"))
ROUNDS = int(os.environ.get("LEGACY_ROUNDS", "3"))
TIMEOUT = int(os.environ.get("LEGACY_TIMEOUT", "300"))
SIZE = 100
# librdkafka as a Kafka 0.9 client: Produce v1, message format v0 (magic 0).
FALLBACK_0_9 = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]


@dataclass
class Row:
    label: str
    codec: str
    # run(broker, topic, path) -> seconds, for one run into `topic` (created, empty) from the records in `path`.
    run: Callable
    # check(broker, topic) -> None, once before timing: exits unless the row takes the path its label names.
    check: Callable = lambda broker, topic: None


def end_offset(broker, topic):
    consumer = Consumer({"bootstrap.servers": broker.address, "group.id": "unused"})
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    consumer.close()
    return high


def kcat_sends(magic, codec, options=()):
    """A row check: kcat with `options` must send MsgVersion `magic` message sets compressed with `codec`."""
    def check(broker, topic):
        command = ["kcat", "-b", broker.address, "-P", "-t", topic, "-z", codec, "-d", "msg", *options]
        result = subprocess.run(command, input=b"a record compressible enough for any codec\n" * 200, capture_output=True, timeout=TIMEOUT)
        sent = re.findall(r"Produce MessageSet with \d+ message\(s\) \(.*?MsgVersion (\d), .*?, (\w+)\)",
                          result.stderr.decode(errors="replace"))
        expected = (str(magic), "uncompressed" if codec == "none" else codec)
        if result.returncode != 0 or not sent or set(sent) != {expected}:
            sys.exit(f"kcat {' '.join(options)} -z {codec} sent {sent}, not MsgVersion {magic} {codec}")
    return check


def kcat_produce(codec, options=()):
    def run(broker, topic, path):
        command = ["kcat", "-b", broker.address, "-P", "-t", topic, "-z", codec, "-X", "acks=1",
                   "-X", "linger.ms=5", "-X", "batch.size=1000000", *options, "-l", path]
        started = time.monotonic()
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=TIMEOUT)
        elapsed = time.monotonic() - started
        if result.returncode != 0:
            sys.exit(f"{topic}: kcat -P failed: {result.stderr.decode(errors='replace')[-2000:]}")
        stored = end_offset(broker, topic)
        if stored != RECORDS:
            sys.exit(f"{topic}: produced {RECORDS} records, the log ends at {stored}")
        return elapsed
    return run


ROWS = [
    Row("produce, v2 batches (kcat default)", "none", kcat_produce("none"), kcat_sends(2, "none")),
    Row("produce, Produce v1 magic 0, converted (fallback 0.9.0)", "none", kcat_produce("none", FALLBACK_0_9),
        kcat_sends(0, "none", FALLBACK_0_9)),
    Row("produce, v2 batches (kcat default)", "gzip", kcat_produce("gzip"), kcat_sends(2, "gzip")),
    Row("produce, Produce v1 magic 0, converted (fallback 0.9.0)", "gzip", kcat_produce("gzip", FALLBACK_0_9),
        kcat_sends(0, "gzip", FALLBACK_0_9)),
]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    server = sys.argv[1]
    if shutil.which("kcat") is None:
        sys.exit("kcat is missing (bin/setup installs it)")
    workdir = tempfile.mkdtemp(prefix="logbroker-legacy-")
    broker = None
    try:
        log(f"generating {RECORDS} records of {SIZE} B")
        path = input_file(workdir, RECORDS, SIZE)
        warm(workdir, 1024)
        broker = start_logbroker(server, workdir)
        for index, row in enumerate(ROWS):
            topic = f"legacy-check-{index}"
            create_topic(broker, topic, 1)
            row.check(broker, topic)
            delete_topic(broker, topic)
        runs = [[] for _ in ROWS]
        serial = 0
        for _ in range(ROUNDS):
            for index, row in enumerate(ROWS):
                serial += 1
                topic = f"legacy-{index}-{serial}"
                log(f"{row.label}, {row.codec}")
                create_topic(broker, topic, 1)
                cpu = cpu_seconds(broker.process.pid)
                seconds = row.run(broker, topic, path)
                runs[index].append((seconds, cpu_seconds(broker.process.pid) - cpu))
                delete_topic(broker, topic)
        print(f"| path | codec | records | rec/s | MB/s | broker CPU s |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for row, results in zip(ROWS, runs):
            seconds = median([elapsed for elapsed, _ in results])
            cpu = median([used for _, used in results])
            print(f"| {row.label} | {row.codec} | {RECORDS:,} | {RECORDS / seconds:,.0f} | "
                  f"{RECORDS * SIZE / 1e6 / seconds:,.1f} | {cpu:.2f} |")
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
