"""Idempotent producers, unmodified: confluent-kafka with enable.idempotence=true through a broker SIGKILL and
restart, and kafka-python with its default (idempotence on)."""
import threading
import time

import kafka
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import free_port

RECORDS = 200_000
PARTITIONS = 3


def test_every_delivered_record_is_in_the_log_once_in_order_across_a_sigkill(make_broker):
    broker = make_broker(port=free_port())
    admin = AdminClient({"bootstrap.servers": broker.address})
    next(iter(admin.create_topics([NewTopic("idem", PARTITIONS, 1)]).values())).result(timeout=10)

    producer = Producer({"bootstrap.servers": broker.address, "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 120_000})
    delivered = {}  # value -> (partition, offset)
    failed = []
    sent_per_partition = {p: [] for p in range(PARTITIONS)}

    def on_delivery(err, msg):
        if err is None:
            delivered[msg.value()] = (msg.partition(), msg.offset())
        else:
            failed.append(err)

    def crash_and_restart():
        while len(delivered) < RECORDS // 4:
            time.sleep(0.01)
        broker.kill()
        time.sleep(0.5)
        broker.start()

    crasher = threading.Thread(target=crash_and_restart)
    crasher.start()
    for index in range(RECORDS):
        key = b"key-%d" % (index % 1000)
        value = b"%d" % index
        while True:
            try:
                producer.produce("idem", key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0
    crasher.join(60)
    assert broker.runs == 2, "the broker was killed and restarted while records were in flight"

    # What the log holds, partition by partition.
    consumer = Consumer({"bootstrap.servers": broker.address, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition("idem", p, 0) for p in range(PARTITIONS)])
    in_log = {p: [] for p in range(PARTITIONS)}
    ends = {p: consumer.get_watermark_offsets(TopicPartition("idem", p), timeout=10)[1] for p in range(PARTITIONS)}
    deadline = time.time() + 60
    while sum(len(v) for v in in_log.values()) < sum(ends.values()) and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            in_log[message.partition()].append((message.offset(), int(message.value())))
    consumer.close()

    assert failed == []
    assert len(delivered) == RECORDS
    values = [value for records in in_log.values() for _, value in records]
    assert len(values) == len(set(values)), "a record is in the log twice"
    stored = {(partition, offset, value) for partition, records in in_log.items() for offset, value in records}
    missing = [(v, p, o) for v, (p, o) in delivered.items() if (p, o, int(v)) not in stored]
    assert missing == [], f"{len(missing)} delivered records are not in the log where they were reported"
    # Keyed records keep their send order within each partition.
    for partition, records in in_log.items():
        sent = [value for _, value in records]
        assert sent == sorted(sent), f"partition {partition} is out of send order"


def test_kafka_python_with_its_default_idempotence(broker):
    producer = kafka.KafkaProducer(bootstrap_servers=broker)
    assert producer.config["enable_idempotence"]
    futures = [producer.send("kp-idem", key=b"k", value=b"%d" % i) for i in range(1000)]
    producer.flush(30)
    assert [f.get(timeout=30).offset for f in futures] == list(range(1000))
    producer.close()
    consumer = kafka.KafkaConsumer("kp-idem", bootstrap_servers=broker, auto_offset_reset="earliest",
                                   enable_auto_commit=False, consumer_timeout_ms=5000, group_id=None)
    assert [record.value for record in consumer] == [b"%d" % i for i in range(1000)]
    consumer.close()
