"""Transient disk faults against a real logbroker-server: a segment roll without a file descriptor (a low
RLIMIT_NOFILE), and a 64 MiB tmpfs filled by acks=all produce. Each fails operations with a retriable error and
never takes the partition offline: DeleteRecords drains the full disk and produce resumes without a restart, and a
broker killed on the full disk starts again on it and serves its data."""
import os
import resource
import subprocess
import time
from contextlib import contextmanager

import pytest
from confluent_kafka import ElectionType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, OffsetSpec,
                                   ResourceType)
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaStorageError

from conftest import Broker

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

VALUE_SIZE = 200_000


@contextmanager
def tmpfs(path, size="64m"):
    """A tmpfs of `size` mounted on `path` for the block, unmounted afterwards whatever happens."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def create_topic(address, name, config):
    admin = AdminClient({"bootstrap.servers": address})
    future = admin.create_topics([NewTopic(name, 1, 1, config=config)])[name]
    future.result(timeout=30)


def value(number, size=VALUE_SIZE):
    """A value that names its record and does not compress."""
    head = f"record-{number:06d}-".encode()
    return head + os.urandom(size - len(head))


def fill_to_the_last_byte(path):
    """Writes `path` until the file system has no byte left (what a failed produce left is less than a batch)."""
    with open(path, "wb", buffering=0) as filler:
        for chunk in (64 * 1024, 4096, 1):
            block = b"\x55" * chunk
            try:
                while True:
                    filler.write(block)
            except OSError:
                pass


def producer(address):
    # retries=0: each failed send is seen, not retried behind the test's back.
    return KafkaProducer(bootstrap_servers=address, acks="all", retries=0, linger_ms=0,
                         max_request_size=4 * VALUE_SIZE, request_timeout_ms=30_000)


def fill(address, topic):
    """Produces with acks=all until the broker answers KAFKA_STORAGE_ERROR (the disk is full); returns how many
    records were stored."""
    sender = producer(address)
    stored = 0
    try:
        while True:
            assert stored < 64 * 1024 * 1024 // VALUE_SIZE, "the 64 MiB file system never filled"
            try:
                metadata = sender.send(topic, value(stored)).get(timeout=30)
            except KafkaStorageError:
                return stored
            assert metadata.offset == stored
            stored += 1
    finally:
        sender.close(timeout=5)


def produce_until_accepted(address, topic, number, deadline_s=60):
    """Sends record `number` until the broker stores it (each refusal must be KAFKA_STORAGE_ERROR); returns its
    offset."""
    sender = producer(address)
    deadline = time.monotonic() + deadline_s
    try:
        while True:
            try:
                return sender.send(topic, value(number)).get(timeout=30).offset
            except KafkaStorageError:
                assert time.monotonic() < deadline, "produce did not resume"
                time.sleep(0.2)
    finally:
        sender.close(timeout=5)


def consume(address, topic, start, count):
    """`count` records from offset `start`, as (offset, value prefix)."""
    consumer = KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False, consumer_timeout_ms=20_000,
                             fetch_max_bytes=8 * VALUE_SIZE, max_partition_fetch_bytes=4 * VALUE_SIZE)
    partition = KafkaTopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, start)
    records = []
    try:
        for record in consumer:
            records.append((record.offset, record.value[:13].decode()))
            if len(records) == count:
                break
    finally:
        consumer.close()
    return records


FULL_DISK_PROPERTIES = "log.retention.check.interval.ms=200\nlog.segment.delete.delay.ms=0\n"


@needs_root
def test_delete_records_on_a_full_disk_frees_space_and_produce_resumes(tmp_path):
    """acks=all produce fills a 64 MiB tmpfs until KAFKA_STORAGE_ERROR (and a file takes the last bytes);
    DeleteRecords then succeeds on the full disk
    (its leader-epoch-checkpoint cannot be written, and waits), retention deletes the segments below the new log
    start, and produce resumes on the same broker; the records kept are intact."""
    broker = Broker(tmp_path / "broker", FULL_DISK_PROPERTIES)
    with tmpfs(broker.log_dir):
        address = broker.start()
        try:
            create_topic(address, "full", {"segment.bytes": str(2 * 1024 * 1024)})
            stored = fill(address, "full")
            assert stored > 200
            # What the failed batch left is less than a batch but may hold a small file: fill it too.
            fill_to_the_last_byte(broker.log_dir / "filler")
            admin = AdminClient({"bootstrap.servers": address})
            cut = stored // 2
            deleted = admin.delete_records([TopicPartition("full", 0, cut)])
            low = next(iter(deleted.values())).result(timeout=30)
            assert low.low_watermark == cut

            assert produce_until_accepted(address, "full", stored) == stored
            records = consume(address, "full", cut, stored - cut + 1)
            assert records == [(offset, f"record-{offset:06d}") for offset in range(cut, stored + 1)]
        finally:
            broker.stop()


@needs_root
def test_retention_on_a_full_disk_frees_segments(tmp_path):
    """acks=all produce fills a 64 MiB tmpfs to its last byte; a retention.bytes set then (the metadata store commits
    it into its reserved space) deletes the oldest segments on the full disk, and produce resumes on the same
    broker with the newest records intact."""
    broker = Broker(tmp_path / "broker", FULL_DISK_PROPERTIES)
    with tmpfs(broker.log_dir):
        address = broker.start()
        try:
            create_topic(address, "full", {"segment.bytes": str(2 * 1024 * 1024)})
            stored = fill(address, "full")
            assert stored > 200
            fill_to_the_last_byte(broker.log_dir / "filler")
            admin = AdminClient({"bootstrap.servers": address})
            resource = ConfigResource(ResourceType.TOPIC, "full", incremental_configs=[
                ConfigEntry("retention.bytes", str(16 * 1024 * 1024), incremental_operation=AlterConfigOpType.SET),
            ])
            next(iter(admin.incremental_alter_configs([resource]).values())).result(timeout=30)

            assert produce_until_accepted(address, "full", stored) == stored
            records = consume(address, "full", stored - 20, 21)
            assert records == [(offset, f"record-{offset:06d}") for offset in range(stored - 20, stored + 1)]
        finally:
            broker.stop()


@needs_root
def test_a_broker_killed_on_a_full_disk_starts_on_it_and_serves(tmp_path):
    """A broker whose tmpfs was filled by acks=all produce is killed (SIGKILL: its active segment's indexes keep
    their preallocated, mostly unallocated length), the file system is filled to its last byte, and the broker is
    started again on it: it starts
    (loading an index never touches a page the file system cannot allocate, which on tmpfs raised SIGBUS) and serves
    every acknowledged record."""
    broker = Broker(tmp_path / "broker", FULL_DISK_PROPERTIES)
    with tmpfs(broker.log_dir):
        address = broker.start()
        try:
            create_topic(address, "full", {"segment.bytes": str(2 * 1024 * 1024)})
            stored = fill(address, "full")
            assert stored > 200
            broker.kill()
            fill_to_the_last_byte(broker.log_dir / "filler")
            address = broker.start()
            records = consume(address, "full", 0, stored)
            assert records == [(offset, f"record-{offset:06d}") for offset in range(stored)]
        finally:
            if broker.process is not None:
                broker.stop()


def open_file_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def take_every_descriptor(broker):
    """Lowers the running broker's RLIMIT_NOFILE to the descriptors it holds now, so its next open fails with EMFILE
    (idle connections cannot do this any more: max.connections keeps the logs' share of descriptors free)."""
    held = open_file_count(broker.process.pid)
    # Only the soft limit: raising a hard limit again needs a capability the test may not have.
    _, hard = resource.prlimit(broker.process.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(broker.process.pid, resource.RLIMIT_NOFILE, (held, hard))


def give_descriptors_back(broker, limit):
    resource.prlimit(broker.process.pid, resource.RLIMIT_NOFILE, (limit, limit))


def test_a_roll_without_file_descriptors_fails_one_produce_and_the_partition_stays_online(tmp_path):
    """A broker whose descriptor limit (RLIMIT_NOFILE, lowered on the running process) leaves none free: a produce
    that must roll a segment fails with KAFKA_STORAGE_ERROR (no descriptor for the new segment's files). Once the
    limit is back, the same partition takes produce again, without a restart, and every record is readable. A SIGTERM
    while no descriptor is free again still stops cleanly: exit status 0 and the clean-shutdown marker written."""
    limit = 256
    broker = Broker(tmp_path / "broker", nofile=limit)
    address = broker.start()
    try:
        create_topic(address, "rolls", {"segment.bytes": str(3 * VALUE_SIZE)})
        sender = producer(address)
        assert sender.send("rolls", value(0)).get(timeout=30).offset == 0
        take_every_descriptor(broker)

        failures = 0
        number = 1
        while failures == 0 and number < 6:
            try:
                sender.send("rolls", value(number)).get(timeout=30)
                number += 1
            except KafkaStorageError:
                failures += 1
        assert failures == 1, "no produce failed although a roll had no descriptor"

        give_descriptors_back(broker, limit)
        for extra in range(number, number + 4):
            assert sender.send("rolls", value(extra)).get(timeout=30).offset == extra
        sender.close(timeout=5)
        records = consume(address, "rolls", 0, number + 4)
        assert records == [(offset, f"record-{offset:06d}") for offset in range(number + 4)]

        take_every_descriptor(broker)
        broker.stop()
        assert (broker.log_dir / ".kafka_cleanshutdown").exists()
    finally:
        if broker.process is not None:
            broker.stop()


def test_an_offline_partition_comes_back_with_an_election(tmp_path):
    """A batch header zeroed in a closed segment below the recovery point: the first fetch that walks over it takes
    the partition offline (produce answers KAFKA_STORAGE_ERROR). Once the bytes are put back, a preferred election
    on the partition (ElectLeaders) reopens its log: the answer is NONE, and produce and fetch work again without a
    restart."""
    broker = Broker(tmp_path / "broker")
    address = broker.start()
    create_topic(address, "damaged", {"segment.bytes": "8192"})
    sender = producer(address)
    for number in range(20):
        assert sender.send("damaged", value(number, 1000)).get(timeout=30).offset == number
    sender.close(timeout=5)
    broker.stop()

    segment = broker.log_dir / "damaged-0" / "00000000000000000000.log"
    original = segment.read_bytes()
    first_batch = 12 + int.from_bytes(original[8:12], "big")
    with open(segment, "r+b") as damaged:
        damaged.seek(first_batch)
        damaged.write(bytes(61))

    address = broker.start()
    try:
        consumer = KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False)
        partition = KafkaTopicPartition("damaged", 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        admin = AdminClient({"bootstrap.servers": address})
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the damaged partition never went offline"
            try:
                consumer.poll(timeout_ms=200)
            except Exception:  # noqa: BLE001 - the consumer may report the corrupt batch; ListOffsets decides
                pass
            latest = admin.list_offsets({TopicPartition("damaged", 0): OffsetSpec.latest()})
            try:
                next(iter(latest.values())).result(timeout=30)
            except KafkaException as error:
                assert error.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR
                break
        consumer.close()
        sender = producer(address)
        with pytest.raises(KafkaStorageError):
            sender.send("damaged", value(20, 1000)).get(timeout=30)

        with open(segment, "r+b") as repaired:
            repaired.seek(first_batch)
            repaired.write(original[first_batch:first_batch + 61])
        elected = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("damaged", 0)]).result(timeout=30)
        assert list(elected.values()) == [None]

        assert sender.send("damaged", value(20, 1000)).get(timeout=30).offset == 20
        sender.close(timeout=5)
        records = consume(address, "damaged", 0, 21)
        assert records == [(offset, f"record-{offset:06d}") for offset in range(21)]
    finally:
        broker.stop()
