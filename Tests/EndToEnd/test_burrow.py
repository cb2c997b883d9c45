"""Burrow 1.2.1 (Debian's `burrow`) monitoring a real broker: it reads the group's commits from
`__consumer_offsets` (Kafka's key and value layouts), asks the partitions' end offsets with ListOffsets v0, and its
lag per partition must be what `logbroker-admin groups describe --json` reports.

Burrow keeps its own state in ZooKeeper: Debian's `zookeeper` 3.8, started here with java on a free port in the
test's directory and killed at the end, as Burrow itself is."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import free_port, tool_binary

BURROW = shutil.which("Burrow") or "/usr/bin/Burrow"
ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"  # its manifest's Class-Path names the other jars
CLUSTER = "logbroker"
GROUP = "watched-by-burrow"
TOPIC = "watched"


def wait_for(condition, timeout, what):
    """Polls `condition` until it returns something truthy, which is returned; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def zookeeper_serving(port):
    """Whether ZooKeeper answers its `srvr` command with its mode. It listens before it serves, and closes the
    sessions it cannot serve yet (Burrow then fails with "Authentication failed: EOF")."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"srvr")
            answer = b""
            while chunk := connection.recv(4096):
                answer += chunk
            return b"Mode:" in answer
    except OSError:
        return False


class Child:
    """A child process whose output goes to a file, killed (its whole process group) at the end."""

    def __init__(self, arguments, log_path, cwd):
        self.log_path = log_path
        self.log = open(log_path, "w+")
        self.process = subprocess.Popen(arguments, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd,
                                        start_new_session=True)

    def output(self):
        self.log.flush()
        with open(self.log_path) as log:
            return log.read()

    def check_running(self, name):
        if self.process.poll() is not None:
            pytest.fail(f"{name} exited with {self.process.returncode}:\n{self.output()[-4000:]}")

    def kill(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)
        self.log.close()


@pytest.fixture
def zookeeper(tmp_path):
    """A standalone ZooKeeper 3.8 on a free port; yields 'host:port'."""
    data = tmp_path / "zookeeper"
    data.mkdir()
    port = free_port()
    child = Child(
        # No admin HTTP server (it would take port 8080); ZooKeeperServerMain takes the port and data directory.
        ["java", "-Dzookeeper.admin.enableServer=false", "-cp", ZOOKEEPER_JAR,
         "org.apache.zookeeper.server.ZooKeeperServerMain", str(port), str(data)],
        tmp_path / "zookeeper.log", tmp_path,
    )
    try:
        wait_for(lambda: child.check_running("ZooKeeper") or zookeeper_serving(port), 60, "ZooKeeper to serve")
        yield f"127.0.0.1:{port}"
    finally:
        child.kill()


def burrow_config(directory, broker, zookeeper, http_port):
    """burrow.toml: one cluster and one `kafka` consumer module on the broker, refreshed every second."""
    servers = f'["{broker}"]'
    (directory / "burrow.toml").write_text(f"""
[general]
pidfile="{directory / 'burrow.pid'}"

[logging]
level="info"

[zookeeper]
servers=["{zookeeper}"]
timeout=6
root-path="/burrow"

# No kafka-version: Burrow's default (0.8) makes its sarama consumer read __consumer_offsets with Fetch v0, in
# message format v0, as a Burrow left at its defaults does. Its cluster module asks end offsets with ListOffsets v0
# whatever the version.
[client-profile.logbroker]
client-id="burrow-test"

[cluster.{CLUSTER}]
class-name="kafka"
servers={servers}
client-profile="logbroker"
topic-refresh=1
offset-refresh=1

[consumer.{CLUSTER}]
class-name="kafka"
cluster="{CLUSTER}"
servers={servers}
client-profile="logbroker"
offsets-topic="__consumer_offsets"
start-latest=false

[httpserver.default]
address="127.0.0.1:{http_port}"

[storage.default]
class-name="inmemory"
workers=2
intervals=10
expire-group=604800
min-distance=1

[evaluator.default]
class-name="caching"
expire-cache=1
""")


def http_json(port, path):
    """Burrow's answer to GET `path` as JSON, or None (404, refused connection, not started yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def admin_lag(broker, group):
    result = subprocess.run([tool_binary("logbroker-admin"), "groups", "describe", group, "-b", broker, "--json"],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    described = json.loads(result.stdout)
    return {(p["topic"], p["partition"]): p["lag"] for p in described["partitions"]}


def offsets_list(offsets):
    return [TopicPartition(TOPIC, partition, offset) for partition, offset in offsets.items()]


def test_burrow_reports_the_lag_logbroker_admin_reports(broker, zookeeper, tmp_path):
    admin = AdminClient({"bootstrap.servers": broker})
    next(iter(admin.create_topics([NewTopic(TOPIC, 3, 1)]).values())).result(10)
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 0})
    ends = {0: 10, 1: 20, 2: 30}
    for partition, count in ends.items():
        for index in range(count):
            producer.produce(TOPIC, value=b"record-%d" % index, partition=partition)
    assert producer.flush(30) == 0
    # A first commit (without joining the group) creates __consumer_offsets before Burrow starts reading it.
    committer = Consumer({"bootstrap.servers": broker, "group.id": GROUP, "enable.auto.commit": False})
    committer.commit(offsets=offsets_list({0: 1, 1: 1, 2: 1}), asynchronous=False)
    committer.close()

    burrow_dir = tmp_path / "burrow"
    burrow_dir.mkdir()
    http_port = free_port()
    burrow_config(burrow_dir, broker, zookeeper, http_port)
    burrow = Child([BURROW, "--config-dir", str(burrow_dir)], burrow_dir / "burrow.log", burrow_dir)
    member = Consumer({"bootstrap.servers": broker, "group.id": GROUP, "enable.auto.commit": False,
                       "auto.offset.reset": "earliest"})
    try:
        def topic_offsets():
            burrow.check_running("Burrow")
            answer = http_json(http_port, f"/v3/kafka/{CLUSTER}/topic/{TOPIC}")
            return answer and not answer.get("error") and answer.get("offsets")

        # Burrow learns the end offsets with ListOffsets v0 (latest, one offset).
        wait_for(lambda: topic_offsets() == [10, 20, 30], 90, "Burrow to learn the topic's end offsets")

        # Burrow drops commits for partitions whose end offset it does not know yet, so the commits it is checked
        # on come after that, from a member of the group (so its GroupMetadata records are in the topic too).
        member.subscribe([TOPIC])

        def assigned():
            member.poll(0.2)  # no auto-commit: what it reads does not move the group's offsets
            return len(member.assignment()) == 3

        wait_for(assigned, 60, "the member's assignment")
        committed = {0: 5, 1: 15, 2: 30}
        member.commit(offsets=offsets_list(committed), asynchronous=False)

        def lag_when_current():
            burrow.check_running("Burrow")
            answer = http_json(http_port, f"/v3/kafka/{CLUSTER}/consumer/{GROUP}/lag")
            if not answer or answer.get("error"):
                return None
            partitions = answer["status"]["partitions"] or []
            seen = {(p["topic"], p["partition"]): p for p in partitions}
            current = all(
                (TOPIC, partition) in seen and (seen[(TOPIC, partition)].get("end") or {}).get("offset") == offset
                for partition, offset in committed.items()
            )
            return current and {key: p["current_lag"] for key, p in seen.items()}

        burrow_lag = wait_for(lag_when_current, 90, "Burrow to report the group's latest commits")
        expected = {(TOPIC, p): ends[p] - committed[p] for p in ends}
        assert burrow_lag == expected
        assert admin_lag(broker, GROUP) == burrow_lag
    except BaseException:
        print(burrow.output()[-8000:])
        raise
    finally:
        member.close()
        burrow.kill()
