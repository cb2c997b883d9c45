"""Start-up time with many partitions: creates STARTUP_PARTITIONS partitions (topics of 1,000) in a fresh broker,
writes one record to each, then stops the broker ROUNDS times with SIGTERM and ROUNDS times with SIGKILL, each
time starting it again on the same data. Prints, per kind of stop, the median and the largest time from the
restart's spawn until the port accepts connections (the logs are loaded before the listener binds) and until the
"LogBroker started" line (the controller re-elected every partition and the group coordinator read
__consumer_offsets), and the time the SIGTERM stop itself took (flush, checkpoints, marker)."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings

from benchtools import free_port, log, median

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

PER_TOPIC = 1000


def spawn(server, config, stderr_path):
    started = time.monotonic()
    stderr = open(stderr_path, "w+")
    process = subprocess.Popen([server, config], stdout=subprocess.DEVNULL, stderr=stderr)
    return process, stderr, started


def wait_started(process, stderr, started, port, limit):
    """(seconds until the port accepted a connection, seconds until the started line)."""
    listening = None
    while True:
        if process.poll() is not None:
            sys.exit(f"the broker exited with {process.returncode} while starting")
        now = time.monotonic()
        if now - started > limit:
            process.kill()
            sys.exit(f"the broker did not start within {limit} s")
        if listening is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    listening = time.monotonic() - started
        stderr.seek(0)
        if "LogBroker started" in stderr.read():
            return listening if listening is not None else time.monotonic() - started, time.monotonic() - started
        time.sleep(0.02)


def main():
    server = sys.argv[1]
    partitions = int(os.environ.get("STARTUP_PARTITIONS", "10000"))
    rounds = int(os.environ.get("STARTUP_ROUNDS", "3"))
    limit = float(os.environ.get("STARTUP_TIMEOUT", "900"))
    workdir = tempfile.mkdtemp(prefix="logbroker-startup-", dir=os.environ.get("STARTUP_DIR"))
    port = free_port()
    config = os.path.join(workdir, "server.properties")
    with open(config, "w") as out:
        out.write(f"node.id=1\nprocess.roles=broker,controller\nlisteners=PLAINTEXT://127.0.0.1:{port}\n"
                  f"log.dirs={workdir}/logs\n")
    runs = 0

    def start():
        nonlocal runs
        runs += 1
        process, stderr, started = spawn(server, config, os.path.join(workdir, f"server-{runs}.log"))
        return process, wait_started(process, stderr, started, port, limit)

    process, _ = start()
    address = f"127.0.0.1:{port}"
    admin = AdminClient({"bootstrap.servers": address})
    topics = [f"startup-{number}" for number in range((partitions + PER_TOPIC - 1) // PER_TOPIC)]
    began = time.monotonic()
    for index, topic in enumerate(topics):
        count = min(PER_TOPIC, partitions - index * PER_TOPIC)
        admin.create_topics([NewTopic(topic, count, 1)], operation_timeout=limit, request_timeout=limit)[topic].result(limit)
        log(f"created {topic} ({count} partitions)")
    log(f"created {partitions} partitions in {time.monotonic() - began:.1f} s")
    producer = Producer({"bootstrap.servers": address, "linger.ms": 20})
    for index, topic in enumerate(topics):
        for partition in range(min(PER_TOPIC, partitions - index * PER_TOPIC)):
            producer.produce(topic, b"x" * 100, partition=partition)
        producer.poll(0)
    assert producer.flush(limit) == 0, "records left unsent"
    log("wrote one record to each partition")
    # The clients go now, so they do not reconnect to every restart (and log each refusal).
    del producer, admin

    results = {"SIGTERM": [], "SIGKILL": []}
    stops = []
    for round_number in range(rounds):
        for kind in ("SIGTERM", "SIGKILL"):
            stop_began = time.monotonic()
            process.send_signal(signal.SIGTERM if kind == "SIGTERM" else signal.SIGKILL)
            code = process.wait(timeout=limit)
            if kind == "SIGTERM":
                assert code == 0, f"the SIGTERM stop exited with {code}"
                stops.append(time.monotonic() - stop_began)
            process, (listening, started) = start()
            results[kind].append((listening, started))
            log(f"round {round_number + 1}: after {kind} listening in {listening:.2f} s, started in {started:.2f} s")
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=limit)

    print(f"{partitions} partitions (one 100-byte record each), {rounds} rounds, medians (largest)")
    print(f"{'restart after':<14} {'listening s':>16} {'started s':>16}")
    for kind, values in results.items():
        listening = [value[0] for value in values]
        started = [value[1] for value in values]
        print(f"{kind:<14} {median(listening):>9.2f} ({max(listening):.2f}) {median(started):>9.2f} ({max(started):.2f})")
    print(f"{'SIGTERM stop':<14} {median(stops):>9.2f} ({max(stops):.2f})")
    subprocess.run(["rm", "-rf", workdir], check=False)


if __name__ == "__main__":
    main()
