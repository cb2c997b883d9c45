"""Three broker,controller processes over a real etcd, as clients see them: kcat -L, confluent-kafka and
kafka-python find three brokers with their racks and the same controller (the active one) from any bootstrap
broker; a topic of 12 partitions at replication factor 3 created through broker 2 shows 3 replicas per partition and
preferred leaders spread 4/4/4 on every broker within one second of its creation; `logbroker-admin cluster describe`
lists the three brokers unfenced with the active controller and its epoch; a killed broker is fenced at once, gone
from Metadata and shown fenced by cluster describe."""
import json
import struct
import subprocess
import time
import warnings
from collections import Counter

from cluster import Cluster, KafkaReader, create_topic, send, wait_until
from conftest import tool_binary

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient

RACKS = {1: "rack-a", 2: "rack-b", 3: "rack-c"}


def kcat_metadata(bootstrap, topic=None):
    arguments = ["kcat", "-L", "-J", "-b", bootstrap] + (["-t", topic] if topic else [])
    listed = subprocess.run(arguments, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def list_offsets_errors(address, topic, partitions):
    """The error code of each partition of a ListOffsets v1 (latest offset) sent to `address`."""
    name = topic.encode()
    body = struct.pack(">ii", -1, 1) + struct.pack(">h", len(name)) + name + struct.pack(">i", len(partitions))
    for partition in partitions:
        body += struct.pack(">iq", partition, -1)
    answer = send(address, 2, 1, body)
    assert answer is not None, f"{address} closed the connection on ListOffsets"
    reader = KafkaReader(answer)
    assert reader.take(">i") == 1 and reader.string() == topic
    errors = {}
    for _ in range(reader.take(">i")):
        partition, error, _, _ = reader.take(">ihqq")
        errors[partition] = error
    return errors


def test_three_brokers_one_controller_and_a_topic_spread_over_them(tmp_path):
    cluster = Cluster(tmp_path, ["broker,controller"] * 3)
    for node in cluster.nodes:
        with open(node.config, "a") as config:
            config.write(f"broker.rack={RACKS[node.node_id]}\n")
    try:
        cluster.start()
        active, election = cluster.active_controller()
        brokers = {node.node_id: node.bootstrap for node in cluster.nodes}

        # Every broker lists the three, once each has registered and been unfenced.
        for bootstrap in brokers.values():
            wait_until(lambda: sorted(b["id"] for b in kcat_metadata(bootstrap)["brokers"]) == [1, 2, 3], 30,
                       lambda: f"{bootstrap} does not list three brokers: {kcat_metadata(bootstrap)}")

        from confluent_kafka.admin import AdminClient

        for node_id, bootstrap in brokers.items():
            listed = kcat_metadata(bootstrap)
            assert listed["controllerid"] == active.node_id, (node_id, listed)
            assert {b["id"]: b["name"] for b in listed["brokers"]} == brokers

            client = AdminClient({"bootstrap.servers": bootstrap})
            topics = client.list_topics(timeout=10)
            assert topics.controller_id == active.node_id
            assert {b.id: f"{b.host}:{b.port}" for b in topics.brokers.values()} == brokers
            described = client.describe_cluster(request_timeout=10).result(10)
            assert described.controller.id == active.node_id
            assert {node.id: node.rack for node in described.nodes} == RACKS

            kafka_admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            try:
                cluster_info = kafka_admin.describe_cluster()
                assert cluster_info["controller_id"] == active.node_id
                assert {b["broker_id"]: b["rack"] for b in cluster_info["brokers"]} == RACKS
            finally:
                kafka_admin.close()
        del client

        # A topic created through broker 2, seen alike by every broker within a second.
        clients = {node_id: AdminClient({"bootstrap.servers": bootstrap}) for node_id, bootstrap in brokers.items()}
        for client in clients.values():
            client.list_topics(timeout=10)  # connected before the clock starts

        def spread(client):
            topic = client.list_topics(topic="twelve", timeout=5).topics.get("twelve")
            if topic is None or topic.error is not None or len(topic.partitions) != 12:
                return None
            partitions = topic.partitions.values()
            if any(sorted(p.replicas) != [1, 2, 3] or p.leader != p.replicas[0] for p in partitions):
                return None
            return {p.id: (p.leader, tuple(p.replicas), tuple(p.isrs)) for p in partitions}

        sent = time.monotonic()
        error, message = create_topic(brokers[2], "twelve", partitions=12, replication_factor=3)
        answered = time.monotonic()
        assert error == 0, message
        seen = {}
        for node_id, client in clients.items():
            seen[node_id] = wait_until(lambda: spread(client), 5, f"broker {node_id} does not show the topic")
        elapsed = time.monotonic() - sent
        print(f"CreateTopics answered in {answered - sent:.3f} s; every broker showed the topic "
              f"{elapsed:.3f} s after it was sent")
        assert elapsed < 1.0
        assert seen[1] == seen[2] == seen[3]
        assert Counter(leader for leader, _, _ in seen[1].values()) == {1: 4, 2: 4, 3: 4}
        # Closed now, or librdkafka logs every broker's stop at the end.
        clients.clear()
        del client

        # Each broker answers for the partitions it leads once their logs are open (a moment after Metadata names
        # it: until then NOT_LEADER_OR_FOLLOWER, which clients retry), and NOT_LEADER_OR_FOLLOWER (6) for the others.
        for node_id, bootstrap in brokers.items():
            expected = {p: 0 if seen[1][p][0] == node_id else 6 for p in range(12)}

            def answers():
                errors = list_offsets_errors(bootstrap, "twelve", range(12))
                assert all(errors[p] == 6 for p in range(12) if expected[p] == 6), (node_id, errors)
                return errors == expected

            wait_until(answers, 10, f"broker {node_id} does not serve the partitions it leads")

        # The operator's view, from any broker.
        result = subprocess.run([tool_binary("logbroker-admin"), "cluster", "describe", "-b", brokers[3], "--json"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        described = json.loads(result.stdout)
        assert described["controller"] == active.node_id
        assert described["controller_epoch"] == election["epoch"]
        assert [(b["id"], b["rack"], b["fenced"]) for b in described["brokers"]] == [
            (1, "rack-a", False), (2, "rack-b", False), (3, "rack-c", False)]
        assert all(b["last_heartbeat_ms"] is not None for b in described["brokers"])

        # A broker killed is fenced at once (its heartbeat connection closed): Metadata no longer lists it, and
        # cluster describe shows it fenced, with its last heartbeat and no endpoint.
        victim = next(node for node in cluster.nodes if node.node_id != active.node_id)
        others = sorted(set(brokers) - {victim.node_id})
        victim.kill()
        killed = time.monotonic()
        wait_until(lambda: sorted(b["id"] for b in kcat_metadata(active.bootstrap)["brokers"]) == others, 10,
                   f"broker {victim.node_id} is still listed after it was killed")
        print(f"broker {victim.node_id} left Metadata {time.monotonic() - killed:.3f} s after SIGKILL")
        result = subprocess.run([tool_binary("logbroker-admin"), "cluster", "describe", "-b", active.bootstrap,
                                 "--json"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        rows = {b["id"]: b for b in json.loads(result.stdout)["brokers"]}
        assert sorted(rows) == [1, 2, 3]
        assert rows[victim.node_id]["fenced"] and rows[victim.node_id]["host"] is None
        assert rows[victim.node_id]["last_heartbeat_ms"] is not None
        assert not any(rows[node_id]["fenced"] for node_id in others)
    finally:
        cluster.stop()


def test_with_controller_only_nodes_each_broker_names_itself_as_the_controller(tmp_path):
    """A controller-only process serves no clients, so clients are never sent to it: each broker names itself as
    the controller (as Kafka's KRaft brokers name a live broker) and forwards the admin requests clients send it."""
    cluster = Cluster(tmp_path, ["controller", "controller", "broker", "broker", "broker"])
    try:
        cluster.start()
        active, _ = cluster.active_controller()
        assert "broker" not in active.roles
        brokers = {node.node_id: node.bootstrap for node in cluster.brokers()}
        for node_id, bootstrap in brokers.items():
            wait_until(lambda: sorted(b["id"] for b in kcat_metadata(bootstrap)["brokers"]) == sorted(brokers), 30,
                       lambda: f"{bootstrap} does not list the brokers: {kcat_metadata(bootstrap)}")
            assert kcat_metadata(bootstrap)["controllerid"] == node_id

        from confluent_kafka.admin import AdminClient, NewTopic

        client = AdminClient({"bootstrap.servers": brokers[4]})
        next(iter(client.create_topics([NewTopic("through-four", 6, 3)]).values())).result(30)
        topic = client.list_topics(topic="through-four", timeout=10).topics["through-four"]
        assert len(topic.partitions) == 6 and all(len(p.replicas) == 3 for p in topic.partitions.values())
        del client

        # DescribeQuorum is answered by the active controller only; a broker forwards it there, so cluster describe
        # through a broker names the controller-only process that is active.
        result = subprocess.run([tool_binary("logbroker-admin"), "cluster", "describe", "-b", brokers[3], "--json"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        described = json.loads(result.stdout)
        assert described["controller"] == active.node_id
        assert [(b["id"], b["fenced"]) for b in described["brokers"]] == [(3, False), (4, False), (5, False)]
    finally:
        # Brokers first: a broker stopping without a controller waits out its session for a controlled shutdown.
        for node in cluster.brokers():
            node.stop()
        cluster.stop()
