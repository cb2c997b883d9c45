"""A real network partition of a cluster (netns.py): three logbroker-server processes, each in its own network
namespace, over one etcd; nftables inside one node's namespace cuts it off from etcd and the other nodes while the
tests' clients still reach it, as a switch port failing between racks would.

The active controller cut off this way cannot keep its lease alive: another node's controller wins the election
within the lease TTL, the cut-off node's broker is fenced once its session lapses (its heartbeats no longer arrive;
no connection closes), and the cut-off node's own controller steps down. Healed, the node is unfenced again and its
controller stands by.

Figures printed (pytest -s): how long the election and the fencing took after the cut."""
import time

from cluster import cluster, wait_until  # noqa: F401
from test_broker_lifecycle import brokers, unfenced

SESSION_MS = 6000
LIFECYCLE = f"broker.session.timeout.ms={SESSION_MS}\nbroker.heartbeat.interval.ms=1000\n"


def test_an_active_controller_cut_off_by_a_partition_is_replaced_and_fenced_and_rejoins_when_healed(cluster):  # noqa: F811
    nodes = cluster(["broker,controller"] * 3, partitionable=True, properties=LIFECYCLE)
    network = nodes.network
    wait_until(lambda: unfenced(nodes.store, [1, 2, 3]), 60, lambda: f"not unfenced: {brokers(nodes.store)}")
    cut, before = nodes.active_controller()
    ttl = nodes.store.lease_ttl(before["lease"])
    others = [node for node in nodes.nodes if node is not cut]

    cut_at = time.monotonic()
    network.isolate(cut.node_id, [network.service_address] + [network.address(node.node_id) for node in others])
    try:
        new, after = nodes.active_controller(timeout=ttl + 30, other_than=cut.node_id)
        elected = time.monotonic() - cut_at
        assert new in others and after["epoch"] > before["epoch"]
        wait_until(lambda: brokers(nodes.store)[cut.node_id]["fenced"], ttl + SESSION_MS / 1000 + 30,
                   f"the cut-off broker {cut.node_id} was not fenced")
        fenced = time.monotonic() - cut_at
        print(f"partition: controller {cut.node_id} cut off; node {new.node_id} elected after {elected:.2f} s "
              f"(lease TTL {ttl} s); the cut-off broker fenced after {fenced:.2f} s (session {SESSION_MS} ms)")
        # The other two brokers stay unfenced throughout.
        assert unfenced(nodes.store, [node.node_id for node in others])
        # On its side of the cut, the old controller finds its lease gone and ends its term; it writes nothing.
        line = cut.wait_for_log(r".*This process is no longer the active controller.*", timeout=ttl + 60).group(0)
        assert f"controller.epoch={before['epoch']}" in line, line
        assert nodes.store.controller()["node"] == new.node_id
        fenced_registration = brokers(nodes.store)[cut.node_id]
    finally:
        network.heal(cut.node_id)

    # Healed, the node's heartbeats arrive again and the new controller unfences it, as KRaft does a broker fenced
    # for silence (same incarnation, same broker epoch: the process never restarted); its controller stands by.
    wait_until(lambda: unfenced(nodes.store, [1, 2, 3]), SESSION_MS / 1000 + 60,
               lambda: f"not unfenced after healing: {brokers(nodes.store)}")
    registration = brokers(nodes.store)[cut.node_id]
    assert registration["incarnation"] == fenced_registration["incarnation"]
    assert nodes.store.controller()["node"] == new.node_id
    assert "Standing by: another controller is active" in cut.log()
