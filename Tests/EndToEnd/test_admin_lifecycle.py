"""Topic administration over time, with confluent-kafka: concurrent admin clients, deleting and re-creating a topic,
config changes that reach existing logs without a restart, and a restart that keeps topics, ids and configs."""
import multiprocessing
import os
import re
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   ResourceType)


def one(futures):
    return next(iter(futures.values()))


def topic_configs(admin, topic):
    return {name: entry.value for name, entry in
            one(admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])).result(timeout=10).items()}


def topic_ids(admin, names):
    described = admin.describe_topics(TopicCollection(names))
    return {name: str(future.result(timeout=10).topic_id) for name, future in described.items()}


def wait_for(condition, timeout=30, seen=lambda: None):
    """Polls `condition` for up to `timeout` seconds; on failure the message shows what `seen` returns."""
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out after {timeout} s; seen: {seen()}"
        time.sleep(0.05)


def append_throttled_replicas(address, broker_id, key, value, barrier, spans):
    """One admin client in its own process: 100 IncrementalAlterConfigs, each appending one entry to the same list,
    then one SET of its own key. Both processes connect first and pass `barrier` together, and each reports when
    it sent its first and last request in `spans`."""
    admin = AdminClient({"bootstrap.servers": address})
    admin.list_topics(timeout=10)
    barrier.wait(timeout=60)
    started = time.time()
    for partition in range(100):
        resource = ConfigResource(ResourceType.TOPIC, "shared", incremental_configs=[ConfigEntry(
            "leader.replication.throttled.replicas", f"{partition}:{broker_id}",
            incremental_operation=AlterConfigOpType.APPEND)])
        one(admin.incremental_alter_configs([resource])).result(timeout=30)
    resource = ConfigResource(ResourceType.TOPIC, "shared", incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    one(admin.incremental_alter_configs([resource])).result(timeout=30)
    spans.put((started, time.time()))


def test_concurrent_admin_clients_lose_no_change(broker):
    """Two admin processes, each sending 100 IncrementalAlterConfigs APPENDs to the same list at the same time, then
    one SET of its own key: all 200 entries and both keys are there afterwards (a lost update would drop some)."""
    admin = AdminClient({"bootstrap.servers": broker})
    one(admin.create_topics([NewTopic("shared", 1, 1)])).result(timeout=10)
    context = multiprocessing.get_context("spawn")
    barrier, spans = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=append_throttled_replicas, args=(broker, 1, "retention.ms", "123456", barrier, spans)),
        context.Process(target=append_throttled_replicas, args=(broker, 2, "segment.ms", "654321", barrier, spans)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    # The two processes were sending at the same time.
    (start_a, end_a), (start_b, end_b) = spans.get(timeout=5), spans.get(timeout=5)
    assert max(start_a, start_b) < min(end_a, end_b)
    configs = topic_configs(admin, "shared")
    entries = configs["leader.replication.throttled.replicas"].split(",")
    assert len(entries) == 200
    assert set(entries) == {f"{p}:{b}" for p in range(100) for b in (1, 2)}
    assert configs["retention.ms"] == "123456" and configs["segment.ms"] == "654321"


def produce(address, topic, values):
    producer = Producer({"bootstrap.servers": address, "linger.ms": 5})
    errors = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    assert errors == [None] * len(values)


def consume_all(address, topic, partitions, count):
    consumer = Consumer({"bootstrap.servers": address, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    received = []
    deadline = time.time() + 30
    while len(received) < count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received.append(message.value())
    # Nothing more arrives.
    extra = consumer.poll(1.0)
    consumer.close()
    assert extra is None or extra.error() is not None
    return received


def test_a_deleted_topic_is_created_again_at_once(make_broker):
    """A topic deleted and created again at once with another partition count: producing and consuming work, the old
    records are gone, and the old directories disappear from the log dir."""
    # Kafka removes a deleted log log.segment.delete.delay.ms after the rename (60 s by default; 3 s here).
    broker = make_broker("log.segment.delete.delay.ms=3000\n")
    admin = AdminClient({"bootstrap.servers": broker.address})
    one(admin.create_topics([NewTopic("again", 2, 1)])).result(timeout=10)
    produce(broker.address, "again", [b"old-%d" % i for i in range(50)])
    old_id = topic_ids(admin, ["again"])["again"]
    one(admin.delete_topics(["again"])).result(timeout=10)
    # Both partition directories are renamed '<topic>-<partition>.<32 hex>-delete' and kept for the delay.
    renamed = lambda: sorted(n for n in os.listdir(broker.log_dir) if n.startswith("again-"))
    wait_for(lambda: [re.sub(r"\.[0-9a-f]{32}-delete$", "", n) for n in renamed()] == ["again-0", "again-1"]
             and all(n.endswith("-delete") for n in renamed()), timeout=1, seen=renamed)
    one(admin.create_topics([NewTopic("again", 3, 1)])).result(timeout=10)
    assert len(admin.list_topics(timeout=10).topics["again"].partitions) == 3
    assert topic_ids(admin, ["again"])["again"] != old_id

    new = [b"new-%d" % i for i in range(30)]
    produce(broker.address, "again", new)
    assert sorted(consume_all(broker.address, "again", 3, len(new))) == sorted(new)
    # The renamed old directories are removed in the background once the delay is over.
    wait_for(lambda: not [n for n in os.listdir(broker.log_dir) if n.endswith("-delete")], seen=renamed)
    assert sorted(n for n in os.listdir(broker.log_dir) if n.startswith("again-")) == ["again-0", "again-1", "again-2"]


def test_a_lower_retention_deletes_old_segments_without_a_restart(make_broker):
    """Segments holding records two days old are deleted once retention.ms is lowered to an hour: the earliest offset
    rises and the .log files go, with the broker running."""
    broker = make_broker("log.retention.check.interval.ms=1000\nlog.segment.delete.delay.ms=0\n")
    admin = AdminClient({"bootstrap.servers": broker.address})
    one(admin.create_topics([NewTopic("aging", 1, 1, config={"segment.bytes": "4096"})])).result(timeout=10)
    two_days_ago = int(time.time() * 1000) - 2 * 86_400_000
    # Batches under segment.bytes (a larger one is refused with RECORD_LIST_TOO_LARGE, as Kafka does).
    producer = Producer({"bootstrap.servers": broker.address, "linger.ms": 0, "batch.size": 2000})
    errors = []
    for index in range(300):
        producer.produce("aging", value=b"x" * 100, partition=0, timestamp=two_days_ago + index,
                         on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    assert errors == [None] * 300
    partition_dir = broker.log_dir / "aging-0"
    segments = lambda: sorted(n for n in os.listdir(partition_dir) if n.endswith(".log"))
    assert len(segments()) >= 5
    consumer = Consumer({"bootstrap.servers": broker.address, "group.id": "unused"})
    low, high = consumer.get_watermark_offsets(TopicPartition("aging", 0), timeout=10)
    assert (low, high) == (0, 300)

    resource = ConfigResource(ResourceType.TOPIC, "aging", incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    one(admin.incremental_alter_configs([resource])).result(timeout=10)
    # Every rolled segment is two days old: all but the active one go, and the earliest offset rises.
    wait_for(lambda: consumer.get_watermark_offsets(TopicPartition("aging", 0), timeout=10)[0] > 250, timeout=40)
    wait_for(lambda: len(segments()) == 1, seen=segments)
    consumer.close()


def test_a_raised_max_message_bytes_admits_a_larger_record(broker):
    """A 2 MB record is refused with MSG_SIZE_TOO_LARGE under the default max.message.bytes, and accepted once the
    topic's max.message.bytes is 3 MB."""
    admin = AdminClient({"bootstrap.servers": broker})
    one(admin.create_topics([NewTopic("big", 1, 1)])).result(timeout=10)
    big = Producer({"bootstrap.servers": broker, "message.max.bytes": 10_000_000, "linger.ms": 0})
    errors = []
    big.produce("big", value=b"y" * 2_000_000, on_delivery=lambda err, msg: errors.append(err))
    big.flush(30)
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    resource = ConfigResource(ResourceType.TOPIC, "big", incremental_configs=[
        ConfigEntry("max.message.bytes", "3000000", incremental_operation=AlterConfigOpType.SET)])
    one(admin.incremental_alter_configs([resource])).result(timeout=10)
    errors.clear()
    big.produce("big", value=b"y" * 2_000_000, on_delivery=lambda err, msg: errors.append(err))
    big.flush(30)
    assert [e and e.code() for e in errors] == [None]


def test_a_restart_keeps_topics_ids_and_configs(make_broker):
    """After a SIGTERM (exit 0) and a start on the same log.dirs, the topic has its partitions, its id and its
    configs."""
    broker = make_broker()
    admin = AdminClient({"bootstrap.servers": broker.address})
    one(admin.create_topics([NewTopic("kept", 4, 1, config={"retention.ms": "7200000",
                                                            "cleanup.policy": "compact,delete"})])).result(timeout=10)
    resource = ConfigResource(ResourceType.TOPIC, "kept", incremental_configs=[
        ConfigEntry("segment.ms", "600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("leader.replication.throttled.replicas", "0:1,3:1", incremental_operation=AlterConfigOpType.APPEND)])
    one(admin.incremental_alter_configs([resource])).result(timeout=10)
    ids = topic_ids(admin, ["kept"])
    before = topic_configs(admin, "kept")
    broker.stop()
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.address})
    assert len(admin.list_topics(timeout=10).topics["kept"].partitions) == 4
    assert topic_ids(admin, ["kept"]) == ids and ids["kept"] != "AAAAAAAAAAAAAAAAAAAAAA"
    after = topic_configs(admin, "kept")
    assert after == before
    assert after["retention.ms"] == "7200000" and after["cleanup.policy"] == "compact,delete"
    assert after["segment.ms"] == "600000" and after["leader.replication.throttled.replicas"] == "0:1,3:1"

