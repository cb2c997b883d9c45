"""Leader elections with real processes over a real etcd, as confluent-kafka's metadata shows them: a SIGKILLed
broker's leaderships move to the other in-sync replica within a second of the kill (its closed heartbeat connection
fences it), it leaves the ISRs, and its restart takes no leadership back (the partitions keep their leaders); a
broker stopped with SIGTERM has its leaderships moved before the controller lets it stop, and exits long before its
session timeout."""
import time

from cluster import cluster, create_topic, wait_until  # noqa: F401

SESSION_MS = 6000
PROPERTIES = f"broker.heartbeat.interval.ms=500\nbroker.session.timeout.ms={SESSION_MS}\n"


def partitions(admin, topic):
    """{partition: (leader, replicas, isr)} as Metadata answers it, None while the topic is not there whole."""
    listed = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    if listed is None or listed.error is not None:
        return None
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in listed.partitions.values()}


def test_a_killed_brokers_leaderships_move_to_the_in_sync_replicas_and_stay_there(cluster):  # noqa: F811
    from confluent_kafka.admin import AdminClient

    nodes = cluster(["broker,controller", "broker", "broker"], properties=PROPERTIES)
    admin = AdminClient({"bootstrap.servers": nodes.node(1).bootstrap})
    wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 3, 30, "three brokers are not listed")
    error, message = create_topic(nodes.node(1).bootstrap, "failover", partitions=6, replication_factor=2)
    assert error == 0, message
    before = wait_until(lambda: (lambda seen: seen if seen and len(seen) == 6 else None)(partitions(admin, "failover")),
                        10, "the topic is not listed")
    led = {p for p, (leader, _, _) in before.items() if leader == 2}
    assert led, before

    killed = time.monotonic()
    nodes.node(2).kill()

    def moved():
        seen = partitions(admin, "failover")
        if seen is None or any(seen[p][0] == 2 or 2 in seen[p][2] for p in seen):
            return None
        return seen
    after = wait_until(moved, 10, lambda: f"leaders did not move: {partitions(admin, 'failover')}")
    elapsed = time.monotonic() - killed
    print(f"\nSIGKILL of a broker leading {len(led)} partitions: every one led by the other replica after "
          f"{elapsed:.3f} s")
    assert elapsed < 5, "a closed heartbeat connection fences at once, not after the session timeout"
    for partition, (leader, replicas, isr) in after.items():
        other = [replica for replica in before[partition][1] if replica != 2]
        if partition in led:
            assert leader == other[0] and isr == other, (partition, after[partition])
        else:
            assert leader == before[partition][0] and 2 not in isr, (partition, after[partition])

    # Its restart is unfenced and takes nothing back: the partitions keep their leaders.
    nodes.node(2).start()
    wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 3, 30, "broker 2 is not back")
    assert {p: leader for p, (leader, _, _) in partitions(admin, "failover").items()} == {
        p: leader for p, (leader, _, _) in after.items()}

    # SIGTERM on broker 3: the partitions it led whose ISR has another member are led by it when 3 has exited.
    current = partitions(admin, "failover")
    movable = {p for p, (leader, _, isr) in current.items() if leader == 3 and len(isr) > 1}
    stopped = time.monotonic()
    assert nodes.node(3).stop() == 0
    took = time.monotonic() - stopped
    assert "The controller agreed to a controlled shutdown" in nodes.node(3).log(), nodes.node(3).log()
    print(f"SIGTERM of a broker leading {len(movable)} movable partitions: exited after {took:.3f} s")
    assert took < SESSION_MS / 1000
    final = partitions(admin, "failover")
    for partition in movable:
        assert final[partition][0] != 3 and final[partition][0] in current[partition][2], final[partition]
    del admin
