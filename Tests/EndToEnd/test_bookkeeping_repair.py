"""Damaged bookkeeping files and an unopenable __consumer_offsets partition, with a real broker process.

Each repair test writes garbage into one file while the broker is stopped, restarts it, and checks what an operator
would: the broker starts, the warning naming the file is in its log, and every record produced before reads back.
The offsets-partition test puts a regular file where __consumer_offsets-7's directory would go and checks that only
the groups of that partition lose their coordinator, and only until the file is removed."""
import io
import os
import socket
import struct
import time
import uuid
import warnings

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.protocol.consumer import FetchRequest, FetchResponse
    from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse

OFFSETS_PARTITIONS = 50
COORDINATOR_NOT_AVAILABLE = 15
KAFKA_STORAGE_ERROR = 56
GARBAGE = b"\x00garbage\xff\nnot a checkpoint\n"


def java_hash(text):
    """Java's String.hashCode, as Kafka maps a group to its __consumer_offsets partition."""
    value = 0
    encoded = text.encode("utf-16-be")
    for index in range(0, len(encoded), 2):
        value = (value * 31 + int.from_bytes(encoded[index:index + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def offsets_partition(group):
    value = java_hash(group)
    return (0 if value == -(1 << 31) else abs(value)) % OFFSETS_PARTITIONS


def group_on(partition, avoid=False):
    """A group id that maps to `partition` (or, with avoid, to any other)."""
    for number in range(100_000):
        group = f"group-{number}"
        if (offsets_partition(group) == partition) != avoid:
            return group
    raise AssertionError("no group id found")


def round_trip(broker, request, response_class, version):
    host, port = broker.rsplit(":", 1)
    request.with_header(correlation_id=7, client_id="bookkeeping-tests")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request.encode(header=True, framed=True))
        (size,) = struct.unpack(">i", receive(sock, 4))
        payload = receive(sock, size)
    stream = io.BytesIO(payload)
    response_class.parse_header(stream, version=version)
    return response_class.decode(stream.read(), version=version)


def receive(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def find_coordinator(broker, group):
    """FindCoordinator v0 for `group`: (error code, seconds the answer took)."""
    started = time.monotonic()
    response = round_trip(broker, FindCoordinatorRequest(version=0, key=group), FindCoordinatorResponse, 0)
    return response.error_code, time.monotonic() - started


def find_coordinators(broker, groups):
    """FindCoordinator v4 for several groups at once: {group: error code}."""
    request = FindCoordinatorRequest(version=4, key_type=0, coordinator_keys=groups)
    response = round_trip(broker, request, FindCoordinatorResponse, 4)
    return {coordinator.key: coordinator.error_code for coordinator in response.coordinators}


def fetch_error(broker, topic, partition):
    """The error code a Fetch v4 from offset 0 gets for one partition."""
    request = FetchRequest(
        version=4, replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
        topics=[FetchRequest.FetchTopic(version=4, topic=topic, partitions=[
            FetchRequest.FetchTopic.FetchPartition(
                version=4, partition=partition, fetch_offset=0, partition_max_bytes=1 << 20)
        ])],
    )
    response = round_trip(broker, request, FetchResponse, 4)
    return response.responses[0].partitions[0].error_code


def produce(address, topic, partitions, per_partition, batch_bytes=1_000_000):
    """Creates `topic` with `partitions` partitions and writes `per_partition` values to each; the values sent."""
    admin = AdminClient({"bootstrap.servers": address})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": address, "linger.ms": 5, "batch.size": batch_bytes})
    sent, failed = set(), []

    def delivered(error, message):
        if error is not None:
            failed.append(error)

    for partition in range(partitions):
        for number in range(per_partition):
            value = f"{topic}-{partition}-{number}"
            producer.produce(topic, value.encode(), partition=partition, on_delivery=delivered)
            sent.add(value)
    assert producer.flush(30) == 0
    assert not failed, failed[:3]
    return sent


def consume(address, topic, partitions, expected_count):
    """Every value in the given partitions from offset 0 (manual assignment, no group)."""
    consumer = Consumer({"bootstrap.servers": address, "group.id": f"reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, partition, 0) for partition in partitions])
    values = set()
    deadline = time.monotonic() + 60
    while len(values) < expected_count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.add(message.value().decode())
    consumer.close()
    return values


def join_commit_fetch(address, group, topic):
    """A real group member: subscribes, reads a record, commits its offset and reads the commit back."""
    consumer = Consumer({"bootstrap.servers": address, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        message = None
        while message is None and time.monotonic() < deadline:
            polled = consumer.poll(0.5)
            if polled is not None and polled.error() is None:
                message = polled
        assert message is not None, f"{group} read nothing"
        consumer.commit(message=message, asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, message.partition())], timeout=30)
        assert committed[0].offset == message.offset() + 1
    finally:
        consumer.close()


def server_log(broker):
    return (broker.directory / f"server-{broker.runs}.log").read_text()


def test_an_unopenable_offsets_partition_affects_only_its_groups(make_broker):
    broker = make_broker("group.initial.rebalance.delay.ms=0\n")
    produce(broker.address, "events", 1, 3)
    # A regular file where __consumer_offsets-7's directory would go, before the first lookup creates the topic.
    squatter = broker.log_dir / "__consumer_offsets-7"
    squatter.write_text("in the way\n")
    blocked, working = group_on(7), group_on(7, avoid=True)

    error, _ = find_coordinator(broker.address, working)  # creates the topic
    assert error == 0
    error, seconds = find_coordinator(broker.address, working)
    assert error == 0 and seconds < 1, (error, seconds)
    error, seconds = find_coordinator(broker.address, blocked)
    assert error == COORDINATOR_NOT_AVAILABLE and seconds < 1, (error, seconds)
    assert find_coordinators(broker.address, [working, blocked]) == {working: 0, blocked: COORDINATOR_NOT_AVAILABLE}
    join_commit_fetch(broker.address, working, "events")

    squatter.unlink()
    deadline = time.monotonic() + 30
    while find_coordinator(broker.address, blocked)[0] != 0:
        assert time.monotonic() < deadline, "the partition was not opened again"
        time.sleep(0.1)
    assert (broker.log_dir / "__consumer_offsets-7").is_dir()
    join_commit_fetch(broker.address, blocked, "events")


def restart_with_garbage(broker, relative_path, crash=False):
    """Stops the broker (SIGTERM, or SIGKILL as a crash), writes garbage into one file, starts it again; its log."""
    if crash:
        broker.kill()
    else:
        broker.stop()
    (broker.log_dir / relative_path).write_bytes(GARBAGE)
    broker.start()
    return server_log(broker)


def test_a_malformed_recovery_point_checkpoint_after_a_crash_makes_the_logs_recover_from_their_start(make_broker):
    broker = make_broker()
    sent = produce(broker.address, "orders", 3, 200)
    broker.stop()  # the clean stop checkpoints recovery points at the log ends
    broker.start()
    log = restart_with_garbage(broker, "recovery-point-offset-checkpoint", crash=True)
    assert "Malformed recovery-point-offset-checkpoint; every log of this directory recovers from its start" in log
    assert str(broker.log_dir / "recovery-point-offset-checkpoint") in log
    scans = [line for line in log.splitlines() if "Recovered the unflushed tail" in line and "partition=orders-" in line]
    assert len(scans) == 3 and all("recoveryPoint=0 " in line for line in scans), scans
    assert consume(broker.address, "orders", range(3), len(sent)) == sent
    assert (broker.log_dir / "recovery-point-offset-checkpoint").read_text().startswith("0\n")


def test_a_malformed_recovery_point_checkpoint_after_a_clean_stop_takes_the_log_ends(make_broker):
    broker = make_broker()
    sent = produce(broker.address, "orders", 3, 200)
    log = restart_with_garbage(broker, "recovery-point-offset-checkpoint")
    assert "Malformed recovery-point-offset-checkpoint; the clean-shutdown marker says every log was flushed" in log
    assert str(broker.log_dir / "recovery-point-offset-checkpoint") in log
    assert consume(broker.address, "orders", range(3), len(sent)) == sent
    assert "orders 1 200\n" in (broker.log_dir / "recovery-point-offset-checkpoint").read_text()


def test_a_malformed_log_start_offset_checkpoint_is_rebuilt_from_the_logs(make_broker):
    broker = make_broker()
    sent = produce(broker.address, "orders", 3, 200)
    log = restart_with_garbage(broker, "log-start-offset-checkpoint")
    assert "Malformed log-start-offset-checkpoint; each log starts at its first segment's base offset" in log
    assert str(broker.log_dir / "log-start-offset-checkpoint") in log
    assert consume(broker.address, "orders", range(3), len(sent)) == sent
    rebuilt = (broker.log_dir / "log-start-offset-checkpoint").read_text()
    assert rebuilt.startswith("0\n") and "orders 0 0\n" in rebuilt


def test_a_malformed_replication_offset_checkpoint_takes_high_watermarks_from_the_log_ends(make_broker):
    broker = make_broker()
    sent = produce(broker.address, "orders", 3, 200)
    log = restart_with_garbage(broker, "replication-offset-checkpoint")
    assert "Malformed replication-offset-checkpoint; each high watermark is taken from its log end offset" in log
    assert consume(broker.address, "orders", range(3), len(sent)) == sent
    assert "orders 1 200\n" in (broker.log_dir / "replication-offset-checkpoint").read_text()


def test_a_malformed_leader_epoch_checkpoint_is_rebuilt_from_the_batches(make_broker):
    broker = make_broker()
    sent = produce(broker.address, "orders", 3, 200)
    epochs_before = (broker.log_dir / "orders-1" / "leader-epoch-checkpoint").read_text()
    log = restart_with_garbage(broker, "orders-1/leader-epoch-checkpoint")
    assert "Malformed leader-epoch-checkpoint; rebuilding it from the batches' leader epochs" in log
    assert str(broker.log_dir / "orders-1" / "leader-epoch-checkpoint") in log
    assert consume(broker.address, "orders", range(3), len(sent)) == sent
    rebuilt = (broker.log_dir / "orders-1" / "leader-epoch-checkpoint").read_text().splitlines()
    # The epochs the batches were written under come back, then the restart's new epoch at the log end.
    before = epochs_before.splitlines()[2:]
    assert rebuilt[2:2 + len(before)] == before, (epochs_before, rebuilt)
    assert rebuilt[-1].endswith(" 200")


def test_a_malformed_partition_metadata_takes_only_that_partition_offline(make_broker):
    broker = make_broker()
    sent = produce(broker.address, "orders", 3, 200)
    log = restart_with_garbage(broker, "orders-1/partition.metadata")
    assert "Unreadable partition.metadata; partition offline until the file is repaired" in log
    assert str(broker.log_dir / "orders-1" / "partition.metadata") in log
    assert fetch_error(broker.address, "orders", 1) == KAFKA_STORAGE_ERROR
    others = {value for value in sent if not value.startswith("orders-1-")}
    assert consume(broker.address, "orders", [0, 2], len(others)) == others
    # Nothing was deleted or rewritten: the segment is still there and the garbage is left for the operator.
    assert (broker.log_dir / "orders-1" / "partition.metadata").read_bytes() == GARBAGE
    assert os.path.getsize(broker.log_dir / "orders-1" / "00000000000000000000.log") > 0


def test_the_recovery_point_checkpoint_follows_its_interval(make_broker):
    broker = make_broker("log.flush.offset.checkpoint.interval.ms=500\nlog.segment.bytes=16384\n")
    # Several segments of 16 KiB from batches of at most 4 KiB: every roll flushes the segment before it.
    produce(broker.address, "rolling", 1, 3000, batch_bytes=4096)
    path = broker.log_dir / "recovery-point-offset-checkpoint"

    def recovery_point():
        if not path.exists():
            return 0
        for line in path.read_text().splitlines()[2:]:
            topic, partition, offset = line.split()
            if (topic, partition) == ("rolling", "0"):
                return int(offset)
        return 0

    deadline = time.monotonic() + 10  # with the default interval (60 s) nothing would be written this soon
    while recovery_point() == 0:
        assert time.monotonic() < deadline, "the recovery point was not checkpointed within the interval"
        time.sleep(0.1)
    assert recovery_point() > 0
