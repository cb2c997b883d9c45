"""confluent-kafka 2.16.1's AdminClient (librdkafka), unmodified, administering logbroker-server: each call, and the
refusals a Kafka broker gives, with their error codes."""
import pytest
from confluent_kafka import ElectionType, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, ResourceType)


def refusal(future):
    """The KafkaError a refused admin future carries."""
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=10)
    return raised.value.args[0]


def one(futures):
    return next(iter(futures.values()))


def source(entry):
    """A ConfigEntry's source as Kafka's number (confluent-kafka may give the ConfigSource enum or its value)."""
    return int(getattr(entry.source, "value", entry.source))


def code(error):
    """The error code of a per-partition result: None, a KafkaError or a KafkaException carrying one."""
    if error is None:
        return None
    if isinstance(error, KafkaException):
        error = error.args[0]
    return error.code()


def configs(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return one(admin.describe_configs([resource])).result(timeout=10)


def test_a_topics_life_with_confluent_kafka(broker):
    """Every AdminClient call on one topic, as a user checks it: validate-only creates nothing, the topic has an id,
    configs show values and sources, AlterConfigs replaces the set, incremental SET/APPEND/SUBTRACT/DELETE, more
    partitions but never fewer, the cluster, DeleteRecords, a preferred election, deletion."""
    admin = AdminClient({"bootstrap.servers": broker})

    # Validate-only creates nothing.
    assert one(admin.create_topics([NewTopic("ck-dry", 3, 1)], validate_only=True)).result(timeout=10) is None
    assert "ck-dry" not in admin.list_topics(timeout=10).topics

    one(admin.create_topics([NewTopic("ck-admin", 2, 1, config={"retention.ms": "3600000"})])).result(timeout=10)
    metadata = admin.list_topics(timeout=10).topics["ck-admin"]
    assert len(metadata.partitions) == 2
    topic_id = one(admin.describe_topics(TopicCollection(["ck-admin"]))).result(timeout=10).topic_id
    assert (topic_id.get_most_significant_bits(), topic_id.get_least_significant_bits()) != (0, 0)

    described = configs(admin, "ck-admin")
    assert described["retention.ms"].value == "3600000"
    assert source(described["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert source(described["segment.bytes"]) == ConfigSource.DEFAULT_CONFIG.value
    assert not described["retention.ms"].is_read_only

    # AlterConfigs replaces the topic's whole dynamic set: retention.ms, not sent, goes back to its default.
    resource = ConfigResource(ResourceType.TOPIC, "ck-admin", set_config={"segment.ms": "100000"})
    one(admin.alter_configs([resource])).result(timeout=10)
    described = configs(admin, "ck-admin")
    assert described["segment.ms"].value == "100000"
    assert source(described["retention.ms"]) == ConfigSource.DEFAULT_CONFIG.value

    # IncrementalAlterConfigs: SET, APPEND to a list, SUBTRACT from it, DELETE an override.
    resource = ConfigResource(ResourceType.TOPIC, "ck-admin", incremental_configs=[
        ConfigEntry("retention.bytes", "1000000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("leader.replication.throttled.replicas", "0:1,1:1", incremental_operation=AlterConfigOpType.APPEND),
        ConfigEntry("segment.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    one(admin.incremental_alter_configs([resource])).result(timeout=10)
    resource = ConfigResource(ResourceType.TOPIC, "ck-admin", incremental_configs=[
        ConfigEntry("leader.replication.throttled.replicas", "0:1", incremental_operation=AlterConfigOpType.SUBTRACT),
    ])
    one(admin.incremental_alter_configs([resource])).result(timeout=10)
    described = configs(admin, "ck-admin")
    assert described["retention.bytes"].value == "1000000"
    assert described["leader.replication.throttled.replicas"].value == "1:1"
    assert source(described["segment.ms"]) == ConfigSource.DEFAULT_CONFIG.value
    # APPEND on a setting that is not a list is refused.
    resource = ConfigResource(ResourceType.TOPIC, "ck-admin", incremental_configs=[
        ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND),
    ])
    assert refusal(one(admin.incremental_alter_configs([resource]))).code() == KafkaError.INVALID_CONFIG

    one(admin.create_partitions([NewPartitions("ck-admin", 3)])).result(timeout=10)
    assert len(admin.list_topics(timeout=10).topics["ck-admin"].partitions) == 3
    assert refusal(one(admin.create_partitions([NewPartitions("ck-admin", 2)]))).code() == KafkaError.INVALID_PARTITIONS

    cluster = admin.describe_cluster().result(timeout=10)
    assert cluster.controller.id == 1 and [node.id for node in cluster.nodes] == [1]
    assert cluster.cluster_id

    producer = Producer({"bootstrap.servers": broker})
    for index in range(10):
        producer.produce("ck-admin", value=b"record-%d" % index, partition=0)
    assert producer.flush(30) == 0
    deleted = one(admin.delete_records([TopicPartition("ck-admin", 0, 6)])).result(timeout=10)
    assert deleted.low_watermark == 6
    beyond = admin.delete_records([TopicPartition("ck-admin", 0, 1000)])
    assert refusal(one(beyond)).code() == KafkaError.OFFSET_OUT_OF_RANGE

    # One broker: the preferred leader already leads.
    elected = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("ck-admin", 0)]).result(timeout=10)
    assert [code(error) for error in elected.values()] in ([KafkaError.ELECTION_NOT_NEEDED], [None])
    elected = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("ck-admin", 99)]).result(timeout=10)
    assert [code(error) for error in elected.values()] == [KafkaError.UNKNOWN_TOPIC_OR_PART]

    one(admin.delete_topics(["ck-admin"])).result(timeout=10)
    assert "ck-admin" not in admin.list_topics(timeout=10).topics
    assert refusal(one(admin.delete_topics(["ck-admin"]))).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_refusals_carry_kafkas_codes(broker):
    """Each topic Kafka refuses is refused with Kafka's error code, a refused config names its key, and none of them
    is created."""
    admin = AdminClient({"bootstrap.servers": broker})
    one(admin.create_topics([NewTopic("a.b", 1, 1)])).result(timeout=10)
    cases = [
        (NewTopic("a.b", 1, 1), KafkaError.TOPIC_ALREADY_EXISTS),
        (NewTopic("a_b", 1, 1), KafkaError.TOPIC_EXCEPTION),  # collides with a.b once '.' is read as '_'
        (NewTopic("bad name", 1, 1), KafkaError.TOPIC_EXCEPTION),
        (NewTopic(".", 1, 1), KafkaError.TOPIC_EXCEPTION),
        (NewTopic("..", 1, 1), KafkaError.TOPIC_EXCEPTION),
        (NewTopic("x" * 250, 1, 1), KafkaError.TOPIC_EXCEPTION),  # at most 249 characters
        (NewTopic("zero", 0, 1), KafkaError.INVALID_PARTITIONS),
        (NewTopic("rf", 1, 2), KafkaError.INVALID_REPLICATION_FACTOR),
        (NewTopic("gz", 1, 1, config={"compression.type": "gzip"}), KafkaError.INVALID_CONFIG),
        (NewTopic("unknown-key", 1, 1, config={"no.such.config": "1"}), KafkaError.INVALID_CONFIG),
        (NewTopic("bad-value", 1, 1, config={"retention.ms": "soon"}), KafkaError.INVALID_CONFIG),
    ]
    for topic, code in cases:
        error = refusal(one(admin.create_topics([topic])))
        assert error.code() == code, (topic.topic, error)
    # The message names the key.
    for config in ({"compression.type": "gzip"}, {"no.such.config": "1"}, {"retention.ms": "soon"}):
        error = refusal(one(admin.create_topics([NewTopic("named", 1, 1, config=config)])))
        assert next(iter(config)) in error.str(), error
    # compression.type=producer is the one accepted value.
    one(admin.create_topics([NewTopic("producer-compression", 1, 1, config={"compression.type": "producer"})],
                            validate_only=True)).result(timeout=10)
    assert set(admin.list_topics(timeout=10).topics) == {"a.b"}


def test_broker_configs_change_live_and_read_only_ones_are_refused(broker):
    """A dynamic broker message.max.bytes reaches an existing topic at once; a read-only broker setting is refused."""
    admin = AdminClient({"bootstrap.servers": broker})
    one(admin.create_topics([NewTopic("ck-live", 1, 1)])).result(timeout=10)
    node = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("message.max.bytes", "2000", incremental_operation=AlterConfigOpType.SET)])
    one(admin.incremental_alter_configs([node])).result(timeout=10)
    described = one(admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")])).result(timeout=10)
    assert described["message.max.bytes"].value == "2000"
    assert source(described["message.max.bytes"]) == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert described["num.partitions"].is_read_only
    # The existing topic's max.message.bytes follows the broker's at once.
    topic = configs(admin, "ck-live")["max.message.bytes"]
    assert topic.value == "2000" and source(topic) == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 0})
    errors = []
    producer.produce("ck-live", value=b"z" * 5000, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]

    read_only = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])
    error = refusal(one(admin.incremental_alter_configs([read_only])))
    assert error.code() == KafkaError.INVALID_CONFIG and "num.partitions" in error.str()
