"""confluent-kafka 2.16.1 and kafka-python 3.0.12 validate their position with OffsetForLeaderEpoch after a leader
change (KIP-320).

The broker restarts on the same port between two halves of a consumption; every restart re-elects the partition
with a larger leader epoch, which the consumer learns from Metadata. Each client then asks OffsetForLeaderEpoch for
the epoch of the last record it consumed, checks the answer against its position, and goes on reading: every record
arrives once, in order, with no offset reset. The client's own protocol debug log shows the request was made."""
import logging
import re
import signal
import socket
import subprocess
import time

import confluent_kafka
import pytest

from conftest import server_binary

TOPIC = "epoch-validation"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """A logbroker-server on a fixed port, so it can be restarted under a connected client."""

    def __init__(self, tmp_path, port):
        self.config = tmp_path / "server.properties"
        self.config.write_text(
            "node.id=1\nprocess.roles=broker,controller\n"
            f"listeners=PLAINTEXT://127.0.0.1:{port}\nlog.dirs={tmp_path}/logs\n"
        )
        self.log_path = tmp_path / "server.log"
        self.process = None

    def start(self):
        log = open(self.log_path, "a+")
        self.process = subprocess.Popen([server_binary(), str(self.config)], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 20
        while time.time() < deadline:
            log.seek(0)
            if log.read().count("LogBroker started") > self.starts:
                self.starts += 1
                return
            time.sleep(0.05)
        pytest.fail("logbroker-server did not start:\n" + self.log_path.read_text())

    starts = 0

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=20) == 0


class CapturingHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def produce(bootstrap, first, count):
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False})
    for index in range(first, first + count):
        producer.produce(TOPIC, value=f"record-{index}".encode())
    assert producer.flush(30) == 0


def consume(consumer, count, timeout=60):
    received = []
    deadline = time.time() + timeout
    while len(received) < count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        received.append((message.offset(), message.value().decode(), message.leader_epoch()))
    return received


def test_consumer_validates_its_position_after_a_leader_change(tmp_path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = Broker(tmp_path, port)
    broker.start()
    try:
        produce(bootstrap, 0, 100)
        logger = logging.getLogger("rdkafka-epoch-test")
        handler = CapturingHandler()
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        consumer = confluent_kafka.Consumer({
            "bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
            "auto.offset.reset": "error", "debug": "protocol,fetch,consumer", "logger": logger,
            "topic.metadata.refresh.interval.ms": 1000,
        })
        try:
            consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
            first = consume(consumer, 100)
            assert [offset for offset, _, _ in first] == list(range(100))
            epoch_before = first[-1][2]
            assert epoch_before is not None and epoch_before >= 0

            broker.stop()
            broker.start()
            produce(bootstrap, 100, 100)
            second = consume(consumer, 100)
            assert [offset for offset, _, _ in second] == list(range(100, 200))
            assert [value for _, value, _ in second] == [f"record-{i}" for i in range(100, 200)]
            assert second[-1][2] > epoch_before, "the restart should have raised the leader epoch"

            requests = [line for line in handler.lines if re.search(r"OffsetForLeaderEpoch", line)]
            print("\n".join(line for line in handler.lines if re.search(r"OffsetForLeaderEpoch|[Vv]alidat", line)))
            assert any("Sent OffsetForLeaderEpochRequest" in line for line in requests), "\n".join(requests[-20:])
            assert any("Received OffsetForLeaderEpochResponse" in line for line in requests), "\n".join(requests[-20:])
            assert not [line for line in handler.lines if "offset reset" in line.lower() and "error" in line.lower()]
        finally:
            consumer.close()
    finally:
        broker.stop()


def test_kafka_python_validates_its_position_after_a_leader_change(tmp_path):
    import kafka
    from kafka.structs import TopicPartition

    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = Broker(tmp_path, port)
    broker.start()
    handler = CapturingHandler()
    fetcher_log = logging.getLogger("kafka.consumer.fetcher")
    fetcher_log.addHandler(handler)
    fetcher_log.setLevel(logging.DEBUG)
    try:
        produce(bootstrap, 0, 100)
        consumer = kafka.KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, metadata_max_age_ms=1000,
            reconnect_backoff_ms=100, request_timeout_ms=10_000,
        )
        try:
            partition = TopicPartition(TOPIC, 0)
            consumer.assign([partition])
            consumer.seek(partition, 0)

            def take(count):
                received = []
                deadline = time.time() + 60
                while len(received) < count and time.time() < deadline:
                    for records in consumer.poll(timeout_ms=500).values():
                        received += [(record.offset, record.value.decode(), record.leader_epoch) for record in records]
                return received

            first = take(100)
            assert [offset for offset, _, _ in first] == list(range(100))
            broker.stop()
            broker.start()
            produce(bootstrap, 100, 100)
            second = take(100)
            assert [offset for offset, _, _ in second] == list(range(100, 200))
            assert second[-1][2] > first[-1][2], "the restart should have raised the leader epoch"
            sent = [line for line in handler.lines if "Sending OffsetForLeaderEpochRequest" in line]
            print("\n".join(line for line in handler.lines if "alidat" in line or "LeaderEpoch" in line))
            assert sent, "\n".join(handler.lines[-30:])
            assert not [line for line in handler.lines if "Truncation detected" in line]
        finally:
            consumer.close()
    finally:
        fetcher_log.removeHandler(handler)
        broker.stop()
