"""Produce v0-2 (magic 0/1 message sets) from real clients configured as old ones, against logbroker-server, read
back by modern v2 consumers; and the refusals Kafka 3.9 gives malformed sets, on a raw socket.

kafka-python 3.0.12 with api_version=(0, 9) sends Produce v1 with magic 0 messages and api_version=(0, 10, 1)
Produce v2 with magic 1 (KafkaProducer.max_usable_produce_magic); librdkafka (kcat, confluent-kafka) with
api.version.request=false and broker.version.fallback=0.9.0 sends Produce v1 with magic 0, which its debug log
confirms."""
import logging
import re
import socket
import struct
import subprocess
import time
import warnings

import confluent_kafka
import confluent_kafka.admin
import kafka
import pytest

from conftest import read_frame

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.protocol.producer import ProduceRequest, ProduceResponse
    from kafka.record.legacy_records import LegacyRecordBatchBuilder

COUNT = 300
BASE_TIMESTAMP = int(time.time() * 1000) - 60_000  # within log.message.timestamp.before.max.ms (unbounded)


def expected_records(label):
    """Keys with a null every tenth record; values long enough for the codecs to bite."""
    return [(None if i % 10 == 9 else f"key-{i}".encode(), f"{label}-value-{i} ".encode() * 3) for i in range(COUNT)]


def consume_all(broker, topic, count, timeout=60):
    """(offset, key, value, timestamp type, timestamp) of `count` records from the start of partition 0, read by a
    confluent-kafka consumer (librdkafka 2.16, Fetch v12, magic 2)."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
    received = []
    deadline = time.time() + timeout
    while len(received) < count and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            kind, timestamp = message.timestamp()
            received.append((message.offset(), message.key(), message.value(), kind, timestamp))
    low, high = consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, 0), timeout=10)
    consumer.close()
    assert (low, high) == (0, count)
    return received


@pytest.mark.parametrize("api_version,magic", [((0, 9), 0), ((0, 10, 1), 1)])
@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4"])
def test_kafka_python_as_an_old_client(broker, api_version, magic, codec):
    topic = f"kp-legacy-v{magic}-{codec or 'none'}"
    producer = kafka.KafkaProducer(
        bootstrap_servers=broker, api_version=api_version, enable_idempotence=False, acks="all",
        compression_type=codec, linger_ms=5,
    )
    assert producer.max_usable_produce_magic(producer.config["api_version"]) == magic
    records = expected_records(topic)
    futures = [producer.send(topic, key=key, value=value, timestamp_ms=BASE_TIMESTAMP + i)
               for i, (key, value) in enumerate(records)]
    producer.flush(30)
    metadata = [future.get(timeout=30) for future in futures]
    producer.close()
    assert [m.offset for m in metadata] == list(range(COUNT))

    received = consume_all(broker, topic, COUNT)
    assert [offset for offset, *_ in received] == list(range(COUNT))
    assert [(key, value) for _, key, value, _, _ in received] == records
    if magic == 0:
        # Magic 0 has no timestamps: the v2 batch (CreateTime, as Kafka converts it) carries -1.
        assert {(kind, timestamp) for *_, kind, timestamp in received} == {(confluent_kafka.TIMESTAMP_CREATE_TIME, -1)}
    else:
        assert [(kind, timestamp) for *_, kind, timestamp in received] == [
            (confluent_kafka.TIMESTAMP_CREATE_TIME, BASE_TIMESTAMP + i) for i in range(COUNT)]


# librdkafka as a Kafka 0.9 client. (With broker.version.fallback=0.10.0 or later it sends ApiVersions even with
# api.version.request=false, as that version supports it, and then picks magic 2 from the broker's answer: librdkafka
# never sends magic 1 here, since MsgVer1 also needs Fetch v2, which LogBroker does not serve.)
FALLBACK_0_9 = {"api.version.request": "false", "broker.version.fallback": "0.9.0"}


def message_sets_sent(debug_lines):
    """(Produce version, MsgVersion, codec) of each message set librdkafka's `debug=msg` log says it sent."""
    found = re.findall(r"Produce MessageSet with \d+ message\(s\) \(\d+ bytes, ApiVersion (\d+), MsgVersion (\d+), "
                       r".*?, (\w+)\)", debug_lines)
    return {(int(api), int(magic), codec) for api, magic, codec in found}


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy"])
def test_kcat_as_a_kafka_0_9_client(broker, codec):
    """kcat (librdkafka 2.0.2) sends Produce v1 with magic 0 sets; it compresses with gzip and snappy there (lz4
    needs a newer broker in librdkafka's table)."""
    topic = f"kcat-legacy-v0-{codec}"
    records = [(f"key-{i}".encode(), f"{topic}-value-{i} ".encode() * 3) for i in range(COUNT)]
    options = [word for key, value in FALLBACK_0_9.items() for word in ("-X", f"{key}={value}")]
    result = subprocess.run(
        ["kcat", "-P", "-b", broker, "-t", topic, "-p", "0", "-K", ":", "-z", codec, "-d", "msg", *options],
        input=b"".join(key + b":" + value + b"\n" for key, value in records), check=True, timeout=60,
        capture_output=True,
    )
    assert message_sets_sent(result.stderr.decode()) == {(1, 0, "uncompressed" if codec == "none" else codec)}

    received = consume_all(broker, topic, COUNT)
    assert [offset for offset, *_ in received] == list(range(COUNT))
    assert [(key, value) for _, key, value, _, _ in received] == records
    assert {(kind, timestamp) for *_, kind, timestamp in received} == {(confluent_kafka.TIMESTAMP_CREATE_TIME, -1)}


@pytest.mark.parametrize("codec", ["gzip", "snappy"])
def test_confluent_kafka_as_a_kafka_0_9_client(broker, codec):
    """confluent-kafka 2.16.1 (librdkafka 2.16) as a Kafka 0.9 client: Produce v1, magic 0."""
    topic = f"ck-legacy-v0-{codec}"
    logs = []

    class Collect(logging.Handler):
        def emit(self, record):
            logs.append(record.getMessage())

    logger = logging.getLogger(f"librdkafka-{topic}")
    logger.addHandler(Collect())
    logger.setLevel(logging.DEBUG)
    producer = confluent_kafka.Producer({
        "bootstrap.servers": broker, **FALLBACK_0_9, "compression.type": codec, "enable.idempotence": False,
        "acks": "all", "debug": "msg",
    }, logger=logger)
    records = expected_records(topic)
    delivered = []
    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=0,
                         on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    assert producer.flush(30) == 0
    assert [err for err, _ in delivered if err is not None] == []
    assert sorted(offset for _, offset in delivered) == list(range(COUNT))
    producer.poll(0)  # delivers the remaining log lines
    assert message_sets_sent("\n".join(logs)) == {(1, 0, codec)}

    received = consume_all(broker, topic, COUNT)
    assert [(key, value) for _, key, value, _, _ in received] == records
    assert {(kind, timestamp) for *_, kind, timestamp in received} == {(confluent_kafka.TIMESTAMP_CREATE_TIME, -1)}


def test_log_append_time_topic_stamps_converted_sets(make_broker):
    server = make_broker("log.message.timestamp.type=LogAppendTime\n")
    topic = "legacy-log-append-time"
    before = int(time.time() * 1000)
    producer = kafka.KafkaProducer(bootstrap_servers=server.address, api_version=(0, 10, 1),
                                   enable_idempotence=False, compression_type="gzip")
    for i in range(10):
        producer.send(topic, value=f"v{i}".encode(), timestamp_ms=1_000_000 + i)
    producer.flush(30)
    producer.close()
    after = int(time.time() * 1000)
    received = consume_all(server.address, topic, 10)
    assert {kind for *_, kind, _ in received} == {confluent_kafka.TIMESTAMP_LOG_APPEND_TIME}
    assert all(before <= timestamp <= after for *_, timestamp in received)


# --- refusals, on a raw socket ---------------------------------------------------------------------------------

def legacy_set(magic, codec=0, count=3, offsets=None):
    builder = LegacyRecordBatchBuilder(magic=magic, compression_type=codec, batch_size=1 << 20)
    for i, offset in enumerate(offsets or range(count)):
        builder.append(offset, timestamp=BASE_TIMESTAMP + i if magic else None, key=b"k", value=f"v{i}".encode())
    return bytearray(builder.build())


def produce_frame(version, topic, records, correlation_id, acks=-1):
    request = ProduceRequest(version=version, acks=acks, timeout_ms=5000, topic_data=[
        ProduceRequest.TopicProduceData(name=topic, partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=bytes(records))])])
    request.with_header(correlation_id=correlation_id, client_id="legacy-refusals")
    return request.encode(header=True, framed=True)


def produce(sock, version, topic, records, correlation_id):
    """(error code, base offset) of partition 0 in the answer to one Produce."""
    sock.sendall(produce_frame(version, topic, records, correlation_id))
    payload = read_frame(sock)
    assert payload is not None, f"Produce v{version}: the broker closed the connection"
    response = ProduceResponse.decode(payload, version=version, header=True)
    assert response.header.correlation_id == correlation_id
    (answer,) = response.responses
    (partition,) = answer.partition_responses
    return partition.error_code, partition.base_offset


def create_topic(broker, topic):
    """Produce does not create topics (as in Kafka): an admin client does, before the raw requests."""
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([confluent_kafka.admin.NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)


def end_offset(broker, topic):
    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker, "group.id": "unused"})
    _, high = consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, 0), timeout=10)
    consumer.close()
    return high


def reseal(message, start=0):
    """Recomputes the CRC-32 of the message at `start` after a change (kafka-python's own CRC-32)."""
    from kafka.record.util import calc_crc32
    (size,) = struct.unpack_from(">i", message, start + 8)
    struct.pack_into(">I", message, start + 12, calc_crc32(memoryview(message)[start + 16:start + 12 + size]))


def test_malformed_sets_get_kafkas_error_codes_and_append_nothing(broker):
    topic = "legacy-refusals"
    host, port = broker.rsplit(":", 1)
    wrong_crc = legacy_set(1)
    wrong_crc[-1] ^= 1
    wrapper_below_inner = legacy_set(1, codec=1, count=3)
    struct.pack_into(">q", wrapper_below_inner, 0, 1)  # inner offsets 0..2, wrapper offset 1: outside the CRC
    truncated = legacy_set(0)[:-5]
    absurd = legacy_set(0)
    struct.pack_into(">i", absurd, 8, 0x7FFFFFFF)
    negative = legacy_set(1)
    struct.pack_into(">i", negative, 8, -20)
    zstd = legacy_set(1, count=1)
    zstd[17] = 4
    reseal(zstd)
    cases = [
        (2, wrong_crc, 2, "a magic 1 set with a wrong CRC"),
        (2, wrapper_below_inner, 87, "a wrapper offset below its inner offsets"),
        (3, legacy_set(0), 87, "a magic 0 set inside Produce v3"),
        (7, legacy_set(1, codec=1), 87, "a magic 1 set inside Produce v7"),
        (1, truncated, 2, "a truncated message"),
        (0, absurd, 2, "a size of 2 GiB"),
        (2, negative, 2, "a negative size"),
        (2, zstd, 87, "zstd below magic 2"),
    ]
    create_topic(broker, topic)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        assert produce(sock, 2, topic, legacy_set(1), 1) == (0, 0)
        for correlation_id, (version, records, code, what) in enumerate(cases, start=2):
            assert produce(sock, version, topic, records, correlation_id) == (code, -1), what
        # The connection and the broker are still there, and nothing was appended.
        assert produce(sock, 1, topic, legacy_set(0, codec=2), 99) == (0, 3)
    assert end_offset(broker, topic) == 6


def test_produce_v0_to_v2_also_accept_magic_2_batches(broker):
    """Kafka 3.9's `ProduceRequest.validateRecords` checks magic only from v3, so v0-2 may carry a v2 batch."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    host, port = broker.rsplit(":", 1)
    create_topic(broker, "legacy-magic2")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for version in (0, 1, 2):
            builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                                producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                                batch_size=1 << 20)
            builder.append(0, timestamp=None, key=None, value=b"v2 in v%d" % version, headers=[])
            assert produce(sock, version, "legacy-magic2", builder.build(), 10 + version) == (0, version)


def test_acks_0_refusal_closes_the_connection(broker):
    host, port = broker.rsplit(":", 1)
    bad = legacy_set(1)
    bad[-1] ^= 1
    create_topic(broker, "legacy-acks0")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(produce_frame(2, "legacy-acks0", legacy_set(1), 1, acks=0))
        sock.sendall(produce_frame(2, "legacy-acks0", bad, 2, acks=0))
        assert read_frame(sock) is None
    assert end_offset(broker, "legacy-acks0") == 3
