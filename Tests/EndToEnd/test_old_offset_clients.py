"""An old client's offset commits and a modern client's, read by each other: kafka-python 3.0.12 configured as a
Kafka 0.8.2 client (api_version=(0, 8, 2): OffsetCommit v1, OffsetFetch v1, ListOffsets v0, no ApiVersions) and
confluent-kafka 2.16.1 (librdkafka: OffsetCommit v7+, OffsetFetch v7+, ListOffsets v1+).

The old client is used only for the offset APIs, with manual assignment: as a 0.8.2 client it would fetch records
with Fetch v0, which this broker does not serve yet."""
import logging
import re
import time
import warnings

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.errors import CommitFailedError


def create_topic(address, name, partitions):
    admin = AdminClient({"bootstrap.servers": address})
    next(iter(admin.create_topics([NewTopic(name, partitions, 1)]).values())).result(10)


def sent_versions(records, request_name):
    """The versions of `request_name` kafka-python logged as sent."""
    pattern = re.compile(rf"Request \d+: {request_name}\(version=(\d+)")
    return {int(match.group(1)) for record in records for match in [pattern.search(record.getMessage())] if match}


def old_consumer(address, group):
    return KafkaConsumer(bootstrap_servers=address, group_id=group, api_version=(0, 8, 2),
                         enable_auto_commit=False, request_timeout_ms=10_000)


def modern_consumer(address, group):
    return Consumer({"bootstrap.servers": address, "group.id": group, "enable.auto.commit": False})


def test_old_client_commits_and_a_modern_client_reads_them_and_back(broker, caplog):
    create_topic(broker, "mixed", 2)
    caplog.set_level(logging.DEBUG, logger="kafka")
    old = old_consumer(broker, "mixed-ages")
    try:
        partitions = [TopicPartition("mixed", 0), TopicPartition("mixed", 1)]
        old.assign(partitions)
        old.commit({partitions[0]: OffsetAndMetadata(7, "from-0.8.2", -1),
                    partitions[1]: OffsetAndMetadata(3, "", -1)})
        assert sent_versions(caplog.records, "OffsetCommitRequest") == {1}, "a 0.8.2 client commits with v1"

        modern = modern_consumer(broker, "mixed-ages")
        try:
            committed = modern.committed([ConfluentPartition("mixed", 0), ConfluentPartition("mixed", 1)], timeout=10)
            assert [(p.partition, p.offset, p.error) for p in committed] == [(0, 7, None), (1, 3, None)]
            assert committed[0].metadata == "from-0.8.2"

            modern.commit(offsets=[ConfluentPartition("mixed", 0, 21), ConfluentPartition("mixed", 1, 13)],
                          asynchronous=False)
        finally:
            modern.close()

        assert old.committed(partitions[0]) == 21
        assert old.committed(partitions[1]) == 13
        assert sent_versions(caplog.records, "OffsetFetchRequest") == {1}, "and fetches with v1"
    finally:
        old.close()


def test_old_client_commit_is_refused_while_a_modern_group_has_members(make_broker, caplog):
    """A commit without a generation (what a 0.8.2 client sends with manual assignment) must not overwrite the
    offsets of a group whose members are consuming: UNKNOWN_MEMBER_ID, as Kafka answers."""
    broker = make_broker("group.initial.rebalance.delay.ms=0\n")
    create_topic(broker.address, "busy", 1)
    member = Consumer({"bootstrap.servers": broker.address, "group.id": "busy-group", "enable.auto.commit": False,
                       "auto.offset.reset": "earliest"})
    try:
        member.subscribe(["busy"])
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment(), "the member joined"
        member.commit(offsets=[ConfluentPartition("busy", 0, 4)], asynchronous=False)

        old = old_consumer(broker.address, "busy-group")
        try:
            old.assign([TopicPartition("busy", 0)])
            with pytest.raises(CommitFailedError, match="UnknownMemberIdError"):
                old.commit({TopicPartition("busy", 0): OffsetAndMetadata(99, "", -1)})
            assert old.committed(TopicPartition("busy", 0)) == 4
        finally:
            old.close()
        committed = member.committed([ConfluentPartition("busy", 0)], timeout=10)
        assert committed[0].offset == 4
    finally:
        member.close()


def test_old_client_reads_the_same_log_bounds_with_list_offsets_v0(broker, caplog):
    create_topic(broker, "bounds", 1)
    producer = Producer({"bootstrap.servers": broker})
    for index in range(7):
        producer.produce("bounds", value=b"%d" % index, partition=0)
    assert producer.flush(10) == 0
    admin = AdminClient({"bootstrap.servers": broker})
    deleted = admin.delete_records([ConfluentPartition("bounds", 0, 3)])
    next(iter(deleted.values())).result(10)

    caplog.set_level(logging.DEBUG, logger="kafka")
    old = old_consumer(broker, "bounds-reader")
    try:
        tp = TopicPartition("bounds", 0)
        old_bounds = (old.beginning_offsets([tp])[tp], old.end_offsets([tp])[tp])
        assert sent_versions(caplog.records, "ListOffsetsRequest") == {0}
    finally:
        old.close()
    modern = modern_consumer(broker, "bounds-reader")
    try:
        assert modern.get_watermark_offsets(ConfluentPartition("bounds", 0), timeout=10) == old_bounds == (3, 7)
    finally:
        modern.close()
