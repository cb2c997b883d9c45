"""Connections and the memory they hold are bounded, on a real logbroker-server process: `max.connections` (and the
share of `ulimit -n` left to connections), `max.connections.per.ip` and its overrides, the per-listener limit,
`connections.max.idle.ms`, `queued.max.request.bytes`, and LogBroker's own `socket.request.read.timeout.ms`.

Idle, hostile and slow connections are raw sockets; the data path is confluent-kafka 2.16.1. The broker's memory is
its VmRSS in /proc, its descriptor limit is set on the process as `prlimit --nofile` would."""
import re
import select
import socket
import struct
import threading
import time

import confluent_kafka

from conftest import read_exactly

MiB = 1 << 20


def port_of(broker):
    return int(broker.address.rsplit(":", 1)[1])


def connect(port, source="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))


def api_versions_frame(correlation_id):
    """ApiVersions v0: header v1 (api key 18, version 0, correlation id, client id), no body."""
    client_id = b"connection-limits"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def answers(sock, correlation_id=7, timeout=20):
    """True if the broker answers ApiVersions on `sock`, False if it closed the connection."""
    sock.settimeout(timeout)
    try:
        sock.sendall(api_versions_frame(correlation_id))
        head = read_exactly(sock, 8)
        if head is None:
            return False
        size, correlation = struct.unpack(">ii", head)
        return correlation == correlation_id and read_exactly(sock, size - 4) is not None
    except (ConnectionResetError, BrokenPipeError):
        return False


def closed_by_broker(sock):
    """True if the broker has closed `sock` (EOF or reset is waiting); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        sock.setblocking(False)
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, OSError):
        return True
    finally:
        sock.setblocking(True)


def wait_until(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_idle_connections_cannot_take_the_descriptors_segment_rolls_need(make_broker):
    idle_ms = 15_000
    broker = make_broker(f"log.segment.bytes=16384\nconnections.max.idle.ms={idle_ms}\n", nofile=1024)
    port = port_of(broker)
    split = re.search(r"descriptors: limit 1024, logs (\d+), connections (\d+)", broker.stderr())
    assert split, broker.stderr()
    allowed = int(split.group(2))
    assert 0 < allowed < 1024 - int(split.group(1))

    # retries=0: a KAFKA_STORAGE_ERROR (or any error) in a Produce answer fails that delivery instead of a retry.
    # The producer closes its own connections sooner than the broker would (as Kafka's clients' 9 min against the
    # broker's 10): it sits idle for about connections.max.idle.ms while the idle sockets are reaped, and a Produce
    # sent just as the broker closed the connection failed (a transport failure, not retried).
    producer = confluent_kafka.Producer({
        "bootstrap.servers": broker.address, "retries": 0, "enable.idempotence": False, "acks": "all",
        "linger.ms": 5, "batch.size": 4096, "message.timeout.ms": 60_000, "connections.max.idle.ms": idle_ms * 2 // 3,
    })
    deliveries = []
    produced = 0

    def produce(count):
        nonlocal produced
        for _ in range(count):
            producer.produce("rolls", value=b"%08d" % produced + b"x" * 992,
                             on_delivery=lambda err, msg: deliveries.append(err))
            produced += 1
        producer.poll(0)

    def segments():
        return len(list((broker.log_dir / "rolls-0").glob("*.log")))

    produce(100)
    assert producer.flush(30) == 0
    rolled_before = segments()
    assert rolled_before > 1

    # More idle connections than the broker may keep, with the producer going on in between.
    idle, first_opened = [], time.monotonic()
    for index in range(allowed + 100):
        idle.append(connect(port))
        if index % 50 == 0:
            produce(20)
    refused = set()

    def hundred_refused():
        refused.update(sock for sock in idle if sock not in refused and closed_by_broker(sock))
        return len(refused) >= 100

    # The refused ones are closed at accept, long before the idle timeout (15 s) could close any.
    wait_until(hundred_refused, idle_ms / 1000 / 2, "fewer than 100 connections refused")
    assert time.monotonic() - first_opened < idle_ms / 1000
    assert len(idle) - len(refused) <= allowed
    assert f"refused a connection: the broker has its maximum of {allowed} connections" in broker.stderr()

    # Meanwhile and after, the producer goes on, segments keep rolling, no partition goes offline.
    produce(200)
    assert producer.flush(60) == 0
    assert [err for err in deliveries if err is not None] == []
    assert len(deliveries) == produced
    assert segments() > rolled_before

    # The idle connections are closed by connections.max.idle.ms, and new ones are accepted again.
    still_open = [s for s in idle if s not in refused]
    wait_until(lambda: all(closed_by_broker(s) or s in refused for s in still_open),
               idle_ms / 1000 + 45, "idle connections were not closed")
    for sock in idle:
        sock.close()
    fresh = [connect(port) for _ in range(100)]
    assert all(answers(sock) for sock in fresh)
    for sock in fresh:
        sock.close()

    produce(100)
    assert producer.flush(60) == 0
    assert [err for err in deliveries if err is not None] == []

    # Every record reads back (Fetch answers without errors).
    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.address, "group.id": "unused",
                                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([confluent_kafka.TopicPartition("rolls", 0, 0)])
    values, deadline = [], time.monotonic() + 60
    while len(values) < produced and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error() is not None:
            assert message.error().code() == confluent_kafka.KafkaError._PARTITION_EOF, message.error()
            continue
        values.append(message.value()[:8])
    consumer.close()
    assert values == [b"%08d" % i for i in range(produced)]
    text = broker.stderr().lower()
    assert "too many open files" not in text and "offline" not in text


def test_max_connections_per_ip_and_its_overrides(make_broker):
    broker = make_broker("max.connections.per.ip=3\nmax.connections.per.ip.overrides=127.0.0.2:5\n")
    port = port_of(broker)

    def open_from(source, count):
        sockets = [connect(port, source) for _ in range(count)]
        return [s for s in sockets if answers(s)], sockets

    from_one, all_one = open_from("127.0.0.1", 5)
    assert len(from_one) == 3
    from_two, all_two = open_from("127.0.0.2", 7)
    assert len(from_two) == 5

    # Four refusals, one line at once and the rest counted in one line after 10 s.
    assert broker.stderr().count("refused a connection") == 1
    assert "127.0.0.1 has its maximum of 3 connections" in broker.stderr()
    wait_until(lambda: "refused 3 connections in the last 10 s" in broker.stderr(), 30, broker.stderr())

    # A closed connection gives its slot back.
    from_one[0].close()

    def one_more_accepted():
        sock = connect(port, "127.0.0.1")
        ok = answers(sock)
        if ok:
            from_one.append(sock)
        else:
            sock.close()
        return ok

    wait_until(one_more_accepted, 20, "the released slot was not given back")
    for sock in all_one + all_two + from_one:
        sock.close()


def test_a_listener_limit_refuses_at_accept(make_broker):
    broker = make_broker("listener.name.plaintext.max.connections=2\n")
    sockets = [connect(port_of(broker)) for _ in range(4)]
    assert [answers(s) for s in sockets].count(True) == 2
    assert "listener PLAINTEXT has its maximum of 2 connections" in broker.stderr()
    assert "ignored" not in broker.stderr()
    for sock in sockets:
        sock.close()


def test_request_memory_is_bounded_by_queued_max_request_bytes(make_broker):
    pool = 200 * MiB
    broker = make_broker(f"queued.max.request.bytes={pool}\nsocket.request.max.bytes={300 * MiB}\n"
                         "socket.request.read.timeout.ms=300000\n")
    port = port_of(broker)
    frame_size, sent_each = 99 * MiB, 99 * MiB - 64 * 1024
    progress = [0] * 8
    stop = threading.Event()

    def send_most_of_a_frame(index, sock):
        chunk = b"\0" * MiB
        try:
            sock.sendall(struct.pack(">i", frame_size))
            while progress[index] < sent_each and not stop.is_set():
                sock.sendall(chunk[: min(MiB, sent_each - progress[index])])
                progress[index] += min(MiB, sent_each - progress[index])
        except OSError:
            pass

    senders = [connect(port) for _ in range(8)]
    threads = [threading.Thread(target=send_most_of_a_frame, args=(i, s), daemon=True) for i, s in enumerate(senders)]
    for thread in threads:
        thread.start()

    bystander = connect(port)
    peak, served = 0, 0

    def two_frames_held():
        # The pool covers two 99 MiB frames: those two connections send all they have and the broker holds them.
        nonlocal peak, served
        peak = max(peak, rss_bytes(broker.process.pid))
        started = time.monotonic()
        assert answers(bystander, correlation_id=served), "the bystander was not served"
        assert time.monotonic() - started < 5
        served += 1
        return sum(1 for p in progress if p == sent_each) >= 2 and rss_bytes(broker.process.pid) > 2 * sent_each

    try:
        wait_until(two_frames_held, 180, f"progress {progress}")
        for _ in range(20):  # a few more rounds while the six others wait
            two_frames_held()
        assert sum(1 for p in progress if p == sent_each) == 2, progress
        assert peak < pool + 100 * MiB, f"VmRSS {peak / MiB:.0f} MiB"

        # A frame larger than the whole pool is refused by closing the connection.
        huge = connect(port)
        huge.sendall(struct.pack(">i", 250 * MiB))
        wait_until(lambda: closed_by_broker(huge), 20, "a frame larger than the pool was not refused")
        huge.close()
        assert "frame too large for the request memory pool" in broker.stderr()
    finally:
        stop.set()
        for sock in senders:
            sock.close()
        for thread in threads:
            thread.join(30)
    # The memory came back: a new client's requests are read.
    assert answers(connect(port))
    assert answers(bystander, correlation_id=1)


def test_slowloris_connections_are_closed_by_the_read_deadline(make_broker):
    broker = make_broker("socket.request.read.timeout.ms=3000\n")
    port = port_of(broker)
    slow = [connect(port) for _ in range(50)]
    started = time.monotonic()
    for sock in slow:
        sock.sendall(struct.pack(">i", 1000))  # a frame of 1,000 bytes, then a byte a second
    bystander = connect(port)
    closed_after = {}
    deadline = time.monotonic() + 90
    while len(closed_after) < len(slow) and time.monotonic() < deadline:
        for sock in slow:
            if sock in closed_after:
                continue
            if closed_by_broker(sock):
                closed_after[sock] = time.monotonic() - started
                continue
            try:
                sock.send(b"x")
            except OSError:
                closed_after[sock] = time.monotonic() - started
        asked = time.monotonic()
        assert answers(bystander, correlation_id=len(closed_after)), "the bystander was not served"
        assert time.monotonic() - asked < 5
        # Paced by the sockets themselves: wake when one is closed, else after a second.
        select.select([s for s in slow if s not in closed_after] or [bystander], [], [], 1.0)
    assert len(closed_after) == len(slow)
    assert min(closed_after.values()) >= 2.5  # by the deadline, not at once
    wait_until(lambda: broker.stderr().count("request read timeout") == len(slow), 20, broker.stderr())
    for sock in slow + [bystander]:
        sock.close()
