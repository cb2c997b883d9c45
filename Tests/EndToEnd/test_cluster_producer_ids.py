"""Producer ids in a cluster come from the active controller in blocks (AllocateProducerIds, recorded in the image
before use), so no two brokers ever hand out the same id, across a controller failover too: real
logbroker-server processes over a real etcd (cluster.py), asked InitProducerId on raw sockets."""
import socket
import struct

from cluster import NONE, cluster, request_frame  # noqa: F401
from conftest import read_frame

INIT_PRODUCER_ID = 22
CALLS = 10_000


class Connection:
    """One socket to a broker's client listener, asking InitProducerId v0 (no transactional id)."""

    def __init__(self, node):
        self.node = node
        host, port = node.bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.correlation = 0

    def init_producer_id(self):
        """(error code, producer id, epoch)."""
        self.correlation += 1
        self.sock.sendall(request_frame(INIT_PRODUCER_ID, 0, self.correlation, struct.pack(">hi", -1, 60_000)))
        frame = read_frame(self.sock)
        assert frame is not None, f"{self.node} closed the connection"
        correlation, _, error, producer_id, epoch = struct.unpack(">iihqh", frame)
        assert correlation == self.correlation
        return error, producer_id, epoch

    def close(self):
        self.sock.close()


def test_ten_thousand_producer_ids_from_three_brokers_and_a_controller_failover_are_all_distinct(cluster):  # noqa: F811
    nodes = cluster(["broker,controller"] * 3)
    connections = [Connection(node) for node in nodes.nodes]
    seen = {}

    def ask(count, among):
        for index in range(count):
            connection = among[index % len(among)]
            error, producer_id, epoch = connection.init_producer_id()
            assert error == NONE, f"InitProducerId on {connection.node}: error {error}"
            assert epoch == 0
            assert producer_id not in seen, (f"producer id {producer_id} from {connection.node} was handed out "
                                             f"before by {seen[producer_id]}")
            seen[producer_id] = connection.node

    ask(CALLS // 2, connections)
    # The active controller goes (SIGKILL); the other brokers ask the new one for their next blocks.
    old, _ = nodes.active_controller()
    old.kill()
    survivors = [connection for connection in connections if connection.node is not old]
    nodes.active_controller(timeout=60, other_than=old.node_id)
    ask(CALLS // 2, survivors)
    # Restarted on its data, the old controller's broker gets a block of its own too.
    old.start()
    restarted = Connection(old)
    ask(100, [restarted])
    for connection in [*survivors, restarted]:
        connection.close()

    assert len(seen) == CALLS + 100
    # Every broker handed out ids (each took blocks of its own).
    assert {node.node_id for node in seen.values()} == {1, 2, 3}
