"""kafka-python 3.0.12's KafkaAdminClient, unmodified, administering logbroker-server: what an operator checks
after each call. This version has incremental alter: `alter_configs(..., incremental=True)` with
`{key: (AlterConfigOp.X, value)}` sends IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT)."""
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import OffsetOutOfRangeError
from kafka.structs import TopicPartition

# The broker's server.properties sets the broker synonym of the topic's retention.ms.
STATIC_RETENTION = "log.retention.ms=86400000\n"


def topic_configs(admin, topic, config_filter="all", include_synonyms=False):
    """{name: entry} of the configs of `topic` (entry: value, config_source, read_only, synonyms...)."""
    response = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                      include_synonyms=include_synonyms, config_filter=config_filter)
    return response["topic"][topic]


def value_and_source(entry):
    return entry["value"], entry["config_source"]


def test_create_and_describe_topic_configs_with_kafka_python(make_broker):
    """Creating a topic with an override shows it as DYNAMIC_TOPIC_CONFIG; the others show their default, or the
    value of server.properties as STATIC_BROKER_CONFIG (with the synonym naming the broker setting); the broker
    resource "1" shows what the file sets as static and the rest as defaults; the topic has a non-zero id."""
    broker = make_broker(STATIC_RETENTION)
    admin = KafkaAdminClient(bootstrap_servers=broker.address)

    created = admin.create_topics({"kp-configs": {"num_partitions": 2, "replication_factor": 1,
                                                  "configs": {"segment.ms": "100000"}}})
    result = created["topics"][0]
    assert result["error_code"] == 0 and result["num_partitions"] == 2 and result["replication_factor"] == 1
    assert value_and_source(result["configs"]["segment.ms"]) == ("100000", "DYNAMIC_TOPIC_CONFIG")
    assert "kp-configs" in admin.list_topics()
    [described] = admin.describe_topics(["kp-configs"])
    assert len(described["partitions"]) == 2
    assert uuid.UUID(str(described["topic_id"])).int != 0

    configs = topic_configs(admin, "kp-configs", include_synonyms=True)
    assert value_and_source(configs["segment.ms"]) == ("100000", "DYNAMIC_TOPIC_CONFIG")
    assert value_and_source(configs["retention.ms"]) == ("86400000", "STATIC_BROKER_CONFIG")
    assert ("log.retention.ms", "86400000", "STATIC_BROKER_CONFIG") in [
        (s["name"], s["value"], s["source"]) for s in configs["retention.ms"]["synonyms"]]
    assert value_and_source(configs["cleanup.policy"]) == ("delete", "DEFAULT_CONFIG")
    assert not any(entry["read_only"] for entry in configs.values())
    # kafka-python's default filter shows only what was changed on the topic.
    assert set(topic_configs(admin, "kp-configs", config_filter="modified")) == {"segment.ms"}

    node = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")], config_filter="all")["broker"]["1"]
    assert value_and_source(node["log.retention.ms"]) == ("86400000", "STATIC_BROKER_CONFIG")
    assert value_and_source(node["log.dirs"]) == (str(broker.log_dir), "STATIC_BROKER_CONFIG")
    assert node["num.partitions"]["config_source"] == "DEFAULT_CONFIG"
    admin.close()


def test_alter_configs_with_kafka_python(broker):
    """alter_configs (AlterConfigs) and alter_configs(incremental=True) (IncrementalAlterConfigs): the user sees the
    values and sources change in describe_configs."""
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics({"kp-alter": {"num_partitions": 1, "replication_factor": 1,
                                      "configs": {"retention.ms": "3600000"}}})
    assert value_and_source(topic_configs(admin, "kp-alter")["retention.ms"]) == ("3600000", "DYNAMIC_TOPIC_CONFIG")

    # AlterConfigs replaces the whole dynamic set; kafka-python, knowing that, resends the overrides it read first,
    # so retention.ms stays.
    altered = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-alter",
                                                  configs={"segment.ms": "100000"})], incremental=False)
    assert altered == {"topic": {"kp-alter": "OK"}}
    configs = topic_configs(admin, "kp-alter")
    assert value_and_source(configs["segment.ms"]) == ("100000", "DYNAMIC_TOPIC_CONFIG")
    assert value_and_source(configs["retention.ms"]) == ("3600000", "DYNAMIC_TOPIC_CONFIG")

    # Incremental: SET keeps the others, APPEND adds to a list, DELETE removes an override.
    incremental = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-alter", configs={
        "retention.bytes": (AlterConfigOp.SET, "1000000"),
        "leader.replication.throttled.replicas": (AlterConfigOp.APPEND, "0:1"),
        "segment.ms": (AlterConfigOp.DELETE, None),
    })], incremental=True)
    assert incremental == {"topic": {"kp-alter": "OK"}}
    configs = topic_configs(admin, "kp-alter")
    assert value_and_source(configs["retention.bytes"]) == ("1000000", "DYNAMIC_TOPIC_CONFIG")
    assert value_and_source(configs["leader.replication.throttled.replicas"]) == ("0:1", "DYNAMIC_TOPIC_CONFIG")
    assert value_and_source(configs["retention.ms"]) == ("3600000", "DYNAMIC_TOPIC_CONFIG")
    assert configs["segment.ms"]["config_source"] == "DEFAULT_CONFIG"

    # SUBTRACT removes the entry again: the list is back to its (empty) default.
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-alter", configs={
        "leader.replication.throttled.replicas": (AlterConfigOp.SUBTRACT, "0:1")})], incremental=True)
    assert topic_configs(admin, "kp-alter")["leader.replication.throttled.replicas"]["value"] in ("", None)
    admin.close()


def test_partitions_cluster_log_dirs_records_and_deletion_with_kafka_python(broker, tmp_path):
    """create_partitions, describe_cluster, describe_log_dirs, delete_records (and a consumer then starting at the new
    low watermark), delete_topics and list_topics, as an operator sees them."""
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics({"kp-admin": {"num_partitions": 2, "replication_factor": 1}})

    partitions = admin.create_partitions({"kp-admin": 4})
    assert [r.error_code for r in partitions.results] == [0]
    assert len(admin.describe_topics(["kp-admin"])[0]["partitions"]) == 4
    refused = admin.create_partitions({"kp-admin": 3}, raise_errors=False)
    assert [r.error_code for r in refused.results] == [37]  # INVALID_PARTITIONS

    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1 and [b["broker_id"] for b in cluster["brokers"]] == [1]
    assert cluster["cluster_id"]

    producer = KafkaProducer(bootstrap_servers=broker, enable_idempotence=False)
    for index in range(10):
        producer.send("kp-admin", value=b"record-%d" % index, partition=0)
    producer.flush(30)
    producer.close()

    [node] = admin.describe_log_dirs()
    assert [d["log_dir"] for d in node["log_dirs"]] == [str(tmp_path / "logs")]
    partition_sizes = {(t["name"], p["partition_index"]): p["partition_size"]
                       for d in node["log_dirs"] for t in d["topics"] for p in t["partitions"]}
    assert partition_sizes[("kp-admin", 0)] > 0
    assert partition_sizes[("kp-admin", 1)] == 0

    deleted = admin.delete_records({TopicPartition("kp-admin", 0): 4})
    assert deleted[TopicPartition("kp-admin", 0)]["low_watermark"] == 4
    with pytest.raises(OffsetOutOfRangeError):
        admin.delete_records({TopicPartition("kp-admin", 0): 11})
    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, consumer_timeout_ms=5000)
    consumer.assign([TopicPartition("kp-admin", 0)])
    consumer.seek_to_beginning()
    assert [record.offset for record in consumer] == list(range(4, 10))
    consumer.close()

    gone = admin.delete_topics(["kp-admin"])
    assert [t["error_code"] for t in gone["topics"]] == [0]
    deadline = time.time() + 10
    while "kp-admin" in admin.list_topics() and time.time() < deadline:
        time.sleep(0.1)
    assert "kp-admin" not in admin.list_topics()
    missing = admin.delete_topics(["kp-admin"], raise_errors=False)
    assert [t["error_code"] for t in missing["topics"]] == [3]  # UNKNOWN_TOPIC_OR_PARTITION
    admin.close()
