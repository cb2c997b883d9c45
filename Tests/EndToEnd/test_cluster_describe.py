"""What clients and operators see of the standalone broker's cluster: kcat -L, confluent-kafka and kafka-python name
broker 1 with its rack and as the controller; `logbroker-admin cluster describe` prints the broker (endpoint, rack,
not fenced, a recent heartbeat), the active controller with its epoch and the image revision, as a table and as
JSON."""
import json
import re
import subprocess
import time
import warnings

from conftest import tool_binary

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer


def admin(*arguments):
    result = subprocess.run([tool_binary("logbroker-admin"), *arguments], capture_output=True, timeout=60)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_clients_see_the_controller_and_the_rack(make_broker):
    address = make_broker("broker.rack=rack-a\n").address

    listed = subprocess.run(["kcat", "-L", "-J", "-b", address], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    metadata = json.loads(listed.stdout)
    assert metadata["controllerid"] == 1
    assert [broker["id"] for broker in metadata["brokers"]] == [1]
    assert metadata["brokers"][0]["name"] == address
    plain = subprocess.run(["kcat", "-L", "-b", address], capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"broker 1 at 127\.0\.0\.1:\d+ \(controller\)", plain), plain

    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": address})
    topics = client.list_topics(timeout=10)
    assert topics.controller_id == 1 and list(topics.brokers) == [1]
    cluster = client.describe_cluster(request_timeout=10).result(10)
    assert cluster.controller.id == 1
    assert [(node.id, node.rack) for node in cluster.nodes] == [(1, "rack-a")]

    consumer = KafkaConsumer(bootstrap_servers=address)
    try:
        consumer.topics()  # a metadata request
        brokers = consumer._client.cluster.brokers()
        assert [(broker.node_id, broker.rack) for broker in brokers] == [(1, "rack-a")]
        assert consumer._client.cluster.controller.node_id == 1
    finally:
        consumer.close()
    kafka_admin = KafkaAdminClient(bootstrap_servers=address)
    try:
        described = kafka_admin.describe_cluster()
        assert described["controller_id"] == 1
        assert [(broker["broker_id"], broker["rack"]) for broker in described["brokers"]] == [(1, "rack-a")]
    finally:
        kafka_admin.close()


def test_cluster_describe_table_and_json(make_broker):
    address = make_broker("broker.rack=rack-a\n").address
    before = int(time.time() * 1000)

    code, out, err = admin("cluster", "describe", "-b", address, "--json")
    assert code == 0, err
    described = json.loads(out)
    assert described["controller"] == 1
    assert described["controller_epoch"] >= 1 and described["image_revision"] >= 1
    [broker] = described["brokers"]
    host, port = address.split(":")
    assert (broker["id"], broker["host"], broker["port"], broker["rack"], broker["fenced"]) == (
        1, host, int(port), "rack-a", False)
    assert broker["applied_revision"] == described["image_revision"]
    assert abs(broker["last_heartbeat_ms"] - before) < 10_000

    # -b before the subcommand, and the table.
    code, out, err = admin("-b", address, "cluster", "describe")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Cluster id: ") and len(lines[0]) > len("Cluster id: ")
    assert re.fullmatch(r"Controller: 1 \(epoch \d+\)", lines[1]), lines
    assert re.fullmatch(r"Image revision: \d+", lines[2]), lines
    assert lines[3].split() == ["BROKER", "ENDPOINT", "RACK", "FENCED", "LAST-HEARTBEAT", "REVISION"]
    row = lines[4].split()
    assert row[:4] == ["1", address, "rack-a", "no"] and row[4].endswith("s") and row[5:] == ["ago", lines[2].split()[2]]

