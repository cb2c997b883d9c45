"""Several real logbroker-server processes as one cluster over a real etcd, for the cluster tests.

`Cluster(directory, roles)` starts an etcd (`etcd_server.EtcdServer`) and one `Node` per entry of `roles` ("broker",
"controller" or "broker,controller"), each from a generated server.properties with free loopback ports, its own log
directory and its own stderr file per run. A node is ready when it logged "LogBroker started" and each of its ports
answers ApiVersions; nothing waits a fixed time. Nodes can be killed (SIGKILL), paused (SIGSTOP) and resumed
(SIGCONT), stopped (SIGTERM) and started again on the same data and ports. The store is read through etcd's JSON
gateway: the election key (who is the active controller, its epoch and lease) and every key under the prefix with its
revisions.

Use the `cluster` fixture (import it into the test module: `from cluster import cluster  # noqa: F401`): it makes
clusters on demand and stops every node and etcd at the end of the test, passed or failed.
"""
import base64
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import free_port, read_frame, server_binary
from etcd_server import EtcdServer
from netns import Network

PREFIX = "/logbroker"

# Kafka error codes the tests name.
NONE = 0
NOT_CONTROLLER = 41

# API keys.
CREATE_TOPICS = 19
API_VERSIONS = 18
INCREMENTAL_ALTER_CONFIGS = 44


def wait_until(condition, timeout, message):
    """Polls `condition` until it returns something true (returned) or `timeout` seconds pass (the test fails with
    `message`, a string or a function giving one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(message() if callable(message) else message)
        time.sleep(0.05)


# MARK: Kafka requests on a raw socket (the controller listener serves no Metadata, so client libraries cannot
# bootstrap there).

def _string(text):
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def request_frame(api_key, version, correlation_id, body):
    """One request frame: size, header v1 (key, version, correlation id, client id), then `body`."""
    header = struct.pack(">hhi", api_key, version, correlation_id) + _string("logbroker-cluster-tests")
    return struct.pack(">i", len(header) + len(body)) + header + body


class KafkaReader:
    """Reads the fields of one response body, big-endian, as Kafka's non-flexible versions lay them out."""

    def __init__(self, data):
        self.data, self.position = data, 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.position)
        self.position += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self):
        length = self.take(">h")
        if length < 0:
            return None
        value = self.data[self.position:self.position + length].decode()
        self.position += length
        return value


def send(address, api_key, version, body, timeout=30):
    """Sends one request to `address` ("host:port") and returns the response body after its correlation id, or
    None when the connection closes without an answer."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request_frame(api_key, version, 7, body))
        frame = read_frame(sock)
    if frame is None:
        return None
    assert struct.unpack_from(">i", frame)[0] == 7, "the response answers another request"
    return frame[4:]


def api_versions(address, timeout=5):
    """The API keys `address` advertises (ApiVersions v0), or None when it does not answer."""
    try:
        body = send(address, API_VERSIONS, 0, b"", timeout=timeout)
    except OSError:
        return None
    if body is None:
        return None
    reader = KafkaReader(body)
    assert reader.take(">h") == NONE
    keys = set()
    for _ in range(reader.take(">i")):
        keys.add(reader.take(">h"))
        reader.take(">hh")  # min and max version
    return keys


def create_topic_request(name, partitions, replication_factor):
    """A CreateTopics v4 body for one topic."""
    return (struct.pack(">i", 1) + _string(name) + struct.pack(">ihii", partitions, replication_factor, 0, 0)
            + struct.pack(">i?", 30_000, False))


def read_create_topic_answer(body):
    """(error code, message) of the one topic of a CreateTopics v4 answer."""
    reader = KafkaReader(body)
    reader.take(">i")  # throttle time
    assert reader.take(">i") == 1
    reader.string()
    return reader.take(">h"), reader.string()


def create_topic(address, name, partitions=1, replication_factor=1):
    """CreateTopics v4 for one topic on `address`: (error code, message)."""
    body = send(address, CREATE_TOPICS, 4, create_topic_request(name, partitions, replication_factor))
    assert body is not None, f"{address} closed the connection on CreateTopics"
    return read_create_topic_answer(body)


def alter_cluster_config_request(name, value):
    """An IncrementalAlterConfigs v0 body that SETs `name` to `value` in the cluster-wide broker default (BROKER
    resource "")."""
    return (struct.pack(">ib", 1, 4) + _string("") + struct.pack(">i", 1) + _string(name) + struct.pack(">b", 0)
            + _string(value) + struct.pack(">?", False))


def read_alter_config_answer(body):
    """(error code, message) of the one resource of an IncrementalAlterConfigs v0 answer."""
    reader = KafkaReader(body)
    reader.take(">i")  # throttle time
    assert reader.take(">i") == 1
    return reader.take(">h"), reader.string()


def alter_cluster_config(address, name, value):
    body = send(address, INCREMENTAL_ALTER_CONFIGS, 0, alter_cluster_config_request(name, value))
    assert body is not None, f"{address} closed the connection on IncrementalAlterConfigs"
    return read_alter_config_answer(body)


# MARK: The store

def _b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def decode_controller(value):
    """The election key's value: (node id, (listener, host, port) or None)."""
    version, node_id, has_endpoint = struct.unpack_from(">BiB", value)
    assert version == 1, f"election key format {version}"
    if not has_endpoint:
        return node_id, None
    position = 6
    fields = []
    for _ in range(2):
        (length,) = struct.unpack_from(">I", value, position)
        fields.append(value[position + 4:position + 4 + length].decode())
        position += 4 + length
    (port,) = struct.unpack_from(">i", value, position)
    return node_id, (fields[0], fields[1], port)


class Store:
    """The cluster's keys in etcd, read through its JSON gateway."""

    def __init__(self, etcd, prefix=PREFIX):
        self.etcd, self.prefix = etcd, prefix

    def key(self, key):
        return f"{self.prefix}/{key}"

    def entry(self, key):
        """The etcd entry of `key` (under the prefix) as a dict with bytes `value` and int revisions, or None."""
        kvs = self.etcd.call("/v3/kv/range", {"key": _b64(self.key(key))}).get("kvs", [])
        return _entry(kvs[0]) if kvs else None

    def entry_at(self, key, revision):
        """The entry of `key` as it was at store revision `revision`, or None when it did not exist then."""
        answer = self.etcd.call("/v3/kv/range", {"key": _b64(self.key(key)), "revision": revision})
        kvs = answer.get("kvs", [])
        return _entry(kvs[0]) if kvs else None

    def entries(self):
        """Every key under the prefix (without it) -> its entry."""
        start = (self.prefix + "/").encode()
        end = bytearray(start)
        end[-1] += 1
        answer = self.etcd.call("/v3/kv/range", {"key": _b64(start), "range_end": _b64(bytes(end))})
        return {base64.b64decode(kv["key"]).decode()[len(start):]: _entry(kv) for kv in answer.get("kvs", [])}

    def revision(self):
        """etcd's current revision."""
        return int(self.etcd.call("/v3/kv/range", {"key": _b64(self.key("cluster/id"))})["header"]["revision"])

    def controller(self):
        """The active controller from the election key: dict(node, endpoint, epoch, lease), or None."""
        entry = self.entry("controller")
        if entry is None:
            return None
        node, endpoint = decode_controller(entry["value"])
        return {"node": node, "endpoint": endpoint, "epoch": entry["create_revision"], "lease": entry["lease"]}

    def lease_ttl(self, lease):
        """The TTL a lease was granted with, in seconds."""
        return int(self.etcd.call("/v3/lease/timetolive", {"ID": lease})["grantedTTL"])


def _entry(kv):
    return {
        "value": base64.b64decode(kv.get("value", "")),
        "create_revision": int(kv.get("create_revision", 0)),
        "mod_revision": int(kv.get("mod_revision", 0)),
        "lease": int(kv.get("lease", 0)),
    }


# MARK: Processes

class Node:
    """One logbroker-server of a cluster: `node_id`, `roles`, a PLAINTEXT port with the broker role and a
    CONTROLLER port with the controller role, on `host`, in `directory` (server.properties, logs/,
    server-<run>.log). `exec_prefix` goes in front of its command (to run it in a network namespace)."""

    def __init__(self, directory, node_id, roles, etcd_endpoint, prefix=PREFIX, properties="", host="127.0.0.1",
                 exec_prefix=()):
        self.directory, self.node_id, self.roles = directory, node_id, roles
        self.host, self.exec_prefix = host, list(exec_prefix)
        directory.mkdir(parents=True, exist_ok=True)
        self.client_port = free_port() if "broker" in roles else None
        self.controller_port = free_port() if "controller" in roles else None
        listeners = []
        if self.client_port:
            listeners.append(f"PLAINTEXT://{host}:{self.client_port}")
        if self.controller_port:
            listeners.append(f"CONTROLLER://{host}:{self.controller_port}")
        self.log_dir = directory / "logs"
        self.config = directory / "server.properties"
        self.config.write_text(
            f"node.id={node_id}\nprocess.roles={roles}\nlisteners={','.join(listeners)}\n"
            "controller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
            f"metadata.store=etcd\nmetadata.etcd.endpoints={etcd_endpoint}\nmetadata.etcd.prefix={prefix}\n"
            f"log.dirs={self.log_dir}\n{properties}"
        )
        self.process = None
        self.paused = False
        self.runs = 0

    def __repr__(self):
        return f"node {self.node_id} ({self.roles})"

    @property
    def bootstrap(self):
        """host:port of the client listener."""
        return f"{self.host}:{self.client_port}"

    @property
    def controller_address(self):
        """host:port of the controller listener."""
        return f"{self.host}:{self.controller_port}"

    @property
    def log_path(self):
        return self.directory / f"server-{self.runs}.log"

    def log(self):
        """The current run's stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def launch(self):
        """Starts the process; `wait_ready` waits for it."""
        assert self.process is None, f"{self} is running"
        self.runs += 1
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([*self.exec_prefix, server_binary(), str(self.config)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        self.paused = False

    def ready(self):
        """Whether it logged "LogBroker started" and every port answers ApiVersions; fails the test if it exited."""
        if self.process.poll() is not None:
            pytest.fail(f"{self} exited with status {self.process.returncode}:\n{self.log()}")
        if "LogBroker started" not in self.log():
            return False
        addresses = [a for a, port in ((self.bootstrap, self.client_port),
                                       (self.controller_address, self.controller_port)) if port]
        return all(api_versions(address, timeout=2) for address in addresses)

    def wait_ready(self, timeout=60):
        wait_until(self.ready, timeout, lambda: f"{self} did not start within {timeout} s:\n{self.log()}")

    def start(self, timeout=60):
        self.launch()
        self.wait_ready(timeout)

    def wait_for_log(self, pattern, timeout=30):
        """The first match of the regex `pattern` in the current run's log, once it appears."""
        return wait_until(lambda: re.search(pattern, self.log()), timeout,
                          lambda: f"{self} did not log /{pattern}/ within {timeout} s:\n{self.log()}")

    def kill(self):
        """SIGKILL, as a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def pause(self):
        """SIGSTOP: the process stops where it is (no keep-alives, no answers), as on a long GC pause or a frozen
        VM."""
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout=30):
        """SIGTERM (resumed first if paused); SIGKILL when it has not exited within `timeout`. Returns the exit
        status (negative for a signal)."""
        if self.process is None:
            return None
        if self.paused:
            self.resume()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self.process = None
        return status

    def restart(self, timeout=60):
        """Stops it if running (SIGTERM), then starts it again on the same data and ports."""
        self.stop()
        self.start(timeout)


class Cluster:
    """An etcd and one `Node` per entry of `roles`, node ids 1, 2, ... in `directory`. `start()` launches every
    node at once (a broker-only node waits for a controller to create the cluster), then waits for each.

    With `network` (a `netns.Network` with a namespace per node, created), each node runs in its own namespace at
    its own address and etcd listens on the network's service address, so `network.isolate` can cut them apart;
    otherwise everything is on 127.0.0.1."""

    def __init__(self, directory, roles, prefix=PREFIX, properties="", network=None):
        self.network = network
        self.etcd = EtcdServer(host=network.service_address) if network else EtcdServer()
        self.store = Store(self.etcd, prefix)
        self.nodes = []
        for node_id, role in enumerate(roles, start=1):
            placement = dict(host=network.address(node_id), exec_prefix=network.exec_prefix(node_id)) if network else {}
            self.nodes.append(Node(directory / f"node{node_id}", node_id, role, self.etcd.endpoint, prefix,
                                   properties, **placement))

    def start(self, timeout=90):
        self.etcd.start()
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready(timeout)
        return self

    def node(self, node_id):
        return next(node for node in self.nodes if node.node_id == node_id)

    def controllers(self):
        return [node for node in self.nodes if "controller" in node.roles]

    def brokers(self):
        return [node for node in self.nodes if "broker" in node.roles]

    def active_controller(self, timeout=30, other_than=None):
        """The node the election key names, once it names one (other than `other_than`'s node id), with the key's
        dict (`Store.controller`)."""
        def named():
            controller = self.store.controller()
            if controller is None or controller["node"] == other_than:
                return None
            return controller
        controller = wait_until(named, timeout, lambda: f"no active controller in the store within {timeout} s:\n"
                                + "\n".join(f"--- {node}\n{node.log()}" for node in self.controllers()))
        return self.node(controller["node"]), controller

    def stop(self):
        """Every node (SIGTERM, SIGKILL if it hangs), brokers before controllers (a broker's controlled shutdown
        needs a controller to answer), then etcd. Returns {node id: exit status}."""
        statuses = {}
        for node in sorted(self.nodes, key=lambda node: "controller" in node.roles):
            statuses[node.node_id] = node.stop()
        self.etcd.stop()
        return statuses


@pytest.fixture
def cluster(tmp_path):
    """A factory: cluster(roles, prefix=..., properties=..., partitionable=False) starts a `Cluster` and returns it
    (with `partitionable`, on a `netns.Network` of its own: `cluster.network`); every cluster it made is stopped,
    and every network removed, at the end of the test, passed or failed."""
    made = []

    def make(roles, partitionable=False, **options):
        network = Network(len(roles)) if partitionable else None
        made.append((Cluster(tmp_path / f"cluster-{len(made)}", roles, network=network, **options), network))
        if network:
            network.create()
        return made[-1][0].start()

    yield make
    for each, network in made:
        each.stop()
        if network:
            network.destroy()
