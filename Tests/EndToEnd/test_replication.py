"""Replication in a cluster (issue 19, Kafka's replication contract, RELIABILITY.md): a record acknowledged with
acks=all is on every member of the ISR, and a leader elected from the ISR has it. Real logbroker-server processes
over a real etcd (cluster.py), killed with SIGKILL, paused with SIGSTOP, cut apart with nftables in network
namespaces (netns.py), and written and read with confluent-kafka (librdkafka).

What a user checks: every acknowledged record reads back exactly once, at the offset it was acknowledged at; the
replicas of a partition hold byte-identical batches below the high watermark (read from the segment files); an ISR
too small for min.insync.replicas refuses writes instead of acknowledging them.

Figures measured here are printed (pytest -s shows them)."""
import struct
import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import cluster, wait_until  # noqa: F401

# A follower that stops fetching leaves the ISR after 4 s; a silent broker is fenced after 6 s.
LAG_MS = 4000
SETTINGS = (f"replica.lag.time.max.ms={LAG_MS}\nbroker.session.timeout.ms=6000\n"
            "broker.heartbeat.interval.ms=1000\n")


# MARK: Helpers

def bootstrap(nodes, among=None):
    return ",".join(node.bootstrap for node in (among or nodes.nodes))


def create_topic(nodes, name, partitions=1, configs=None):
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    topic = NewTopic(name, num_partitions=partitions, replication_factor=3, config=configs or {})
    admin.create_topics([topic])[name].result(60)
    wait_until(lambda: all(state and state["leader"] >= 0 for state in
                           (partition_state(nodes, name, p) for p in range(partitions))),
               60, f"{name} has no leaders")


def partition_state(nodes, topic, partition, among=None):
    """{leader, replicas, isr} from Metadata through the live brokers, or None."""
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes, among), "socket.timeout.ms": 5000})
    try:
        metadata = admin.list_topics(topic, timeout=10)
    except Exception:  # noqa: BLE001 - no broker answered this time; the caller polls again
        return None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or partition not in found.partitions:
        return None
    state = found.partitions[partition]
    return {"leader": state.leader, "replicas": list(state.replicas), "isr": sorted(state.isrs)}


def live(nodes):
    return [node for node in nodes.nodes if node.process is not None and not node.paused]


def batches(node, topic, partition):
    """The record batches in `node`'s segment files of the partition, in offset order: (base offset, last offset,
    the batch's bytes)."""
    found = []
    directory = node.log_dir / f"{topic}-{partition}"
    for segment in sorted(directory.glob("*.log")):
        data = segment.read_bytes()
        position = 0
        while position + 12 <= len(data):
            base_offset, length = struct.unpack_from(">qi", data, position)
            if length <= 0 or position + 12 + length > len(data):
                break
            (last_delta,) = struct.unpack_from(">i", data, position + 23)
            found.append((base_offset, base_offset + last_delta, data[position:position + 12 + length]))
            position += 12 + length
    return found


def high_watermark(nodes, topic, partition):
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes, live(nodes)), "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)[1]
    finally:
        consumer.close()


def assert_replicas_identical(nodes, topic, partition):
    """Waits until every replica holds the same batches below the high watermark, byte for byte."""
    hw = high_watermark(nodes, topic, partition)

    def below(node):
        return [batch for batch in batches(node, topic, partition) if batch[1] < hw]

    def identical():
        copies = [below(node) for node in nodes.nodes]
        return all(copy == copies[0] for copy in copies) and (not copies[0] or copies[0][-1][1] == hw - 1)

    wait_until(identical, 60, lambda: f"{topic}-{partition}: replicas differ below the high watermark {hw}: " +
               ", ".join(f"node {node.node_id}: {[(b[0], b[1]) for b in below(node)][-3:]}" for node in nodes.nodes))


def read_all(nodes, topic, partition):
    """Every record of the partition up to the high watermark: [(offset, value)]."""
    end = high_watermark(nodes, topic, partition)
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes, live(nodes)), "group.id": "verify",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, partition, 0)])
    records, deadline = [], time.monotonic() + 120
    while (not records or records[-1][0] < end - 1) and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None or message.error() is not None:
            continue
        records.append((message.offset(), message.value()))
    consumer.close()
    return records


class NumberedProducer:
    """An idempotent acks=all producer writing numbered records round-robin over the partitions from a thread of
    its own; it keeps what was acknowledged: {(partition, offset): value}, and every delivery error."""

    def __init__(self, nodes, topic, partitions, **config):
        self.topic, self.partitions = topic, partitions
        self.producer = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 5, "message.timeout.ms": 180_000, **config})
        self.acked, self.errors, self.sent = {}, [], 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def on_delivery(self, error, message):
        with self.lock:
            if error is not None:
                self.errors.append(error)
            else:
                self.acked[(message.partition(), message.offset())] = message.value()

    def run(self):
        while not self.stopping.is_set():
            try:
                self.producer.produce(self.topic, value=b"%09d" % self.sent, partition=self.sent % self.partitions,
                                      on_delivery=self.on_delivery)
                self.sent += 1
            except BufferError:
                self.producer.poll(0.1)
            self.producer.poll(0)
            if self.sent % 50 == 0:
                time.sleep(0.005)

    def start(self):
        self.thread.start()
        return self

    def count(self):
        with self.lock:
            return len(self.acked)

    def wait_for_more(self, than, timeout=120):
        wait_until(lambda: self.count() > than, timeout, f"no acknowledgement after {than}")

    def stop(self):
        self.stopping.set()
        self.thread.join()
        assert self.producer.flush(240) == 0, "records left undelivered"


def assert_acknowledged_read_back(nodes, producer):
    """Every acknowledged record is read back exactly once, at its offset; per partition the numbers grow."""
    for partition in range(producer.partitions):
        records = read_all(nodes, producer.topic, partition)
        values = [value for _, value in records]
        assert len(values) == len(set(values)), f"partition {partition} holds a record twice"
        assert values == sorted(values), f"partition {partition} is out of order"
        at = dict(records)
        for (acked_partition, offset), value in producer.acked.items():
            if acked_partition == partition:
                assert at.get(offset) == value, (f"acknowledged {value} at {partition}/{offset}, read "
                                                 f"{at.get(offset)}")


# MARK: Tests

def test_acknowledged_records_survive_ten_sigkills_of_the_leader(cluster):  # noqa: F811
    nodes = cluster(["broker,controller"] * 3, properties=SETTINGS)
    create_topic(nodes, "acked", partitions=3, configs={"min.insync.replicas": "2"})
    producer = NumberedProducer(nodes, "acked", 3).start()
    producer.wait_for_more(200)
    elections = []
    for _ in range(10):
        state = partition_state(nodes, "acked", 0)
        victim = nodes.node(state["leader"])
        before = producer.count()
        killed_at = time.monotonic()
        victim.kill()
        wait_until(lambda: (partition_state(nodes, "acked", 0, live(nodes)) or {}).get("leader") not in
                   (None, -1, victim.node_id), 60, "no new leader")
        elections.append(time.monotonic() - killed_at)
        producer.wait_for_more(before + 100)
        victim.start()
        wait_until(lambda: all((partition_state(nodes, "acked", p) or {}).get("isr") == [1, 2, 3]
                               for p in range(3)), 90, "the restarted broker did not rejoin every ISR")
    producer.stop()
    print(f"replication: 10 leader kills, new leader seen in Metadata after {min(elections):.2f}-"
          f"{max(elections):.2f} s; {producer.count()} records acknowledged, errors {producer.errors[:3]}")
    assert producer.errors == []
    assert_acknowledged_read_back(nodes, producer)
    for partition in range(3):
        assert_replicas_identical(nodes, "acked", partition)


def test_paused_followers_leave_the_isr_and_min_insync_replicas_refuses_writes(cluster):  # noqa: F811
    nodes = cluster(["broker,controller"] * 3, properties=SETTINGS)
    create_topic(nodes, "guarded", configs={"min.insync.replicas": "2"})
    state = partition_state(nodes, "guarded", 0)
    leader = nodes.node(state["leader"])
    first, second = [nodes.node(replica) for replica in state["replicas"] if replica != leader.node_id]
    strict = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all", "retries": 0,
                       "message.timeout.ms": 30_000, "request.timeout.ms": 20_000})

    def produce(value):
        outcome = []
        strict.produce("guarded", value=value, partition=0, on_delivery=lambda err, msg: outcome.append(err))
        strict.flush(60)
        return outcome[0]

    assert produce(b"three in sync") is None
    paused_at = time.monotonic()
    first.pause()
    wait_until(lambda: (partition_state(nodes, "guarded", 0, [leader]) or {}).get("isr") ==
               sorted([leader.node_id, second.node_id]), LAG_MS / 1000 + 30, "the paused follower stayed in the ISR")
    print(f"replication: a paused follower left the ISR after {time.monotonic() - paused_at:.2f} s "
          f"(replica.lag.time.max.ms {LAG_MS})")
    assert produce(b"two in sync") is None

    second.pause()
    wait_until(lambda: (partition_state(nodes, "guarded", 0, [leader]) or {}).get("isr") == [leader.node_id],
               LAG_MS / 1000 + 30, "the second paused follower stayed in the ISR")
    error = produce(b"alone")
    assert error is not None and error.code() in (KafkaError.NOT_ENOUGH_REPLICAS,
                                                  KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND), error
    assert b"alone" not in [value for _, value in read_all(nodes, "guarded", 0)]

    first.resume()
    second.resume()
    wait_until(lambda: (partition_state(nodes, "guarded", 0, [leader]) or {}).get("isr") == [1, 2, 3],
               60, "the resumed followers did not rejoin the ISR")
    assert produce(b"three again") is None
    values = [value for _, value in read_all(nodes, "guarded", 0)]
    assert values == [b"three in sync", b"two in sync", b"three again"]
    assert_replicas_identical(nodes, "guarded", 0)


def test_a_former_leader_truncates_its_unreplicated_tail_by_leader_epoch(cluster):  # noqa: F811
    # The leader is cut off from its followers (not paused: a paused follower still finds, when resumed, the answer
    # its parked fetch got meanwhile in its socket), well inside replica.lag.time.max.ms, so both stay in the ISR
    # and one of them is elected.
    nodes = cluster(["broker,controller"] * 3, partitionable=True,
                    properties="replica.lag.time.max.ms=30000\nbroker.session.timeout.ms=8000\n"
                               "broker.heartbeat.interval.ms=1000\n")
    network = nodes.network
    create_topic(nodes, "diverge")
    acks_all = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all", "linger.ms": 0})
    for index in range(10):
        acks_all.produce("diverge", value=b"replicated %d" % index, partition=0)
    assert acks_all.flush(60) == 0
    state = partition_state(nodes, "diverge", 0)
    old = nodes.node(state["leader"])
    followers = [node for node in nodes.nodes if node is not old]
    network.isolate(old.node_id, [network.address(follower.node_id) for follower in followers])
    try:
        # acks=1: the old leader appends and answers alone; the followers never see these.
        lone = Producer({"bootstrap.servers": old.bootstrap, "acks": 1, "linger.ms": 0,
                         "enable.idempotence": False})
        for index in range(5):
            lone.produce("diverge", value=b"unreplicated %d" % index, partition=0)
        assert lone.flush(30) == 0
        old.kill()
        wait_until(lambda: (partition_state(nodes, "diverge", 0, followers) or {}).get("leader") in
                   [follower.node_id for follower in followers], 90, "no new leader among the followers")
        acks_all = Producer({"bootstrap.servers": bootstrap(nodes, followers), "acks": "all", "linger.ms": 0})
        for index in range(5):
            acks_all.produce("diverge", value=b"new leader %d" % index, partition=0)
        assert acks_all.flush(60) == 0
    finally:
        # Healed only now: the killed leader's kernel still retransmits the fetch answers its process had written
        # (with the tail); once the followers follow the new leader, those connections are gone.
        network.heal(old.node_id)

    old.start()
    wait_until(lambda: (partition_state(nodes, "diverge", 0) or {}).get("isr") == [1, 2, 3], 60,
               "the old leader did not rejoin the ISR")
    values = [value for _, value in read_all(nodes, "diverge", 0)]
    assert values == [b"replicated %d" % i for i in range(10)] + [b"new leader %d" % i for i in range(5)]
    assert_replicas_identical(nodes, "diverge", 0)
    assert not any(b"unreplicated" in batch for _, _, batch in batches(old, "diverge", 0))


def test_a_rolling_restart_under_load_loses_nothing_acknowledged(cluster):  # noqa: F811
    nodes = cluster(["broker,controller"] * 3, properties=SETTINGS)
    create_topic(nodes, "rolling", partitions=3, configs={"min.insync.replicas": "2"})
    producer = NumberedProducer(nodes, "rolling", 3).start()
    producer.wait_for_more(200)
    for node in nodes.nodes:
        before = producer.count()
        assert node.stop() == 0, node.log()
        producer.wait_for_more(before + 100)
        node.start()
        wait_until(lambda: all((partition_state(nodes, "rolling", p) or {}).get("isr") == [1, 2, 3]
                               for p in range(3)), 90, f"{node} did not rejoin every ISR")
    producer.stop()
    assert producer.errors == []
    assert_acknowledged_read_back(nodes, producer)
    for partition in range(3):
        assert_replicas_identical(nodes, "rolling", partition)


def test_an_isolated_leader_acknowledges_nothing_and_truncates_its_tail_after_healing(cluster):  # noqa: F811
    # Jepsen's 2013 Kafka case: the ISR shrinks to the leader, then the leader is cut off from everyone but its
    # clients. min.insync.replicas=2 keeps it from acknowledging alone; unclean election (allowed on this topic)
    # then lets a follower that was in the ISR until the shrink lead, losing nothing acknowledged.
    nodes = cluster(["broker,controller"] * 3, partitionable=True, properties=SETTINGS)
    network = nodes.network
    create_topic(nodes, "jepsen", configs={"min.insync.replicas": "2", "unclean.leader.election.enable": "true"})
    # The producer's records wait out the cut (message.timeout.ms 180 s): an idempotent librdkafka producer whose
    # records time out in the middle of a retried batch fails fatally (_INCONSISTENT), its own rule.
    producer = NumberedProducer(nodes, "jepsen", 1).start()
    producer.wait_for_more(100)
    state = partition_state(nodes, "jepsen", 0)
    leader = nodes.node(state["leader"])
    others = [node for node in nodes.nodes if node is not leader]
    try:
        # The followers are cut off from the leader (not from the controller): the ISR shrinks to the leader. The
        # records appended meanwhile wait for followers that never come: the leader's unacknowledged tail.
        network.isolate(leader.node_id, [network.address(node.node_id) for node in others])
        wait_until(lambda: (partition_state(nodes, "jepsen", 0, [leader]) or {}).get("isr") == [leader.node_id],
                   LAG_MS / 1000 + 30, "the ISR did not shrink to the leader")
        # Then from the controllers and etcd too: it is fenced, and a follower is elected.
        network.isolate(leader.node_id, [network.service_address])
        wait_until(lambda: (partition_state(nodes, "jepsen", 0, others) or {}).get("leader") in
                   [node.node_id for node in others], 60, "no leader elected among the others")
        new_leader = nodes.node(partition_state(nodes, "jepsen", 0, others)["leader"])
        # The isolated leader still believes it leads. With acks=1 it takes records alone (min.insync.replicas
        # binds acks=all only): a tail nobody else has, which Kafka's acks=1 may lose, and must, here.
        lone = Producer({"bootstrap.servers": leader.bootstrap, "acks": 1, "linger.ms": 0,
                         "enable.idempotence": False})
        for index in range(5):
            lone.produce("jepsen", value=b"isolated %d" % index, partition=0)
        assert lone.flush(30) == 0
        new_end = batches(new_leader, "jepsen", 0)[-1][1]
        tail = [batch for batch in batches(leader, "jepsen", 0) if batch[0] > new_end]
        assert any(b"isolated" in batch for _, _, batch in tail), "the isolated leader holds no tail"
    finally:
        network.heal(leader.node_id)
    wait_until(lambda: (partition_state(nodes, "jepsen", 0) or {}).get("isr") == [1, 2, 3], 90,
               "the old leader did not rejoin the ISR after healing")
    producer.wait_for_more(producer.count() + 50)
    producer.stop()
    print(f"jepsen: the isolated leader held {len(tail)} unacknowledged batches past the new leader's log end")
    assert_acknowledged_read_back(nodes, producer)
    assert_replicas_identical(nodes, "jepsen", 0)
    # Its tail is gone: truncated by leader epoch when it followed the new leader.
    kept = {batch[2] for batch in batches(leader, "jepsen", 0)}
    assert not any(batch[2] in kept for batch in tail)
    assert not any(b"isolated" in value for _, value in read_all(nodes, "jepsen", 0))
