"""Consumer groups with real clients: confluent-kafka consumers share a topic exactly once, a leaving member's
partitions move, kafka-python and Debian's kcat -G join groups, committed offsets are where consumers resume, also
after a broker restart, and `__consumer_offsets` holds them in Kafka's layouts (as Burrow reads them)."""
import struct
import subprocess
import time

import kafka
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import free_port

PROPERTIES = "group.initial.rebalance.delay.ms=0\n"


def create(address, topic, partitions):
    admin = AdminClient({"bootstrap.servers": address})
    next(iter(admin.create_topics([NewTopic(topic, partitions, 1)]).values())).result(timeout=10)


def produce(address, topic, count, start=0):
    producer = Producer({"bootstrap.servers": address})
    for index in range(start, start + count):
        producer.produce(topic, key=b"k%d" % index, value=b"%d" % index)
    assert producer.flush(30) == 0


def consumer(address, group):
    return Consumer({"bootstrap.servers": address, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})


def wait_for_assignment(consumers, sizes, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for member in consumers:
            member.poll(0.1)
        if sorted(len(member.assignment()) for member in consumers) == sorted(sizes):
            return
    raise AssertionError(f"assignment {[len(m.assignment()) for m in consumers]}, wanted {sizes}")


def consume(consumers, count, timeout=30):
    seen = []
    deadline = time.time() + timeout
    while len(seen) < count and time.time() < deadline:
        for member in consumers:
            message = member.poll(0.05)
            if message is not None and message.error() is None:
                seen.append(int(message.value()))
                member.commit(message=message, asynchronous=False)
    return seen


def test_three_consumers_share_a_topic_exactly_once_and_a_leavers_partitions_move(make_broker):
    broker = make_broker(PROPERTIES)
    create(broker.address, "shared", 6)
    members = [consumer(broker.address, "readers") for _ in range(3)]
    for member in members:
        member.subscribe(["shared"])
    wait_for_assignment(members, [2, 2, 2])
    assigned = sorted(p.partition for member in members for p in member.assignment())
    assert assigned == list(range(6))

    produce(broker.address, "shared", 3000)
    seen = consume(members, 3000)
    assert sorted(seen) == list(range(3000)), "every record exactly once across the group"

    # One member leaves in order: the other two take its partitions and read what comes next.
    members.pop().close()
    wait_for_assignment(members, [3, 3])
    produce(broker.address, "shared", 600, start=3000)
    assert sorted(consume(members, 600)) == list(range(3000, 3600))
    for member in members:
        member.close()

    # The committed offsets are where a new member of the group resumes.
    check = consumer(broker.address, "readers")
    committed = check.committed([TopicPartition("shared", p) for p in range(6)], timeout=10)
    assert sum(tp.offset for tp in committed) == 3600
    check.close()


def test_kafka_python_and_kcat_join_groups(make_broker):
    broker = make_broker(PROPERTIES)
    create(broker.address, "joined", 3)
    produce(broker.address, "joined", 300)

    reader = kafka.KafkaConsumer("joined", bootstrap_servers=broker.address, group_id="kp-group",
                                 auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10000)
    values = sorted(int(record.value) for record in reader)
    reader.commit()
    reader.close()
    assert values == list(range(300))

    kcat = subprocess.run(["kcat", "-b", broker.address, "-G", "kcat-group", "joined", "-o", "beginning", "-c", "300",
                           "-q", "-X", "topic.auto.offset.reset=earliest"],
                          capture_output=True, timeout=60)
    assert kcat.returncode == 0, kcat.stderr
    assert sorted(int(line) for line in kcat.stdout.split()) == list(range(300))


def test_a_group_resumes_from_its_committed_offsets_after_a_restart(make_broker):
    broker = make_broker(PROPERTIES)
    create(broker.address, "durable", 2)
    member = consumer(broker.address, "resumers")
    member.subscribe(["durable"])
    wait_for_assignment([member], [2])
    produce(broker.address, "durable", 100)
    first = consume([member], 60)
    assert len(first) >= 60
    before = [tp.offset for tp in member.committed([TopicPartition("durable", p) for p in range(2)], timeout=10)]
    member.close()
    assert sum(before) >= 60
    broker.stop()
    broker.start()
    check = consumer(broker.address, "resumers")
    after = [tp.offset for tp in check.committed([TopicPartition("durable", p) for p in range(2)], timeout=10)]
    # The group resumes where it was: the rest of the records, none again.
    check.subscribe(["durable"])
    rest = consume([check], 100 - sum(before))
    check.close()
    assert after == before
    assert sorted(rest) == sorted(set(range(100)) - set(first))


def test_a_stable_group_goes_on_without_a_rebalance_across_a_broker_restart(make_broker):
    """The group's state is in __consumer_offsets (GroupMetadataValue): after a SIGKILL and a restart on the same
    port the coordinator has the generation, members and assignments back, so the members' heartbeats are accepted
    and nobody rejoins."""
    broker = make_broker(PROPERTIES, port=free_port())
    create(broker.address, "steady", 4)
    events = []
    members = [Consumer({"bootstrap.servers": broker.address, "group.id": "steady-group", "session.timeout.ms": 30000,
                         "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest", "enable.auto.commit": False})
               for _ in range(2)]
    for index, member in enumerate(members):
        member.subscribe(["steady"], on_assign=lambda c, parts, i=index: events.append(("assign", i)),
                         on_revoke=lambda c, parts, i=index: events.append(("revoke", i)))
    wait_for_assignment(members, [2, 2])
    produce(broker.address, "steady", 100)
    assert sorted(consume(members, 100)) == list(range(100))
    assignment = [sorted(p.partition for p in member.assignment()) for member in members]
    settled = list(events)

    broker.kill()
    broker.start()
    # Several heartbeat intervals with the restarted broker; then the group reads on as before.
    produce(broker.address, "steady", 100, start=100)
    assert sorted(consume(members, 100, timeout=60)) == list(range(100, 200))
    assert events == settled, f"no rebalance: {events[len(settled):]}"
    assert [sorted(p.partition for p in member.assignment()) for member in members] == assignment
    for member in members:
        member.close()


def decode_string(data, at):
    (length,) = struct.unpack_from(">h", data, at)
    return data[at + 2:at + 2 + length].decode(), at + 2 + length


def decode_bytes(data, at):
    (length,) = struct.unpack_from(">i", data, at)
    return data[at + 4:at + 4 + max(length, 0)], at + 4 + max(length, 0)


def decode_group_metadata(value):
    """GroupMetadataValue v3: protocol type, generation, protocol, leader, state timestamp, then members (member
    id, instance id, client id, client host, rebalance timeout, session timeout, subscription, assignment)."""
    (version,) = struct.unpack_from(">h", value, 0)
    protocol_type, at = decode_string(value, 2)
    (generation,) = struct.unpack_from(">i", value, at)
    protocol, at = decode_string(value, at + 4)
    leader, at = decode_string(value, at)
    (timestamp, count) = struct.unpack_from(">qi", value, at)
    at += 12
    members = []
    for _ in range(count):
        member_id, at = decode_string(value, at)
        (instance_length,) = struct.unpack_from(">h", value, at)
        instance_id, at = (None, at + 2) if instance_length < 0 else decode_string(value, at)
        client_id, at = decode_string(value, at)
        client_host, at = decode_string(value, at)
        (rebalance_timeout, session_timeout) = struct.unpack_from(">ii", value, at)
        subscription, at = decode_bytes(value, at + 8)
        assignment, at = decode_bytes(value, at)
        members.append((member_id, client_id, session_timeout, len(assignment) > 0))
    return version, protocol_type, generation, protocol, leader, timestamp > 0, members


def test_consumer_offsets_holds_commits_in_kafkas_layouts(make_broker):
    """A decoder written here from Kafka's layouts (key v1: group, topic, partition; value v3: offset, leader
    epoch, metadata, commit timestamp; key v2: group; GroupMetadataValue v3), independent of the broker's code,
    finds the committed offsets and the group's members."""
    broker = make_broker(PROPERTIES)
    create(broker.address, "watched", 1)
    produce(broker.address, "watched", 10)
    member = Consumer({"bootstrap.servers": broker.address, "group.id": "burrow-watched", "enable.auto.commit": False})
    member.assign([TopicPartition("watched", 0, 0)])
    member.commit(offsets=[TopicPartition("watched", 0, 7)], asynchronous=False)
    member.close()
    subscriber = Consumer({"bootstrap.servers": broker.address, "group.id": "burrow-members", "client.id": "watcher",
                           "session.timeout.ms": 12000})
    subscriber.subscribe(["watched"])
    wait_for_assignment([subscriber], [1])

    reader = kafka.KafkaConsumer(bootstrap_servers=broker.address, auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=5000, group_id=None)
    partitions = reader.partitions_for_topic("__consumer_offsets")
    assert partitions and len(partitions) == 50
    reader.assign([kafka.TopicPartition("__consumer_offsets", p) for p in partitions])
    reader.seek_to_beginning()
    found = []
    groups = []
    for record in reader:
        (key_version,) = struct.unpack_from(">h", record.key, 0)
        if key_version == 2 and record.value is not None:
            groups.append((decode_string(record.key, 2)[0],) + decode_group_metadata(record.value))
        if key_version not in (0, 1):
            continue
        group, at = decode_string(record.key, 2)
        topic, at = decode_string(record.key, at)
        (partition,) = struct.unpack_from(">i", record.key, at)
        (value_version, offset, leader_epoch) = struct.unpack_from(">hqi", record.value, 0)
        metadata, at = decode_string(record.value, 14)
        (commit_timestamp,) = struct.unpack_from(">q", record.value, at)
        found.append((value_version, group, topic, partition, offset, metadata, commit_timestamp > 0))
    reader.close()
    subscriber.close()
    assert (3, "burrow-watched", "watched", 0, 7, "", True) in found
    kept = [g for g in groups if g[0] == "burrow-members"]
    assert kept, f"no group record for burrow-members among {[g[0] for g in groups]}"
    name, version, protocol_type, generation, protocol, leader, stamped, members = kept[-1]
    assert (version, protocol_type, protocol, stamped) == (3, "consumer", "range", True) and generation >= 1
    assert members == [(leader, "watcher", 12000, True)], "the leader, with its client id, timeout and assignment"


def test_groups_are_listed_described_and_deleted_with_admin_clients(make_broker):
    from confluent_kafka import ConsumerGroupState
    broker = make_broker(PROPERTIES)
    create(broker.address, "admin-groups", 2)
    member = consumer(broker.address, "described")
    member.subscribe(["admin-groups"])
    wait_for_assignment([member], [2])
    produce(broker.address, "admin-groups", 10)
    consume([member], 10)

    admin = AdminClient({"bootstrap.servers": broker.address})
    listed = admin.list_consumer_groups().result(timeout=10)
    assert [(g.group_id, g.state) for g in listed.valid] == [("described", ConsumerGroupState.STABLE)]
    described = next(iter(admin.describe_consumer_groups(["described"]).values())).result(timeout=10)
    assert described.state == ConsumerGroupState.STABLE and described.partition_assignor == "range"
    assert len(described.members) == 1
    assert sorted(p.partition for p in described.members[0].assignment.topic_partitions) == [0, 1]

    # A group with members cannot be deleted; once it is empty it can, offsets and all.
    busy = next(iter(admin.delete_consumer_groups(["described"]).values()))
    try:
        busy.result(timeout=10)
        assert False, "deleting a group with members must fail"
    except Exception as error:
        assert "NON_EMPTY_GROUP" in str(error) or "not empty" in str(error).lower()
    member.close()
    deadline = time.time() + 10
    while admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(timeout=10).valid == [] \
            and time.time() < deadline:
        time.sleep(0.1)
    next(iter(admin.delete_consumer_groups(["described"]).values())).result(timeout=10)
    assert admin.list_consumer_groups().result(timeout=10).valid == []

    # kafka-python sees the same through ListGroups and DescribeGroups.
    from kafka.admin import KafkaAdminClient
    other = consumer(broker.address, "kp-listed")
    other.subscribe(["admin-groups"])
    wait_for_assignment([other], [2])
    kp = KafkaAdminClient(bootstrap_servers=broker.address)
    groups = kp.list_groups()
    assert [g["group_id"] if isinstance(g, dict) else g[0] for g in groups] == ["kp-listed"]
    other.close()
    kp.close()


MEMBER_SCRIPT = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "survivors", "session.timeout.ms": 6000,
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe(["crash"])
while True:
    m = c.poll(0.1)
    if c.assignment():
        print("assigned", flush=True)
"""


def test_a_killed_member_is_replaced_after_its_session_timeout(make_broker):
    broker = make_broker(PROPERTIES)
    create(broker.address, "crash", 4)
    victim = subprocess.Popen(["python3", "-c", MEMBER_SCRIPT, broker.address], stdout=subprocess.PIPE)
    survivor = Consumer({"bootstrap.servers": broker.address, "group.id": "survivors", "session.timeout.ms": 6000,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    survivor.subscribe(["crash"])
    wait_for_assignment([survivor], [2])
    victim.kill()
    victim.wait()
    started = time.time()
    # After the victim's session times out, the survivor holds all four partitions and reads everything.
    wait_for_assignment([survivor], [4], timeout=30)
    assert time.time() - started < 20
    produce(broker.address, "crash", 200)
    assert sorted(consume([survivor], 200)) == list(range(200))
    survivor.close()


def test_cooperative_sticky_members_share_a_topic(make_broker):
    broker = make_broker(PROPERTIES)
    create(broker.address, "cooperative", 4)
    members = [Consumer({"bootstrap.servers": broker.address, "group.id": "coop", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "partition.assignment.strategy": "cooperative-sticky"})
               for _ in range(2)]
    for member in members:
        member.subscribe(["cooperative"])
    wait_for_assignment(members, [2, 2])
    produce(broker.address, "cooperative", 400)
    assert sorted(consume(members, 400)) == list(range(400))
    for member in members:
        member.close()


@pytest.mark.parametrize("static_leads", [False, True], ids=["follower", "leader"])
def test_a_static_member_restarting_within_its_session_timeout_causes_no_rebalance(make_broker, static_leads):
    """librdkafka sends JoinGroup v5 or lower: a restarted static leader is answered with its old member id as the
    leader, so it does not assign, and the group stays as it was (KIP-345 before KIP-814)."""
    broker = make_broker(PROPERTIES)
    create(broker.address, "static", 4)
    assignments = []

    def static_member():
        return Consumer({"bootstrap.servers": broker.address, "group.id": "statics", "group.instance.id": "worker-1",
                         "session.timeout.ms": 10000, "auto.offset.reset": "earliest", "enable.auto.commit": False})

    other = consumer(broker.address, "statics")
    first = static_member()
    # The first to join leads.
    joiners = [first, other] if static_leads else [other, first]
    joiners[0].subscribe(["static"])
    wait_for_assignment([joiners[0]], [4])
    other.subscribe(["static"], on_assign=lambda c, parts: assignments.append(sorted(p.partition for p in parts)))
    first.subscribe(["static"])
    wait_for_assignment([other, first], [2, 2])
    kept = sorted(p.partition for p in first.assignment())
    rebalances = len(assignments)
    # A static member leaves no LeaveGroup behind; its replacement comes back within the session timeout.
    first.close()
    second = static_member()
    second.subscribe(["static"])
    wait_for_assignment([other, second], [2, 2], timeout=8)
    assert sorted(p.partition for p in second.assignment()) == kept, "the static member got its partitions back"
    for _ in range(20):
        other.poll(0.1)
    assert len(assignments) == rebalances, f"the other member was not rebalanced: {assignments}"
    # The group still works as one: records reach both members exactly once.
    produce(broker.address, "static", 200)
    assert sorted(consume([other, second], 200)) == list(range(200))
    second.close()
    other.close()
