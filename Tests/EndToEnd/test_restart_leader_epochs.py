"""Every partition gets its new leader epoch at every restart, clean or not, with many partitions over a small
descriptor budget (most logs closed while the start-up elections are applied in one batch).

confluent-kafka 2.16.1 writes one record to each of 120 partitions per broker run and reads them back: each
record's batch carries the leader epoch it was appended under (`Message.leader_epoch()`), which must be the run's
number (0 at creation, then one more per restart, after SIGTERM and after SIGKILL alike), and nothing written before
a stop is missing after it. After the last clean stop each partition's `leader-epoch-checkpoint` lists every epoch
at the offset where it began, the last one (elected, nothing appended yet) at the log end."""
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "epochs"
PARTITIONS = 120


def create_topic(address):
    admin = AdminClient({"bootstrap.servers": address})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)], operation_timeout=60)[TOPIC].result(60)


def write_one_each(address, run):
    producer = Producer({"bootstrap.servers": address, "linger.ms": 5, "acks": "all"})
    for partition in range(PARTITIONS):
        producer.produce(TOPIC, f"run {run}".encode(), partition=partition)
    assert producer.flush(60) == 0, "records left unsent"


def read_all(address, expected_per_partition):
    consumer = Consumer({"bootstrap.servers": address, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, partition, 0) for partition in range(PARTITIONS)])
    seen = {partition: [] for partition in range(PARTITIONS)}
    remaining = PARTITIONS * expected_per_partition
    try:
        for _ in range(600):
            if remaining == 0:
                break
            for message in consumer.consume(500, timeout=0.2):
                assert message.error() is None, message.error()
                seen[message.partition()].append((message.offset(), message.value(), message.leader_epoch()))
                remaining -= 1
    finally:
        consumer.close()
    assert remaining == 0, f"{remaining} records missing"
    return seen


def test_every_partition_gets_a_larger_epoch_at_each_restart(make_broker):
    broker = make_broker(nofile=256)
    create_topic(broker.address)
    write_one_each(broker.address, 0)
    stops = ["stop", "kill", "stop"]
    for run, how in enumerate(stops, start=1):
        getattr(broker, how)()
        address = broker.start()
        write_one_each(address, run)
        seen = read_all(address, run + 1)
        for partition, records in seen.items():
            assert [record[0] for record in records] == list(range(run + 1)), partition
            assert [record[1] for record in records] == [f"run {n}".encode() for n in range(run + 1)], partition
            # The epoch each record was appended under: the broker's run, so every restart raised every epoch.
            assert [record[2] for record in records] == list(range(run + 1)), partition
    # One more start with nothing appended: its epoch begins at the log end.
    broker.stop()
    broker.start()
    broker.stop()

    # After the clean stop: every epoch at its first offset, and the one elected at the last start at the log end.
    last = len(stops) + 2
    for partition in range(PARTITIONS):
        lines = (broker.log_dir / f"{TOPIC}-{partition}" / "leader-epoch-checkpoint").read_text().split("\n")
        entries = [line for line in lines[2:] if line]
        assert lines[0] == "0" and int(lines[1]) == len(entries), partition
        assert entries == [f"{epoch} {epoch}" for epoch in range(last)], (partition, entries)
