"""Brokers following the metadata image through etcd's failures (issue: "etcd restarted under a running cluster,
and an etcd compaction past a broker's revision"): every broker keeps serving the image it has while etcd is gone,
says so in its log, then re-watches or reloads, and all of them converge to the same image. Convergence is
checked on what clients see: each broker's own Metadata answer (asked on a socket to that broker alone)."""
import struct

from cluster import NONE, KafkaReader, cluster, create_topic, send, wait_until  # noqa: F401

METADATA = 3
# The follower's line, or the etcd store's own when it resumes the watch itself.
UNREACHABLE = "Cannot follow the metadata store|etcd watch dropped; reconnecting"
RELOADED = "compacted past the image's revision; reading the whole image again"


def metadata(address):
    """The Metadata v1 answer of the broker at `address` for every topic: (brokers, controller id, topics), with
    brokers {id: (host, port, rack)} and topics {name: [(partition, leader, replicas, isr)]}; None when it does not
    answer."""
    try:
        body = send(address, METADATA, 1, struct.pack(">i", -1), timeout=10)
    except OSError:
        return None
    if body is None:
        return None
    reader = KafkaReader(body)
    brokers = {}
    for _ in range(reader.take(">i")):
        node = reader.take(">i")
        host, port, rack = reader.string(), reader.take(">i"), reader.string()
        brokers[node] = (host, port, rack)
    controller = reader.take(">i")
    topics = {}
    for _ in range(reader.take(">i")):
        reader.take(">h")  # error code
        name = reader.string()
        reader.take(">?")  # internal
        partitions = []
        for _ in range(reader.take(">i")):
            _, index, leader = reader.take(">hii")
            replicas = [reader.take(">i") for _ in range(reader.take(">i"))]
            isr = [reader.take(">i") for _ in range(reader.take(">i"))]
            partitions.append((index, leader, replicas, isr))
        topics[name] = sorted(partitions)
    return brokers, controller, topics


def converged(nodes, topics, all_brokers=True):
    """The one Metadata answer every node gives, once they all give the same one and it lists `topics` (and, with
    `all_brokers`, every node as a broker); else None."""
    answers = [metadata(node.bootstrap) for node in nodes]
    first = answers[0]
    if first is None or any(answer != first for answer in answers):
        return None
    brokers, _, listed = first
    if all_brokers and set(brokers) != {node.node_id for node in nodes}:
        return None
    return first if set(topics) <= set(listed) else None


def create(address, name, replication_factor=3):
    """CreateTopics of `name` (6 partitions) through `address`, retried while the cluster recovers."""
    wait_until(lambda: create_topic(address, name, partitions=6, replication_factor=replication_factor)[0] == NONE,
               60, f"CreateTopics of {name} through {address} was never accepted")


def test_brokers_serve_their_image_while_etcd_is_down_and_converge_after_its_restart(cluster):  # noqa: F811
    made = cluster(["broker,controller"] * 3)
    nodes = made.nodes
    create(nodes[0].bootstrap, "before")
    before = wait_until(lambda: converged(nodes, ["before"]), 30, "the brokers did not converge after creating")
    assert all(len(replicas) == 3 for _, _, replicas, _ in before[2]["before"])

    made.etcd.kill()
    for node in nodes:
        node.wait_for_log(UNREACHABLE, timeout=60)
    # Without etcd every broker still answers with the image it applied, unchanged.
    for node in nodes:
        assert metadata(node.bootstrap) == before, node

    made.etcd.start()
    create(nodes[1].bootstrap, "after")
    wait_until(lambda: converged(nodes, ["before", "after"]), 60,
               lambda: "the brokers did not converge after etcd's restart: "
               + repr([metadata(node.bootstrap) for node in nodes]))


def test_a_broker_behind_a_compaction_reads_the_whole_image_again_and_converges(cluster):  # noqa: F811
    made = cluster(["broker,controller"] * 3)
    nodes = made.nodes
    create(nodes[0].bootstrap, "first")
    wait_until(lambda: converged(nodes, ["first"]), 30, "the brokers did not converge after creating")
    active, _ = made.active_controller()
    behind = next(node for node in nodes if node is not active)
    others = [node for node in nodes if node is not behind]

    # The lagging broker is frozen and its watch cut (etcd restarted), the image moves on, and etcd forgets the
    # history it would need (compacted to the current revision): its watch must start again from its revision.
    # Replication factor 2: the frozen broker may be fenced meanwhile (its session lapses).
    behind.pause()
    made.etcd.kill()
    made.etcd.start()
    create(active.bootstrap, "second", replication_factor=2)
    create(active.bootstrap, "third", replication_factor=2)
    wait_until(lambda: converged(others, ["second", "third"], all_brokers=False), 30, "the others did not converge")
    made.etcd.call("/v3/kv/compaction", {"revision": made.store.revision(), "physical": True})
    behind.resume()

    behind.wait_for_log(RELOADED, timeout=60)
    wait_until(lambda: converged(nodes, ["first", "second", "third"]), 60,
               lambda: "the broker behind the compaction did not converge: "
               + repr([metadata(node.bootstrap) for node in nodes]))
