"""The leader's side of replication in a cluster of three logbroker-server processes over etcd (issue 19): a topic
with three replicas is led by one broker and followed by the two others, which refuse clients with
NOT_LEADER_OR_FOLLOWER. No follower fetches by itself yet, so the test plays both followers: it sends the leader
Fetch requests with their replica ids on a raw socket. Until they fetched past a record, the high watermark stays
below it, consumers do not see it and an acks=all produce waits; afterwards confluent-kafka reads every record."""
import struct
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cluster import NONE, KafkaReader, _string, cluster, create_topic, send, wait_until  # noqa: F401

FETCH = 1
NOT_LEADER_OR_FOLLOWER = 6


def fetch(address, topic, offset, replica_id=-1):
    """A Fetch v4 of partition 0 of `topic` at `offset`, answered at once: (error code, high watermark, record bytes
    returned)."""
    body = (struct.pack(">iiiib", replica_id, 0, 0, 1 << 20, 0) + struct.pack(">i", 1) + _string(topic)
            + struct.pack(">iiqi", 1, 0, offset, 1 << 20))
    answer = send(address, FETCH, 4, body)
    assert answer is not None, f"{address} closed the connection on Fetch"
    reader = KafkaReader(answer)
    reader.take(">i")  # throttle time
    assert reader.take(">i") == 1
    reader.string()
    assert reader.take(">i") == 1
    _, error, high_watermark, _ = reader.take(">ihqq")
    aborted = reader.take(">i")
    for _ in range(max(aborted, 0)):
        reader.take(">qq")
    records = reader.take(">i")
    return error, high_watermark, max(records, 0)


def test_followers_refuse_clients_and_the_high_watermark_follows_the_followers_fetches(cluster):  # noqa: F811
    nodes = cluster(["broker,controller"] * 3)
    bootstrap = ",".join(node.bootstrap for node in nodes.brokers())
    topic = f"replicated-{uuid.uuid4().hex[:8]}"
    wait_until(lambda: create_topic(nodes.node(1).bootstrap, topic, partitions=1, replication_factor=3)[0] == NONE,
               60, "the topic was not created")
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def assignment():
        partition = admin.list_topics(topic, timeout=10).topics[topic].partitions.get(0)
        return partition if partition is not None and partition.leader >= 0 else None
    partition = wait_until(assignment, 60, "no leader for the partition")
    leader = nodes.node(partition.leader)
    followers = [node for node in nodes.brokers() if node.node_id != partition.leader]
    assert sorted(partition.replicas) == [1, 2, 3]

    # Each follower refuses clients once it has applied its role.
    for follower in followers:
        wait_until(lambda: fetch(follower.bootstrap, topic, 0)[0] == NOT_LEADER_OR_FOLLOWER, 30,
                   lambda: f"node {follower.node_id} does not refuse a consumer:\n{follower.log()}")

    # acks=1 is answered by the leader alone; the records are not committed yet.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": 1})
    delivered = []
    for index in range(5):
        producer.produce(topic, value=f"record-{index}".encode(), partition=0,
                         on_delivery=lambda error, message: delivered.append((error, message.offset())))
    assert producer.flush(60) == 0
    assert [error for error, _ in delivered] == [None] * 5, delivered
    assert fetch(leader.bootstrap, topic, 0) == (NONE, 0, 0)

    # An acks=all produce waits for both followers.
    waiting = Producer({"bootstrap.servers": bootstrap, "acks": "all", "request.timeout.ms": 60_000})
    acknowledged = []
    waiting.produce(topic, value=b"record-5", partition=0,
                    on_delivery=lambda error, message: acknowledged.append((error, message.offset())))
    waiting.poll(1)
    assert acknowledged == []

    # The first follower copies everything (it reads past the high watermark) and says so: not enough alone.
    first, second = followers
    error, high_watermark, size = fetch(leader.bootstrap, topic, 0, replica_id=first.node_id)
    assert (error, high_watermark) == (NONE, 0) and size > 0
    wait_until(lambda: fetch(leader.bootstrap, topic, 6, replica_id=first.node_id)[0] == NONE or None, 30,
               "the acks=all record did not arrive")
    assert fetch(leader.bootstrap, topic, 0)[1] == 0
    # The second one reaches the log end too: everything is committed.
    assert fetch(leader.bootstrap, topic, 6, replica_id=second.node_id)[:2] == (NONE, 6)
    deadline = time.monotonic() + 30
    while not acknowledged and time.monotonic() < deadline:
        waiting.poll(0.1)
    assert acknowledged == [(None, 5)]

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    received = []
    deadline = time.monotonic() + 60
    while len(received) < 6 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received.append(message.value())
    consumer.close()
    assert received == [f"record-{index}".encode() for index in range(6)]
