"""confluent-kafka 2.16.1 and kafka-python 3.0.12, unmodified, against logbroker-server: what a user checks first.
Idempotence is off here, so these check the plain path; test_idempotent_producers.py checks the idempotent one."""
import time

import confluent_kafka
import kafka
from kafka.structs import TopicPartition as KafkaPythonTopicPartition

COUNT = 5_000


def values(prefix):
    return [f"{prefix}-{i}".encode() for i in range(COUNT)]


def test_confluent_kafka_round_trip_with_acks_all(broker):
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": broker, "acks": "all", "enable.idempotence": False, "compression.type": "lz4"}
    )
    delivered = []
    for value in values("ck"):
        producer.produce("ck-topic", value=value, key=value[-3:],
                         on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    assert producer.flush(30) == 0
    assert [err for err, _ in delivered if err is not None] == []
    assert sorted(offset for _, offset in delivered) == list(range(COUNT))

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": broker, "group.id": "unused", "enable.auto.commit": False}
    )
    partition = confluent_kafka.TopicPartition("ck-topic", 0, 0)
    consumer.assign([partition])
    low, high = consumer.get_watermark_offsets(partition, timeout=10)
    assert (low, high) == (0, COUNT)
    consumer.seek(confluent_kafka.TopicPartition("ck-topic", 0, 10))
    received = []
    deadline = time.time() + 30
    while len(received) < COUNT - 10 and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            received.append(message.value())
    assert received == values("ck")[10:]

    times = consumer.offsets_for_times([confluent_kafka.TopicPartition("ck-topic", 0, 0)], timeout=10)
    assert times[0].offset == 0
    consumer.close()


def test_kafka_python_round_trip_with_fetch_sessions(broker):
    producer = kafka.KafkaProducer(bootstrap_servers=broker, enable_idempotence=False, acks=1,
                                   compression_type="gzip")
    futures = [producer.send("kp-topic", value=value) for value in values("kp")]
    producer.flush(30)
    offsets = [future.get(timeout=30).offset for future in futures]
    assert offsets == list(range(COUNT))
    producer.close()

    consumer = kafka.KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, consumer_timeout_ms=5000)
    partition = KafkaPythonTopicPartition("kp-topic", 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    received = [message.value for message in consumer]
    assert received == values("kp")
    # kafka-python keeps a KIP-227 session per broker (a private attribute, the only place it shows): after the reads
    # it must be in an incremental session the broker accepted, not back on full fetches after an error.
    sessions = [handler.next_metadata for handler in consumer._fetcher._session_handlers.values()]
    assert sessions and all(meta.session_id != 0 and meta.epoch > 1 for meta in sessions), sessions
    assert consumer.end_offsets([partition])[partition] == COUNT
    consumer.close()
