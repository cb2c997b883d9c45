"""Consuming through Fetch v0-3's down-conversion beside the normal path, on one fresh broker.

kcat (Debian's, librdkafka 2.0.2) writes LEGACY_COUNT records of 100 B into one topic per codec (none and gzip;
`-X linger.ms=5 -X batch.size=1000000`), then each topic is read back whole, in turns, by:

- `kcat` as it is: Fetch v11, the stored batches sent with sendfile;
- `kcat 0.9.0`: kcat with `-X api.version.request=false -X broker.version.fallback=0.9.0`: Fetch v1, so the broker
  reads the batches into memory and converts them to message format v0 (one message per record, or one gzip
  wrapper per batch, which the broker decompresses and compresses again). librdkafka cannot be made to send
  Fetch v2/v3: with a 0.10.0 fallback it asks ApiVersions anyway and uses Fetch v11;
- `raw Fetch v4` and `raw Fetch v2`: a minimal client in this script on one connection, fetching 1 MiB per request
  and reading only the offsets it needs to go on (batch headers, or top-level message headers), so that the rate
  shows the broker more than the client: v4 gets the stored batches, v2 message format v1, converted.

Each read is timed around the whole read and must reach the last offset (kcat: `-o 0 -c COUNT -e -q` with a
prefetch queue that holds the whole topic, as broker.sh does, and every record counted); the broker's CPU seconds
(user + system from /proc/PID/stat) are taken around each read. Each row is the median of LEGACY_ROUNDS reads. MB/s
counts record values (100 B each, 10^6 B per MB). The clients share the machine with the broker, so rates are of
the pair; the CPU seconds are the broker's own.

Usage: legacy_fetch.py LOGBROKER_SERVER (benchmarks/legacy.sh builds it in release mode first).
Environment: LEGACY_COUNT (default 1000000), LEGACY_ROUNDS (default 3), LEGACY_TIMEOUT (seconds each read may
take, default 300).
"""
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

from benchtools import log, median, settle, start_logbroker

COUNT = int(os.environ.get("LEGACY_COUNT", "1000000"))
ROUNDS = int(os.environ.get("LEGACY_ROUNDS", "3"))
TIMEOUT = int(os.environ.get("LEGACY_TIMEOUT", "300"))
SIZE = 100
KCAT_09 = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]
PATHS = [("kcat (Fetch v11, v2 batches)", ("kcat", [])), ("kcat 0.9.0 (Fetch v1, format v0)", ("kcat", KCAT_09)),
         ("raw Fetch v4 (v2 batches)", ("raw", 4)), ("raw Fetch v2 (format v1)", ("raw", 2))]


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


def kcat_read(broker, topic, options):
    result = run(["kcat", "-b", broker.address, "-C", "-t", topic, "-p", "0", "-o", "0", "-c", str(COUNT), "-e",
                  "-q", "-X", "queued.min.messages=10000000", "-X", "queued.max.messages.kbytes=2097151"] + options,
                 stdout=subprocess.PIPE)
    received = result.stdout.count(b"\n")
    if received != COUNT:
        sys.exit(f"{topic} {options}: produced {COUNT}, kcat read {received}")


def string(text):
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def receive(sock, count):
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(count - len(data), 1 << 20))
        if not chunk:
            sys.exit("the broker closed the connection")
        data += chunk
    return bytes(data)


def next_offset(records, version, offset):
    """The offset after the last whole batch (v4) or top-level message (v0-3) in `records`."""
    position, end = 0, len(records)
    while position + 12 <= end:
        base, length = struct.unpack_from(">qi", records, position)
        if position + 12 + length > end:
            break
        if version >= 4:
            (last_delta,) = struct.unpack_from(">i", records, position + 23)
            offset = base + last_delta + 1
        else:
            offset = base + 1
        position += 12 + length
    return offset


def raw_read(broker, topic, version):
    """Fetches the partition from offset 0 to COUNT with Fetch `version`, 1 MiB per request."""
    host, port = broker.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        offset, correlation = 0, 0
        while offset < COUNT:
            correlation += 1
            body = struct.pack(">iii", -1, 500, 1)
            if version >= 3:
                body += struct.pack(">i", 50 << 20)
            if version >= 4:
                body += struct.pack(">b", 0)
            body += struct.pack(">i", 1) + string(topic) + struct.pack(">iiqi", 1, 0, offset, 1 << 20)
            frame = struct.pack(">hhi", 1, version, correlation) + string("legacy-fetch-bench") + body
            sock.sendall(struct.pack(">i", len(frame)) + frame)
            (size,) = struct.unpack(">i", receive(sock, 4))
            data = receive(sock, size)
            position = 8 if version >= 1 else 4  # correlation id, throttle time
            position += 4  # one topic
            (name_length,) = struct.unpack_from(">h", data, position)
            position += 2 + name_length + 4  # the name, one partition
            _, error, _ = struct.unpack_from(">ihq", data, position)
            position += 14
            if error != 0:
                sys.exit(f"Fetch v{version} of {topic} at {offset}: error {error}")
            if version >= 4:
                (aborted,) = struct.unpack_from(">i", data, position + 8)
                position += 12 + max(aborted, 0) * 16
            (length,) = struct.unpack_from(">i", data, position)
            position += 4
            offset = next_offset(memoryview(data)[position:position + max(length, 0)], version, offset)


def timed_read(broker, topic, reader):
    """Seconds, broker CPU seconds."""
    kind, argument = reader
    cpu = cpu_seconds(broker.process.pid)
    started = time.monotonic()
    if kind == "kcat":
        kcat_read(broker, topic, argument)
    else:
        raw_read(broker, topic, argument)
    elapsed = time.monotonic() - started
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
                for name, reader in PATHS:
                    log(f"consume {topic} {name}, round {round_number + 1}")
                    runs[name].append(timed_read(broker, topic, reader))
            for name, _ in PATHS:
                seconds = median([elapsed for elapsed, _ in runs[name]])
                cpu = median([cpu for _, cpu in runs[name]])
                rows.append((codec, name, COUNT / seconds, COUNT * SIZE / 1e6 / seconds, cpu))
        print(f"| codec | reader | records/s | MB/s | broker CPU s per {COUNT:,} records |")
        print("| --- | --- | ---: | ---: | ---: |")
        for codec, name, rate, megabytes, cpu in rows:
            print(f"| {codec} | {name} | {rate:,.0f} | {megabytes:.1f} | {cpu:.2f} |")
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
