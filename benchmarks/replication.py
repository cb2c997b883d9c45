"""Replication on a three-node cluster over one etcd (every node `broker,controller`), measured where users feel it:
- leader failover: REPLICATION_PARTITIONS partitions at RF 3 (topics of 100), so about a third are led by each
  broker; a broker that is not the active controller is SIGKILLed, and the clock runs from the kill until
  (detection) Metadata through a survivor no longer lists it (it is fenced), (election) no partition names it as
  leader any more, and (writable) one acks=1 record to each partition it led is acknowledged by the new leader;
- produce throughput and p99 (send to acknowledgement) with logbroker-perf at RF 3, acks=all and acks=1, against a
  standalone broker (RF 1) in the same run;
- follower catch-up: a follower stopped (SIGTERM) while REPLICATION_CATCH_UP_MB are written, then started again;
  MB/s from its start until its log end equals the leader's.
Prints one table; progress goes to stderr. Usage: replication.py SERVER_BINARY PERF_BINARY."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings

from benchtools import log

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Node, controller_of, create, wait  # noqa: E402  (benchmarks/cluster.py, which puts Tests/EndToEnd on the path)
from etcd_server import EtcdServer, free_port  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient


def metadata(bootstrap):
    """(broker ids, {(topic, partition): leader}) from one Metadata answer of `bootstrap`, or None."""
    try:
        answer = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except Exception:  # noqa: BLE001 - no answer this time; the caller polls again
        return None
    leaders = {(name, index): partition.leader for name, topic in answer.topics.items()
               for index, partition in topic.partitions.items()}
    return set(answer.brokers), leaders


def failover(nodes, etcd, partitions):
    topics = [f"failover-{index}" for index in range(partitions // 100)]
    wait(lambda: create(nodes[0].bootstrap, topics, 100, 3), 300, "the topics were not created")
    wait(lambda: (found := metadata(nodes[0].bootstrap)) and
         sum(1 for (topic, _), leader in found[1].items() if topic in topics and leader >= 0) == partitions,
         300, "not every partition has a leader")
    controller = controller_of(etcd)
    victim = next(node for node in nodes if node.node_id != controller)
    survivor = next(node for node in nodes if node is not victim)
    _, leaders = metadata(survivor.bootstrap)
    led = [key for key, leader in leaders.items() if leader == victim.node_id and key[0] in topics]
    log(f"failover: node {victim.node_id} leads {len(led)} of {partitions} partitions; SIGKILL")
    killed = time.monotonic()
    victim.kill(signal.SIGKILL)
    wait(lambda: (found := metadata(survivor.bootstrap)) and victim.node_id not in found[0], 120,
         "the killed broker was never fenced")
    detected = time.monotonic() - killed
    wait(lambda: (found := metadata(survivor.bootstrap)) and
         all(found[1].get(key, -1) not in (-1, victim.node_id) for key in led), 120,
         "the killed broker's partitions got no new leaders")
    elected = time.monotonic() - killed
    producer = Producer({"bootstrap.servers": survivor.bootstrap, "acks": 1, "linger.ms": 1})
    delivered = []
    for topic, partition in led:
        producer.produce(topic, value=b"x", partition=partition, on_delivery=lambda err, _: delivered.append(err))
    producer.flush(120)
    writable = time.monotonic() - killed
    if len(delivered) != len(led) or any(delivered):
        sys.exit(f"failover: {len(delivered)} of {len(led)} delivered; errors {[e for e in delivered if e][:3]}")
    offset = victim.start()[1]
    victim.wait_for_line("LogBroker started", offset)
    return len(led), detected, elected, writable


def perf(perf_binary, bootstrap, topic, acks, count, size):
    """logbroker-perf producer's records/s, MB/s and p99 ms."""
    answer = subprocess.run([perf_binary, "producer", "-b", bootstrap, "--topic", topic, "--num-records", str(count),
                             "--record-size", str(size), "--acks", acks, "--batch-size", "1000000", "--linger-ms", "5",
                             "--json", "--reporting-interval", "600000"], stdout=subprocess.PIPE, check=True)
    result = json.loads(answer.stdout)
    if result["records_acknowledged"] != count:
        sys.exit(f"perf {topic}: {result}")
    return result["records_per_second"], result["records_per_second"] * size / 1e6, result["latency_ms"]["p99"]


def segment_bytes(node, topic, partition):
    """The bytes in the partition's segment files on `node` (a follower's batches are the leader's, byte for byte,
    so equal sizes mean it has caught up)."""
    directory = os.path.join(os.path.dirname(node.config), "logs", f"{topic}-{partition}")
    if not os.path.isdir(directory):
        return 0
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)
               if name.endswith(".log"))


def catch_up(nodes, perf_binary, megabytes):
    wait(lambda: create(nodes[0].bootstrap, ["catch-up"], 1, 3), 120, "catch-up was not created")
    _, leaders = wait(lambda: metadata(nodes[0].bootstrap), 60, "no metadata")
    leader = next(node for node in nodes if node.node_id == leaders[("catch-up", 0)])
    follower = next(node for node in nodes if node is not leader)
    follower.kill(signal.SIGTERM)
    perf(perf_binary, leader.bootstrap, "catch-up", "1", megabytes * 1000, 1000)
    behind = segment_bytes(leader, "catch-up", 0)
    started, offset = follower.start()
    wait(lambda: segment_bytes(follower, "catch-up", 0) >= behind, 600, "the follower never caught up")
    took = time.monotonic() - started
    follower.wait_for_line("LogBroker started", offset)
    return behind / 1e6 / took, took


def main():
    server, perf_binary = sys.argv[1], sys.argv[2]
    partitions = int(os.environ.get("REPLICATION_PARTITIONS", "3000"))
    records = int(os.environ.get("REPLICATION_RECORDS", "500000"))
    catch_up_mb = int(os.environ.get("REPLICATION_CATCH_UP_MB", "500"))
    workdir = tempfile.mkdtemp(prefix="logbroker-replication-")
    etcd = EtcdServer()
    etcd.start()
    nodes = [Node(server, workdir, node_id, etcd) for node_id in (1, 2, 3)]
    standalone = None
    try:
        for node in nodes:
            node.offset = node.start()[1]
        for node in nodes:
            node.wait_for_line("LogBroker started", node.offset)
        led, detected, elected, writable = failover(nodes, etcd, partitions)
        log(f"failover: fenced after {detected:.2f} s, elected {elected:.2f} s, writable {writable:.2f} s")

        rows = []
        for acks in ("all", "1"):
            topic = f"perf-rf3-{acks}"
            wait(lambda: create(nodes[0].bootstrap, [topic], 6, 3), 120, f"{topic} was not created")
            rows.append((f"RF 3, acks={acks}", perf(perf_binary, ",".join(n.bootstrap for n in nodes), topic, acks,
                                                    records, 1000)))
        standalone_port = free_port()
        standalone_dir = os.path.join(workdir, "standalone")
        os.makedirs(standalone_dir)
        config = os.path.join(standalone_dir, "server.properties")
        with open(config, "w") as out:
            out.write(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:{standalone_port}\nlog.dirs={standalone_dir}/logs\n")
        standalone = subprocess.Popen([server, config], stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(standalone_dir, "server.log"), "w"))
        bootstrap = f"127.0.0.1:{standalone_port}"
        wait(lambda: create(bootstrap, ["perf-standalone"], 6, 1), 120, "the standalone broker did not start")
        rows.append(("standalone (RF 1), acks=all", perf(perf_binary, bootstrap, "perf-standalone", "all", records,
                                                          1000)))
        rate, took = catch_up(nodes, perf_binary, catch_up_mb)

        print("| replication, 3 nodes | figure |")
        print("|---|---|")
        print(f"| failover of {led} partitions (SIGKILL of their leader): fenced (detection) | {detected:.2f} s |")
        print(f"| ... every one has a new leader in Metadata | {elected:.2f} s |")
        print(f"| ... every one acknowledged a write on its new leader | {writable:.2f} s |")
        for name, (per_second, mb, p99) in rows:
            print(f"| produce {records} x 1000 B, {name}: records/s, MB/s, p99 ms | {per_second:,.0f}; {mb:.1f}; "
                  f"{p99:.1f} |")
        print(f"| follower catch-up after a restart ({catch_up_mb} MB behind) | {rate:.1f} MB/s ({took:.1f} s) |")
    finally:
        if standalone is not None:
            standalone.kill()
        for node in nodes:
            if node.process is not None:
                node.kill(signal.SIGKILL)
        etcd.stop()
        subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    main()
