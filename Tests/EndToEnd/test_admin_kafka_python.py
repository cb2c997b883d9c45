"""kafka-python 3.0.12's KafkaAdminClient, unmodified, administering logbroker-server: what an operator checks
after each call."""
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import (AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions,
                         NewTopic)
from kafka.structs import TopicPartition


def topic_configs(admin, topic):
    """{name: (value, source)} of the configs of `topic` kafka-python reports (those that are not defaults)."""
    response = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {name: (entry["value"], entry["config_source"]) for name, entry in response["topic"][topic].items()}


def test_a_topics_life_with_kafka_python(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker)

    created = admin.create_topics([NewTopic("kp-admin", 2, 1, topic_configs={"retention.ms": "3600000"})])
    result = created["topics"][0]
    assert result["error_code"] == 0 and result["num_partitions"] == 2
    assert result["configs"]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert "kp-admin" in admin.list_topics()

    # describe_configs: the override with its source; kafka-python lists only non-default values.
    assert topic_configs(admin, "kp-admin")["retention.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG")

    # alter_configs with AlterConfigs: the broker replaces the whole dynamic set, and kafka-python, knowing that,
    # resends the other overrides it read first, so retention.ms stays.
    altered = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-admin",
                                                  configs={"segment.ms": "100000"})], incremental=False)
    assert altered == {"topic": {"kp-admin": "OK"}}
    configs = topic_configs(admin, "kp-admin")
    assert configs["segment.ms"] == ("100000", "DYNAMIC_TOPIC_CONFIG")
    assert configs["retention.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG")

    # Incremental: SET keeps the others, APPEND adds to a list, DELETE removes an override.
    incremental = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-admin", configs={
        "retention.bytes": (AlterConfigOp.SET, "1000000"),
        "leader.replication.throttled.replicas": (AlterConfigOp.APPEND, "0:1"),
        "segment.ms": (AlterConfigOp.DELETE, None),
    })], incremental=True)
    assert incremental == {"topic": {"kp-admin": "OK"}}
    configs = topic_configs(admin, "kp-admin")
    assert configs["retention.bytes"] == ("1000000", "DYNAMIC_TOPIC_CONFIG")
    assert configs["leader.replication.throttled.replicas"] == ("0:1", "DYNAMIC_TOPIC_CONFIG")
    assert "segment.ms" not in configs

    partitions = admin.create_partitions({"kp-admin": NewPartitions(4)})
    assert [r.error_code for r in partitions.results] == [0]
    assert len(admin.describe_topics(["kp-admin"])[0]["partitions"]) == 4

    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1 and [b["broker_id"] for b in cluster["brokers"]] == [1]
    assert cluster["cluster_id"]

    producer = KafkaProducer(bootstrap_servers=broker, enable_idempotence=False)
    for index in range(10):
        producer.send("kp-admin", value=b"record-%d" % index, partition=0)
    producer.flush(30)
    producer.close()

    log_dirs = admin.describe_log_dirs()
    partition_sizes = {(t["name"], p["partition_index"]): p["partition_size"]
                       for d in log_dirs[0]["log_dirs"] for t in d["topics"] for p in t["partitions"]}
    assert partition_sizes[("kp-admin", 0)] > 0
    assert partition_sizes[("kp-admin", 1)] == 0

    deleted = admin.delete_records({TopicPartition("kp-admin", 0): 4})
    assert deleted[TopicPartition("kp-admin", 0)]["low_watermark"] == 4
    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, consumer_timeout_ms=5000)
    consumer.assign([TopicPartition("kp-admin", 0)])
    consumer.seek_to_beginning()
    assert [record.offset for record in consumer][:1] == [4]
    consumer.close()

    gone = admin.delete_topics(["kp-admin"])
    assert [t["error_code"] for t in gone["topics"]] == [0]
    deadline = time.time() + 10
    while "kp-admin" in admin.list_topics() and time.time() < deadline:
        time.sleep(0.1)
    assert "kp-admin" not in admin.list_topics()
    admin.close()
