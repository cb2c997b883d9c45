"""Log compaction seen by real clients: a consumer that starts late on a compacted topic gets the latest value of
every key, at the offset it was written at (kcat and kafka-python)."""
import subprocess
import time

import kafka
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

KEYS = 20
ROUNDS = 30


def kcat_records(address, topic):
    out = subprocess.run(["kcat", "-b", address, "-C", "-t", topic, "-e", "-q", "-f", "%o %k %s\\n"],
                         capture_output=True, timeout=30).stdout.decode()
    return [tuple(line.split(" ", 2)) for line in out.splitlines()]


def test_a_late_consumer_sees_the_latest_value_of_every_key(make_broker):
    broker = make_broker("log.cleaner.backoff.ms=200\n")
    admin = AdminClient({"bootstrap.servers": broker.address})
    configs = {"cleanup.policy": "compact", "segment.bytes": "2048", "min.cleanable.dirty.ratio": "0.01"}
    next(iter(admin.create_topics([NewTopic("users", 1, 1, config=configs)]).values())).result(timeout=10)

    # A user updating an email address, many times over, in small batches across many segments.
    producer = Producer({"bootstrap.servers": broker.address, "linger.ms": 0, "batch.size": 400})
    latest = {}
    for round in range(ROUNDS):
        for user in range(KEYS):
            key, value = f"user-{user:02d}", f"user-{user:02d}@mail-{round}"
            producer.produce("users", key=key, value=value,
                             on_delivery=lambda err, msg: latest.__setitem__(msg.key().decode(),
                                                                             (str(msg.offset()), msg.value().decode())))
        producer.flush(30)
    # Roll the active segment so every update is cleanable: segment.ms passes before one last record.
    resource = ConfigResource(ResourceType.TOPIC, "users", incremental_configs=[
        ConfigEntry("segment.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    next(iter(admin.incremental_alter_configs([resource]).values())).result(timeout=10)
    time.sleep(0.1)
    producer.produce("users", key="zz-last", value="last")
    producer.flush(30)
    assert len(latest) == KEYS

    expected = sorted((offset, key, value) for key, (offset, value) in latest.items())
    deadline = time.time() + 60
    records = kcat_records(broker.address, "users")
    while records[:-1] != expected and time.time() < deadline:
        time.sleep(0.5)
        records = kcat_records(broker.address, "users")
    assert records[:-1] == expected, "kcat sees each key once, its latest value at its original offset"
    assert records[-1][1:] == ("zz-last", "last")
    offsets = [int(offset) for offset, _, _ in records]
    assert offsets == sorted(offsets)
    assert "Cleaned log" in (broker.directory / f"server-{broker.runs}.log").read_text()

    consumer = kafka.KafkaConsumer("users", bootstrap_servers=broker.address, auto_offset_reset="earliest",
                                   enable_auto_commit=False, consumer_timeout_ms=5000, group_id=None)
    seen = [(str(r.offset), r.key.decode(), r.value.decode()) for r in consumer]
    consumer.close()
    assert seen[:-1] == expected
