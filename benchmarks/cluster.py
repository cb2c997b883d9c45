"""A three-node cluster over one etcd (every node `broker,controller`), measured where a control plane is slow:
- creating CLUSTER_PARTITIONS partitions at replication factor 3 (topics of 100 partitions);
- image load on a restarted node: the "Read the metadata image" line's own duration (one range read and decode),
  and the time from the restart's spawn until "LogBroker started" (registered, caught up, unfenced);
- controller failover, CLUSTER_ROUNDS times: SIGKILL of the active controller's process until a standby logs that
  it is active, and until the first CreateTopics through a surviving broker is accepted. A SIGKILLed controller
  leaves its election key until its lease lapses (ActiveController.defaultLeaseTTLSeconds), so that TTL bounds the
  failover from below; the killed node is started again before the next round.
Prints one table; progress goes to stderr. Usage: cluster.py SERVER_BINARY."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings

from benchtools import log, median

# The end-to-end tests' etcd (Debian's etcd-server on free ports, a temporary data dir).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "EndToEnd"))
from etcd_server import EtcdServer, free_port  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from confluent_kafka.admin import AdminClient, NewTopic

PREFIX = "/logbroker-bench"


def controller_of(etcd):
    """The node id in the election key, or None while no controller holds it."""
    value = etcd.get(f"{PREFIX}/controller")
    return None if value is None else int.from_bytes(value[1:5], "big", signed=True)  # format version, node id


class Node:
    """One `broker,controller` process; its log is appended to across restarts."""

    def __init__(self, server, workdir, node_id, etcd):
        self.server, self.node_id = server, node_id
        self.port, self.controller_port = free_port(), free_port()
        directory = os.path.join(workdir, f"node{node_id}")
        os.makedirs(directory)
        self.config = os.path.join(directory, "server.properties")
        self.log_path = os.path.join(directory, "server.log")
        with open(self.config, "w") as out:
            out.write(f"node.id={node_id}\nprocess.roles=broker,controller\n"
                      f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}\n"
                      "controller.listener.names=CONTROLLER\n"
                      "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
                      f"metadata.store=etcd\nmetadata.etcd.endpoints={etcd.endpoint}\nmetadata.etcd.prefix={PREFIX}\n"
                      f"log.dirs={directory}/logs\n")
        self.process = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        """Spawns the process; returns the spawn time and the log offset its lines start at."""
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log_file = open(self.log_path, "a")
        spawned = time.monotonic()
        self.process = subprocess.Popen([self.server, self.config], stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        return spawned, offset

    def wait_for_line(self, pattern, offset, limit=300):
        """The first line matching `pattern` written after `offset`, and when it was seen."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                sys.exit(f"node {self.node_id} exited with {self.process.returncode}; see {self.log_path}")
            with open(self.log_path, errors="replace") as lines:
                lines.seek(offset)
                for line in lines:
                    if re.search(pattern, line):
                        return line, time.monotonic()
            time.sleep(0.01)
        sys.exit(f"node {self.node_id} logged no '{pattern}' within {limit} s; see {self.log_path}")

    def kill(self, sig):
        self.process.send_signal(sig)
        self.process.wait()
        self.process = None


def wait(condition, limit, failure):
    """The first truthy value of `condition`, polled until `limit` seconds passed (then exits with `failure`)."""
    deadline = time.monotonic() + limit
    while not (value := condition()):
        if time.monotonic() > deadline:
            sys.exit(failure)
        time.sleep(0.02)
    return value


def create(bootstrap, topics, partitions, replication):
    """Creates `topics` through `bootstrap`; True once every one was accepted."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, replication) for name in topics], request_timeout=30)
    try:
        for future in futures.values():
            future.result(timeout=30)
        return True
    except Exception as error:  # noqa: BLE001 - any refusal (NOT_CONTROLLER, timeout) means: not yet
        log(f"  create refused: {error}")
        return False


def seconds(duration):
    """A Swift Duration as the log prints it ("0.012345 seconds") in seconds."""
    return float(duration.split()[0])


def main():
    server = sys.argv[1]
    partitions = int(os.environ.get("CLUSTER_PARTITIONS", "3000"))
    rounds = int(os.environ.get("CLUSTER_ROUNDS", "3"))
    workdir = tempfile.mkdtemp(prefix="logbroker-cluster-")
    etcd = EtcdServer()
    etcd.start()
    nodes = [Node(server, workdir, node_id, etcd) for node_id in (1, 2, 3)]
    try:
        for node in nodes:
            node.offset = node.start()[1]
        for node in nodes:
            node.wait_for_line("LogBroker started", node.offset)
        log(f"cluster up; creating {partitions} partitions at RF 3")
        topics = [f"bench-{index}" for index in range(partitions // 100)]
        started = time.monotonic()
        wait(lambda: create(nodes[1].bootstrap, topics, 100, 3), 300, "the topics were not created")
        creation = time.monotonic() - started

        # A restarted node: the image read, and the whole start.
        restarted = nodes[2]
        restarted.kill(signal.SIGTERM)
        spawned, offset = restarted.start()
        line, _ = restarted.wait_for_line("Read the metadata image", offset)
        image_read = seconds(re.search(r"duration=([0-9.e-]+ seconds)", line).group(1))
        _, ready = restarted.wait_for_line("LogBroker started", offset)
        restart = ready - spawned

        active_times, create_times = [], []
        for round_number in range(rounds):
            active_id = controller_of(etcd)
            victim = next(node for node in nodes if node.node_id == active_id)
            survivors = [node for node in nodes if node is not victim]
            offsets = {node.node_id: os.path.getsize(node.log_path) for node in survivors}
            killed = time.monotonic()
            victim.kill(signal.SIGKILL)
            def successor():
                current = controller_of(etcd)
                return None if current in (None, active_id) else current

            new_id = wait(successor, 120, "no standby took over")
            new_active = next(node for node in survivors if node.node_id == new_id)
            _, became_active = new_active.wait_for_line("This process is the active controller", offsets[new_active.node_id])
            wait(lambda: create(survivors[0].bootstrap, [f"failover-{round_number}"], 1, 1), 120,
                 "CreateTopics was never accepted after the failover")
            accepted = time.monotonic()
            active_times.append(became_active - killed)
            create_times.append(accepted - killed)
            log(f"round {round_number + 1}: node {active_id} killed; node {new_id} active after "
                f"{became_active - killed:.2f} s, CreateTopics accepted after {accepted - killed:.2f} s")
            offset = victim.start()[1]
            victim.wait_for_line("LogBroker started", offset)

        print(f"| {partitions} partitions at RF 3 on 3 nodes | seconds |")
        print("|---|---|")
        print(f"| creating them (topics of 100, one request) | {creation:.2f} |")
        print(f"| restarted node: metadata image read | {image_read:.3f} |")
        print(f"| restarted node: spawn to \"LogBroker started\" | {restart:.2f} |")
        print(f"| failover: SIGKILL to a standby active (median of {rounds}; max) "
              f"| {median(active_times):.2f}; {max(active_times):.2f} |")
        print(f"| failover: SIGKILL to the first accepted CreateTopics (median; max) "
              f"| {median(create_times):.2f}; {max(create_times):.2f} |")
    finally:
        for node in nodes:
            if node.process is not None:
                node.kill(signal.SIGKILL)
        etcd.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
