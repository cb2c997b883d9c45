"""Fetch v0-3: records written by a modern (v2) producer, read by clients configured as 0.8-0.10 consumers, which
the broker answers in message format v1 (Fetch v2-3) or v0 (Fetch v0-1), as Kafka 3.x did.

kafka-python, given an old broker version, sends exactly that version's requests: (0, 10, 1) Fetch v3, (0, 10, 0)
Fetch v2, (0, 9) Fetch v1, (0, 8, 2) Fetch v0. librdkafka (kcat 1.7 on librdkafka 2.0.2, and confluent-kafka on
2.16) with `api.version.request=false` uses the fixed tables of `broker.version.fallback` only for brokers older than
0.10: a 0.10.0 fallback counts as a broker that answers ApiVersions, so it asks anyway, sees Fetch up to v12 and
reads v2 batches (seen with `-d protocol`). So librdkafka is tested with 0.9.0 (Fetch v1) and 0.8.2 (Fetch v0), both
message format v0, and message format v1 with kafka-python.

Most reads name their start offset (the group test below finds it with ListOffsets v0 and the group's commits, as an
old client does). The records carry headers, which
the old formats cannot hold: headers arriving empty show the records went through the conversion; magic 0 also
loses the timestamps."""
import subprocess
import time

import confluent_kafka
import confluent_kafka.admin
import kafka
import kafka.errors
import pytest
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaPythonTopicPartition

COUNT = 300
BASE_TIMESTAMP = 1_700_000_000_000
CODECS = ["none", "gzip", "snappy", "lz4"]

# kafka-python's broker version -> the Fetch version it sends and the message format it gets back.
KAFKA_PYTHON_VERSIONS = [((0, 10, 1), 1), ((0, 10, 0), 1), ((0, 9), 0), ((0, 8, 2), 0)]
# librdkafka's broker.version.fallback, each with message format v0 (Fetch v1 and v0).
LIBRDKAFKA_FALLBACKS = ["0.9.0", "0.8.2"]


def key_of(i):
    return None if i % 7 == 0 else f"k{i}".encode()


def value_of(i):
    return None if i % 11 == 0 else f"v{i}-".encode() + b"x" * (i % 50)


def produce(broker, topic, codec, count=COUNT, linger_ms=20, batch_size=1_000_000):
    """`count` records through confluent-kafka's v2 producer, each with a header and its own timestamp."""
    producer = confluent_kafka.Producer({
        "bootstrap.servers": broker, "compression.type": codec, "linger.ms": linger_ms,
        "batch.size": batch_size, "enable.idempotence": False,
    })
    errors = []
    for i in range(count):
        producer.produce(topic, key=key_of(i), value=value_of(i), headers=[("h", b"1"), ("i", str(i).encode())],
                         timestamp=BASE_TIMESTAMP + i,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0
    assert errors == []


def expected(start=0, count=COUNT):
    return [(i, key_of(i), value_of(i)) for i in range(start, count)]


def kafka_python_consumer(broker, api_version, **settings):
    return kafka.KafkaConsumer(bootstrap_servers=broker, api_version=api_version, enable_auto_commit=False,
                               **settings)


def read_kafka_python(consumer, topic, start, count, deadline_s=30):
    partition = KafkaPythonTopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, start)
    records = []
    deadline = time.time() + deadline_s
    while len(records) < count - start and time.time() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_old_consumers_read_v2_records(broker, codec):
    topic = f"legacy-kp-{codec}"
    produce(broker, topic, codec)
    for api_version, magic in KAFKA_PYTHON_VERSIONS:
        consumer = kafka_python_consumer(broker, api_version)
        try:
            records = read_kafka_python(consumer, topic, 5, COUNT)
        finally:
            consumer.close()
        label = f"{codec} api_version={api_version}"
        assert [(r.offset, r.key, r.value) for r in records] == expected(5), label
        assert all(r.headers == [] for r in records), label
        if magic == 1:
            assert [r.timestamp for r in records] == [BASE_TIMESTAMP + i for i in range(5, COUNT)], label
            assert {r.timestamp_type for r in records} == {0}, label
        else:
            assert {r.timestamp for r in records} <= {None, -1}, label


def kcat_read(broker, topic, fallback, start, count):
    command = [
        "kcat", "-b", broker, "-C", "-t", topic, "-p", "0", "-o", str(start), "-c", str(count - start), "-e", "-Z",
        "-f", "%o|%k|%s|%T|%h\n", "-X", "api.version.request=false", "-X", f"broker.version.fallback={fallback}",
    ]
    result = subprocess.run(command, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    parsed = []
    for line in lines:
        offset, key, value, timestamp, headers = line.split("|")
        parsed.append((int(offset), None if key == "NULL" else key.encode(),
                       None if value == "NULL" else value.encode(), int(timestamp), headers))
    return parsed


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_with_old_broker_fallbacks_reads_v2_records(broker, codec):
    topic = f"legacy-kcat-{codec}"
    produce(broker, topic, codec)
    for fallback in LIBRDKAFKA_FALLBACKS:
        records = kcat_read(broker, topic, fallback, 3, COUNT)
        label = f"{codec} fallback {fallback}"
        assert [(o, k, v) for o, k, v, _, _ in records] == expected(3), label
        assert {h for _, _, _, _, h in records} == {""}, label
        # Message format v0 has no timestamps; kcat prints 0 for a message without one.
        assert {t for _, _, _, t, _ in records} == {0}, label


@pytest.mark.parametrize("fallback", LIBRDKAFKA_FALLBACKS)
def test_confluent_kafka_with_old_broker_fallback_reads_v2_records(broker, fallback):
    topic = "legacy-ck"
    produce(broker, topic, "gzip")
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": broker, "group.id": "unused", "enable.auto.commit": False,
        "api.version.request": False, "broker.version.fallback": fallback,
    })
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, 10)])
    received = []
    deadline = time.time() + 30
    while len(received) < COUNT - 10 and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received.append(message)
    consumer.close()
    assert [(m.offset(), m.key(), m.value()) for m in received] == expected(10)
    assert all(m.headers() is None for m in received)
    assert {m.timestamp()[0] for m in received} == {confluent_kafka.TIMESTAMP_NOT_AVAILABLE}


def test_kafka_python_group_with_fetch_v3_resumes_from_its_commits(broker):
    topic = "legacy-group"
    produce(broker, topic, "snappy")
    partition = KafkaPythonTopicPartition(topic, 0)

    def member():
        return kafka_python_consumer(broker, (0, 10, 1), group_id="legacy-readers", auto_offset_reset="earliest",
                                     max_poll_records=50)

    consumer = member()
    consumer.subscribe([topic])
    first = []
    deadline = time.time() + 30
    while len(first) < 120 and time.time() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            first.extend(batch)
    first = first[:120]
    consumer.commit({partition: OffsetAndMetadata(120, "", -1)})
    consumer.close()
    assert [(r.offset, r.key, r.value) for r in first] == expected(0, 120)

    consumer = member()
    consumer.subscribe([topic])
    rest = []
    deadline = time.time() + 30
    while len(rest) < COUNT - 120 and time.time() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            rest.extend(batch)
    assert consumer.committed(partition) == 120
    consumer.close()
    assert [(r.offset, r.key, r.value) for r in rest] == expected(120)


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_fetch_smaller_than_a_batch_still_gets_the_whole_first_batch(broker, codec):
    topic = f"legacy-big-{codec}"
    produce(broker, topic, codec, count=200, linger_ms=200)
    consumer = kafka_python_consumer(broker, (0, 10, 1), max_partition_fetch_bytes=1024, max_poll_records=10_000)
    partition = KafkaPythonTopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    first = {}
    deadline = time.time() + 30
    while not first and time.time() < deadline:
        first = consumer.poll(timeout_ms=500)
    consumer.close()
    # One fetch of at most 1 KiB per partition: the 200 records, one producer batch of ~20 KiB, all arrive at once.
    assert [(r.offset, r.key, r.value) for r in first.get(partition, [])] == expected(0, 200)


def test_zstd_batches_answer_unsupported_compression_type(broker):
    topic = "legacy-zstd"
    produce(broker, topic, "zstd", count=20)
    consumer = kafka_python_consumer(broker, (0, 10, 1))
    partition = KafkaPythonTopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    try:
        with pytest.raises(kafka.errors.UnsupportedCompressionTypeError):
            deadline = time.time() + 30
            while time.time() < deadline:
                assert consumer.poll(timeout_ms=500) == {}
    finally:
        consumer.close()


def test_topic_without_down_conversion_answers_unsupported_version(broker):
    topic = "legacy-disabled"
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker})
    created = admin.create_topics([confluent_kafka.admin.NewTopic(
        topic, 1, 1, config={"message.downconversion.enable": "false"})])
    created[topic].result(timeout=30)
    produce(broker, topic, "none", count=10)
    old = kafka_python_consumer(broker, (0, 10, 1))
    partition = KafkaPythonTopicPartition(topic, 0)
    old.assign([partition])
    old.seek(partition, 0)
    try:
        with pytest.raises(kafka.errors.UnsupportedVersionError):
            deadline = time.time() + 30
            while time.time() < deadline:
                assert old.poll(timeout_ms=500) == {}
    finally:
        old.close()
    # A current consumer reads the topic as usual.
    current = kafka.KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    try:
        assert [(r.offset, r.key, r.value) for r in read_kafka_python(current, topic, 0, 10)] == expected(0, 10)
    finally:
        current.close()


@pytest.mark.parametrize("api_version,codec", [((0, 9), "gzip"), ((0, 9), "snappy"), ((0, 10, 1), "gzip")])
def test_an_old_client_produces_and_consumes_in_a_group_and_resumes_from_its_commits(broker, api_version, codec):
    """kafka-python as a whole old client: (0, 9) produces with Produce v1 (magic 0) and, in a group (JoinGroup v0),
    finds its start with ListOffsets v0, fetches with v1 and commits with OffsetCommit v2; (0, 10, 1) uses Produce v2
    (magic 1) and Fetch v3. A second member after a restart resumes from the first one's commit."""
    topic = f"old-client-{codec}-{'-'.join(map(str, api_version))}"
    producer = kafka.KafkaProducer(bootstrap_servers=broker, api_version=api_version, compression_type=codec,
                                   linger_ms=5)
    for i in range(COUNT):
        producer.send(topic, key=key_of(i), value=value_of(i) or b"")
    producer.flush(30)
    producer.close()
    want = [(i, key_of(i), value_of(i) or b"") for i in range(COUNT)]
    partition = KafkaPythonTopicPartition(topic, 0)
    group = f"old-readers-{topic}"

    def read(consumer, count):
        records = []
        deadline = time.time() + 60
        while len(records) < count and time.time() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return [(r.offset, r.key, r.value) for r in records]

    consumer = kafka_python_consumer(broker, api_version, group_id=group, auto_offset_reset="earliest",
                                     max_poll_records=100)
    consumer.subscribe([topic])
    first = read(consumer, 100)[:100]
    consumer.commit({partition: OffsetAndMetadata(100, "", -1)})
    consumer.close()
    assert first == want[:100]

    consumer = kafka_python_consumer(broker, api_version, group_id=group, auto_offset_reset="earliest")
    consumer.subscribe([topic])
    rest = read(consumer, COUNT - 100)
    assert consumer.committed(partition) == 100
    consumer.close()
    assert rest == want[100:]
