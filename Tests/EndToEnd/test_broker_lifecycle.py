"""Brokers of a cluster register and heartbeat with the active controller over its listener (KRaft's
BrokerRegistration and BrokerHeartbeat), and forward the admin writes to it: real logbroker-server processes over a
real etcd (cluster.py), checked in the image in etcd (each broker's registration: incarnation, fenced, epoch) and
with real clients (confluent-kafka's AdminClient and idempotent producer, kafka-python's admin client).

Figures measured here are printed (pytest -s shows them): how long after a SIGKILL the controller fences the broker
(its heartbeat connection closed), and after a SIGSTOP (the session timeout)."""
import json
import struct
import subprocess
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Node, cluster, wait_until  # noqa: F401
from conftest import tool_binary

# A session short enough to wait out, long enough that a closed connection's fencing (seconds on a loaded machine)
# is told apart from it.
SESSION_MS = 8000
HEARTBEAT_MS = 1000
LIFECYCLE = f"broker.session.timeout.ms={SESSION_MS}\nbroker.heartbeat.interval.ms={HEARTBEAT_MS}\n"


def decode_broker(value, mod_revision):
    """A `brokers/<id>` value: dict(node, endpoints, rack, incarnation, fenced, epoch)."""
    version, node, count = struct.unpack_from(">BiI", value)
    position = 9

    def string():
        nonlocal position
        (length,) = struct.unpack_from(">I", value, position)
        text = value[position + 4:position + 4 + length].decode()
        position += 4 + length
        return text

    endpoints = []
    for _ in range(count):
        listener, host = string(), string()
        (port,) = struct.unpack_from(">i", value, position)
        position += 4
        endpoints.append((listener, host, port))
    (has_rack,) = struct.unpack_from(">B", value, position)
    position += 1
    rack = string() if has_rack else None
    broker = {"node": node, "endpoints": endpoints, "rack": rack, "incarnation": None, "fenced": False,
              "epoch": mod_revision}
    if version >= 2:
        most, least, fenced, epoch = struct.unpack_from(">QQBq", value, position)
        broker.update(incarnation=(most, least), fenced=bool(fenced), epoch=epoch or mod_revision)
    return broker


def brokers(store):
    """Every registration in the image, by node id."""
    found = {}
    for key, entry in store.entries().items():
        if key.startswith("brokers/"):
            broker = decode_broker(entry["value"], entry["mod_revision"])
            found[broker["node"]] = broker
    return found


def unfenced(store, node_ids):
    """The registrations of `node_ids` once all are in the image and unfenced, else None."""
    found = brokers(store)
    if all(node in found and not found[node]["fenced"] for node in node_ids):
        return found
    return None


def fenced_within(store, node_id, timeout):
    """Seconds until the image shows `node_id` fenced, polled every 5 ms; fails the test after `timeout`."""
    started = time.monotonic()
    wait_until(lambda: brokers(store).get(node_id, {}).get("fenced"), timeout,
               f"broker {node_id} was not fenced within {timeout} s")
    return time.monotonic() - started


def metadata_brokers(node):
    """The broker ids a Metadata answer from `node` lists (confluent-kafka)."""
    return set(AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=30).brokers)


def describe(bootstrap):
    """`logbroker-admin cluster describe --json` through `bootstrap`, decoded."""
    result = subprocess.run([tool_binary("logbroker-admin"), "-b", bootstrap, "cluster", "describe", "--json"],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return json.loads(result.stdout)


def described_fenced(node):
    """The broker ids `cluster describe` through `node` shows fenced."""
    return {broker["id"] for broker in describe(node.bootstrap)["brokers"] if broker["fenced"]}


def holds_for(condition, seconds, message):
    """Checks `condition` every 50 ms for `seconds` (something that must not happen meanwhile); fails the test
    with `message()` the first time it does not hold."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), message()
        time.sleep(0.05)


def test_three_broker_controller_nodes_register_and_are_unfenced(cluster):  # noqa: F811
    nodes = cluster(["broker,controller"] * 3, properties="broker.rack=r1\n")
    # Each node's start waited until the controller unfenced it: "LogBroker started" comes after.
    found = unfenced(nodes.store, [1, 2, 3])
    assert found, brokers(nodes.store)
    for node in nodes.nodes:
        log = node.log()
        assert log.index("Unfenced by the active controller") < log.index("LogBroker started"), log
        broker = found[node.node_id]
        assert broker["endpoints"] == [("PLAINTEXT", "127.0.0.1", node.client_port)]
        assert broker["rack"] == "r1"
    assert len({broker["incarnation"] for broker in found.values()}) == 3
    assert len({broker["epoch"] for broker in found.values()}) == 3
    # Every node's Metadata lists the three.
    for node in nodes.nodes:
        assert metadata_brokers(node) == {1, 2, 3}
    assert set(nodes.stop().values()) == {0}


def test_sigkill_fences_at_once_sigstop_after_the_session_timeout_and_restarts_register_anew(cluster):  # noqa: F811
    nodes = cluster(["controller", "broker", "broker", "broker"], properties=LIFECYCLE)
    controller, first, second, third = nodes.nodes
    before = wait_until(lambda: unfenced(nodes.store, [2, 3, 4]), 30,
                        lambda: f"not unfenced: {brokers(nodes.store)}")
    described = describe(first.bootstrap)
    assert described["controller"] == controller.node_id
    assert described["controller_epoch"] == nodes.store.controller()["epoch"]
    assert {broker["id"]: broker["fenced"] for broker in described["brokers"]} == {2: False, 3: False, 4: False}
    assert all(broker["last_heartbeat_ms"] is not None for broker in described["brokers"])

    # A crash: the process's sockets close, and with them its heartbeat connection.
    third.kill()
    killed = fenced_within(nodes.store, 4, SESSION_MS / 1000)
    print(f"\nSIGKILL: broker fenced {killed * 1000:.0f} ms after the kill (session timeout {SESSION_MS} ms)")
    assert killed < SESSION_MS / 1000 / 2, "fenced by its session's lapse, not by its closed connection"
    assert 4 in described_fenced(first)
    wait_until(lambda: metadata_brokers(second) == {2, 3}, 30, "Metadata still lists the killed broker")

    # A restart is a new incarnation with a new epoch, unfenced once it has caught up.
    third.start()
    after = wait_until(lambda: unfenced(nodes.store, [4]), 30, lambda: f"not unfenced: {brokers(nodes.store)}")
    assert after[4]["incarnation"] != before[4]["incarnation"]
    assert after[4]["epoch"] > before[4]["epoch"]
    assert 4 not in described_fenced(first)
    wait_until(lambda: metadata_brokers(second) == {2, 3, 4}, 30, "Metadata does not list the restarted broker")

    # A pause: the connection stays open and silent, so only the session timeout fences it.
    second.pause()
    paused = fenced_within(nodes.store, 3, 5 * SESSION_MS / 1000)
    print(f"SIGSTOP: broker fenced {paused * 1000:.0f} ms after the pause (session timeout {SESSION_MS} ms)")
    assert paused >= (SESSION_MS - HEARTBEAT_MS) / 1000, paused
    assert 3 in described_fenced(first)
    wait_until(lambda: metadata_brokers(third) == {2, 4}, 30, "Metadata still lists the paused broker")
    # Resumed, it heartbeats again, catches up and is unfenced, with the same registration.
    second.resume()
    resumed = wait_until(lambda: unfenced(nodes.store, [3]), 30, lambda: f"not unfenced: {brokers(nodes.store)}")
    assert resumed[3]["incarnation"] == before[3]["incarnation"]
    assert 3 not in described_fenced(first)
    assert set(nodes.stop().values()) == {0}


def test_a_second_process_with_a_live_node_id_stops_with_one_line_naming_node_id(cluster, tmp_path):  # noqa: F811
    nodes = cluster(["broker,controller", "broker"], properties=LIFECYCLE)
    wait_until(lambda: unfenced(nodes.store, [1, 2]), 30, lambda: f"not unfenced: {brokers(nodes.store)}")
    intruder = Node(tmp_path / "intruder", 2, "broker", nodes.etcd.endpoint, properties=LIFECYCLE)
    intruder.launch()
    started = time.monotonic()
    status = intruder.process.wait(timeout=60)
    waited = time.monotonic() - started
    intruder.process = None
    assert status == 1, intruder.log()
    errors = [line for line in intruder.log().splitlines() if line.startswith("logbroker-server:")]
    assert len(errors) == 1 and "node.id" in errors[0] and "DUPLICATE_BROKER_REGISTRATION" in errors[0], errors
    # It waited out a session first (a restarted broker's previous incarnation may still hold one).
    assert waited >= SESSION_MS / 1000, waited
    # The live broker 2 was not disturbed.
    assert unfenced(nodes.store, [2]), brokers(nodes.store)
    assert set(nodes.stop().values()) == {0}


def test_create_topics_on_a_broker_without_the_controller_is_forwarded(cluster):  # noqa: F811
    nodes = cluster(["controller", "broker", "broker"])
    wait_until(lambda: unfenced(nodes.store, [2, 3]), 30, lambda: f"not unfenced: {brokers(nodes.store)}")
    admin = AdminClient({"bootstrap.servers": nodes.node(2).bootstrap})
    name = f"forwarded-{uuid.uuid4().hex[:8]}"
    futures = admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=2)], request_timeout=30)
    futures[name].result(timeout=60)
    # The active controller (node 1) created it: it is in the image, on the two brokers.
    topic = nodes.store.entry(f"topics/{name}")
    assert topic is not None
    # The controller's refusals come back as it answered them.
    again = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], request_timeout=30)
    try:
        again[name].result(timeout=60)
        raise AssertionError("a second creation succeeded")
    except KafkaException as error:
        assert error.args[0].name() == "TOPIC_ALREADY_EXISTS", error
    too_many = admin.create_topics([NewTopic(name + "-rf", num_partitions=1, replication_factor=3)],
                                   request_timeout=30)
    try:
        too_many[name + "-rf"].result(timeout=60)
        raise AssertionError("replication factor 3 on two brokers succeeded")
    except KafkaException as error:
        assert error.args[0].name() == "INVALID_REPLICATION_FACTOR", error
    assert nodes.store.entry(f"topics/{name}-rf") is None
    # Every broker lists it.
    for node in nodes.brokers():
        listed = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=30)
        assert name in listed.topics and len(listed.topics[name].partitions) == 4
    assert set(nodes.stop().values()) == {0}


def test_an_idempotent_producer_on_a_broker_without_the_controller_gets_a_producer_id(cluster):  # noqa: F811
    nodes = cluster(["controller", "broker"])
    wait_until(lambda: unfenced(nodes.store, [2]), 30, lambda: f"not unfenced: {brokers(nodes.store)}")
    before = nodes.store.entry("producer-ids")
    producer = Producer({"bootstrap.servers": nodes.node(2).bootstrap, "enable.idempotence": True})
    delivered = []
    name = f"idempotent-{uuid.uuid4().hex[:8]}"
    for index in range(10):
        producer.produce(name, value=f"record-{index}".encode(),
                         on_delivery=lambda error, message: delivered.append((error, message)))
    assert producer.flush(60) == 0
    assert [error for error, _ in delivered] == [None] * 10, delivered
    assert [message.offset() for _, message in delivered] == list(range(10))
    # The block came from the active controller, recorded in the image.
    after = nodes.store.entry("producer-ids")
    assert after is not None and (before is None or after["mod_revision"] > before["mod_revision"])
    assert "Cannot allocate a producer id block" not in nodes.node(2).log()
    # A consumer group there: __consumer_offsets is created through the active controller too.
    consumer = Consumer({"bootstrap.servers": nodes.node(2).bootstrap, "group.id": "lifecycle-group",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([name])
    received = []
    deadline = time.monotonic() + 60
    while len(received) < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received.append(message.value())
    assert received == [f"record-{index}".encode() for index in range(10)]
    committed = consumer.commit(asynchronous=False)
    assert committed and committed[0].offset == 10, committed
    consumer.close()
    assert nodes.store.entry("topics/__consumer_offsets") is not None
    assert set(nodes.stop().values()) == {0}


def test_a_broker_stopped_with_sigterm_asks_for_a_controlled_shutdown_and_restarts(cluster):  # noqa: F811
    nodes = cluster(["controller", "broker"], properties=LIFECYCLE)
    before = wait_until(lambda: unfenced(nodes.store, [2]), 30, lambda: f"not unfenced: {brokers(nodes.store)}")
    broker = nodes.node(2)
    assert broker.stop() == 0
    assert "The controller agreed to a controlled shutdown" in broker.log(), broker.log()
    assert brokers(nodes.store)[2]["fenced"]
    started = time.monotonic()
    broker.start()
    after = wait_until(lambda: unfenced(nodes.store, [2]), 30, lambda: f"not unfenced: {brokers(nodes.store)}")
    print(f"\nSIGTERM then start: unfenced {time.monotonic() - started:.1f} s after the start "
          f"(session timeout {SESSION_MS} ms)")
    assert after[2]["incarnation"] != before[2]["incarnation"]
    assert set(nodes.stop().values()) == {0}


def test_heartbeats_move_to_the_next_controller_when_the_active_one_is_paused(cluster):  # noqa: F811
    nodes = cluster(["controller", "controller", "broker"], properties=LIFECYCLE)
    wait_until(lambda: unfenced(nodes.store, [3]), 30, lambda: f"not unfenced: {brokers(nodes.store)}")
    paused, before = nodes.active_controller()
    paused.pause()
    # The standby takes over once the paused one's lease lapses.
    successor, after = nodes.active_controller(timeout=60, other_than=paused.node_id)
    assert after["epoch"] > before["epoch"]
    # The new controller fences a broker it does not hear from within a session of its election; the broker's
    # heartbeat, waiting on the paused controller, ends when the election key names the new one, and goes there.
    holds_for(lambda: not brokers(nodes.store)[3]["fenced"], 2 * SESSION_MS / 1000,
              lambda: f"broker 3 fenced after the takeover:\n{successor.log()}")
    assert "Fenced broker" not in successor.log(), successor.log()
    paused.resume()
    assert set(nodes.stop().values()) == {0}
