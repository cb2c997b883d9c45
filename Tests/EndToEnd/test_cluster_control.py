"""Several logbroker-server processes as one cluster over one real etcd (cluster.py): the nodes assembled by
process.roles, exactly one active controller named in the election key, a standby taking over from a killed active
controller within the lease TTL, a paused controller fenced out of the store, and start-up against an etcd that does
not answer.

Brokers register with the active controller over its listener (the broker lifecycle), so a topic can be placed;
Metadata's broker list, fencing and forwarding are tested with the broker lifecycle and the cluster description."""
import re
import shutil
import socket
import subprocess
import time

from cluster import (INCREMENTAL_ALTER_CONFIGS, NONE, NOT_CONTROLLER, Store, alter_cluster_config,
                     alter_cluster_config_request, api_versions, cluster, create_topic, read_alter_config_answer,
                     request_frame, wait_until)  # noqa: F401
from conftest import ROOT, free_port, read_frame, server_binary
from etcd_server import EtcdServer

ACTIVE = "This process is the active controller"
STEPPED_DOWN = "This process is no longer the active controller"
# ApiVersions, CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs, IncrementalAlterConfigs, ElectLeaders: what
# every controller listener serves (the broker lifecycle's RPCs come beside them).
CONTROLLER_APIS = {18, 19, 20, 37, 33, 44, 43}
# Produce, Fetch, ListOffsets, Metadata, FindCoordinator, JoinGroup: client APIs, never served there.
CLIENT_APIS = {0, 1, 2, 3, 10, 11}


def serves_the_controller_apis_only(address):
    """Whether `address` advertises the controller listener's APIs and none of the clients'."""
    advertised = api_versions(address)
    return advertised is not None and advertised >= CONTROLLER_APIS and not advertised & CLIENT_APIS


def kcat_lists(bootstrap, store, brokers):
    """kcat -L against `bootstrap` succeeds and lists `brokers` brokers, from a Metadata answer naming the cluster
    id in the store (kcat's debug log shows it)."""
    listed = subprocess.run(["kcat", "-b", bootstrap, "-L", "-m", "20", "-d", "metadata"], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert f" {brokers} brokers:" in listed.stdout, listed.stdout
    answer = re.search(r"ClusterId: (\S+), ControllerId: (-?\d+)", listed.stderr)
    assert answer, listed.stderr
    assert answer.group(1).rstrip(",").encode() in store.entry("cluster/id")["value"], listed.stderr


def test_three_broker_controller_nodes_elect_exactly_one_active_controller(cluster):  # noqa: F811
    nodes = cluster(["broker,controller"] * 3)
    active, controller = nodes.active_controller()
    # The election key names the active node and the endpoint of its controller listener.
    assert controller["endpoint"] == ("CONTROLLER", "127.0.0.1", active.controller_port)
    assert nodes.store.entry("cluster/id") is not None
    logs = {node.node_id: node.log() for node in nodes.nodes}
    assert [node_id for node_id, log in logs.items() if ACTIVE in log] == [active.node_id], logs
    for node in nodes.nodes:
        if node is not active:
            assert "Another controller is active; this one stands by" in logs[node.node_id], logs[node.node_id]
    for node in nodes.nodes:
        # Each node's client listener answers Metadata (kcat -L) for the one cluster ...
        kcat_lists(node.bootstrap, nodes.store, 3)
        # ... and its controller listener serves the controller's APIs, not the clients'.
        assert serves_the_controller_apis_only(node.controller_address)
        assert api_versions(node.bootstrap) >= CLIENT_APIS
    # A standby refuses admin writes with NOT_CONTROLLER; the active controller decides them.
    standby = next(node for node in nodes.nodes if node is not active)
    assert create_topic(standby.controller_address, "on-a-standby")[0] == NOT_CONTROLLER
    assert create_topic(active.controller_address, "on-the-active") == (NONE, None)
    # SIGTERM: the active controller resigns as it stops, so a standby takes over at once rather than after the
    # lease lapses (at least two thirds of the TTL after the last keep-alive).
    ttl = nodes.store.lease_ttl(controller["lease"])
    stopped_at = time.monotonic()
    assert active.stop() == 0, active.log()
    successor, _ = nodes.active_controller(timeout=ttl + 20, other_than=active.node_id)
    took = time.monotonic() - stopped_at
    print(f"SIGTERM of the active controller to node {successor.node_id} in the election key: {took:.2f} s")
    assert took < ttl * 2 / 3, f"took {took:.2f} s, lease TTL {ttl} s"
    # Every node exits cleanly on SIGTERM.
    assert set(nodes.stop().values()) - {None} == {0}


def test_controller_only_and_broker_only_processes_start(cluster):  # noqa: F811
    nodes = cluster(["controller", "controller", "broker", "broker", "broker"])
    active, controller = nodes.active_controller()
    assert "controller" == active.roles
    assert controller["endpoint"] == ("CONTROLLER", "127.0.0.1", active.controller_port)
    for node in nodes.controllers():
        # No log storage, no client listener, no group coordinator on a controller-only process.
        assert "Loaded logs" not in node.log() and "listener=PLAINTEXT" not in node.log(), node.log()
        assert not node.log_dir.exists()
        assert serves_the_controller_apis_only(node.controller_address)
    for node in nodes.brokers():
        # A broker-only process follows the image and never campaigns.
        assert "controller" not in node.roles
        assert ACTIVE not in node.log() and "Standing by" not in node.log(), node.log()
        assert "listener=CONTROLLER" not in node.log(), node.log()
        kcat_lists(node.bootstrap, nodes.store, 3)
    assert set(nodes.stop().values()) == {0}


def test_sigkill_of_the_active_controller_hands_over_within_the_lease_ttl(cluster):  # noqa: F811
    nodes = cluster(["controller", "controller", "broker", "broker", "broker"])
    old, before = nodes.active_controller()
    standby = next(node for node in nodes.controllers() if node is not old)
    ttl = nodes.store.lease_ttl(before["lease"])
    assert create_topic(standby.controller_address, "before-failover")[0] == NOT_CONTROLLER

    killed_at = time.monotonic()
    old.kill()
    new, after = nodes.active_controller(timeout=ttl + 20, other_than=old.node_id)
    took = time.monotonic() - killed_at
    print(f"controller failover: SIGKILL of node {old.node_id} to node {new.node_id} in the election key: "
          f"{took:.2f} s (lease TTL {ttl} s)")
    assert new is standby
    assert after["epoch"] > before["epoch"]
    new.wait_for_log(ACTIVE)
    # etcd expires the lease up to its TTL after the last keep-alive, which came before the kill; the margin is for
    # etcd's expiry check and a loaded machine. The standby's election is the store's next write after the expiry.
    assert took <= ttl + 5, f"took {took:.2f} s, lease TTL {ttl} s"
    assert nodes.store.entry_at("controller", after["epoch"] - 1) is None

    # Admin writes through the new active controller's process work again.
    status, message = create_topic(new.controller_address, "after-failover")
    assert status == NONE, message
    assert nodes.store.entry("topics/after-failover")["mod_revision"] > after["epoch"]
    assert alter_cluster_config(new.controller_address, "log.retention.ms", "7200000") == (NONE, None)
    configs = nodes.store.entry("configs/broker/")
    assert configs is not None and configs["mod_revision"] > after["epoch"]
    assert b"7200000" in configs["value"]
    answered = time.monotonic() - killed_at
    print(f"controller failover: SIGKILL to the first accepted write through the new controller: {answered:.2f} s")

    # The killed node comes back on its data and ports as a standby.
    old.start()
    assert "Another controller is active; this one stands by" in old.log(), old.log()
    assert nodes.store.controller()["epoch"] == after["epoch"]
    assert create_topic(old.controller_address, "on-the-restarted")[0] == NOT_CONTROLLER


def test_a_paused_active_controller_resumed_after_its_lease_lapsed_steps_down_and_writes_nothing(cluster):  # noqa: F811
    nodes = cluster(["controller", "controller"])
    paused, before = nodes.active_controller()
    other = next(node for node in nodes.controllers() if node is not paused)
    paused.pause()
    # A write sent to the paused controller waits in its socket: it is the first thing it may do when resumed,
    # still believing itself active.
    host, port = paused.controller_address.rsplit(":", 1)
    stale = socket.create_connection((host, int(port)), timeout=60)
    try:
        stale.sendall(request_frame(INCREMENTAL_ALTER_CONFIGS, 0, 7,
                                    alter_cluster_config_request("log.retention.ms", "1234567")))

        ttl = nodes.store.lease_ttl(before["lease"])
        paused_at = time.monotonic()
        new, after = nodes.active_controller(timeout=ttl + 20, other_than=paused.node_id)
        print(f"paused controller replaced after {time.monotonic() - paused_at:.2f} s (lease TTL {ttl} s)")
        assert new is other and after["epoch"] > before["epoch"]
        taken_over_at = nodes.store.revision()

        paused.resume()
        frame = read_frame(stale)
    finally:
        stale.close()
    assert frame is not None, "the resumed controller closed the connection"
    status, message = read_alter_config_answer(frame[4:])
    assert status == NOT_CONTROLLER, message
    line = paused.wait_for_log(r".*" + STEPPED_DOWN + r".*").group(0)
    print(f"the resumed controller: {line}")
    assert f"controller.epoch={before['epoch']}" in line
    # The store holds no write after the new controller's election: its fence refused the old one's.
    entries = nodes.store.entries()
    assert max(entry["mod_revision"] for entry in entries.values()) <= taken_over_at, entries
    assert b"1234567" not in entries.get("configs/broker/", {}).get("value", b"")
    assert nodes.store.controller()["node"] == other.node_id
    # The resumed process stands by: its controller listener refuses writes, naming none of its own.
    assert create_topic(paused.controller_address, "after-resume")[0] == NOT_CONTROLLER


def test_the_readme_cluster_configs_run_a_cluster(tmp_path):
    """config/cluster/node1-3.properties as the README runs them (from the repository root, relative data/), with
    only the ports and the etcd endpoint changed for this machine."""
    (tmp_path / "config").mkdir()
    shutil.copytree(f"{ROOT}/config/cluster", tmp_path / "config" / "cluster")
    etcd = EtcdServer()
    processes = []
    try:
        etcd.start()
        ports = {}
        for node in (1, 2, 3):
            ports[node] = (free_port(), free_port())
            client, controller = ports[node]
            log = open(tmp_path / f"node{node}.log", "w")
            processes.append(subprocess.Popen(
                [server_binary(), f"config/cluster/node{node}.properties",
                 "--override", f"listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
                 "--override", f"advertised.listeners=PLAINTEXT://127.0.0.1:{client}",
                 "--override", f"metadata.etcd.endpoints={etcd.endpoint}"],
                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log))
        for node in (1, 2, 3):
            wait_until(lambda: "LogBroker started" in (tmp_path / f"node{node}.log").read_text(), 90,
                       lambda: f"node {node} did not start:\n" + (tmp_path / f"node{node}.log").read_text())
            # Started; its listeners are served once its services run.
            wait_until(lambda: serves_the_controller_apis_only(f"127.0.0.1:{ports[node][1]}"), 30,
                       f"node {node}'s controller listener does not serve the controller APIs")
            assert (tmp_path / "data" / f"node{node}" / "logs").is_dir()
        controller = Store(etcd).controller()
        assert controller is not None
        assert controller["endpoint"] == ("CONTROLLER", "127.0.0.1", ports[controller["node"]][1])
        logs = [(tmp_path / f"node{node}.log").read_text() for node in (1, 2, 3)]
        assert sum(ACTIVE in log for log in logs) == 1, logs
    finally:
        for process in processes:
            process.terminate()
        statuses = [process.wait(timeout=30) for process in processes]
        etcd.stop()
    assert statuses == [0, 0, 0]


def test_an_unreachable_etcd_stops_start_up_with_one_line_naming_the_endpoints(tmp_path):
    """etcd has ZooKeeper's place, and Kafka's ZooKeeper-era broker waited zookeeper.connection.timeout.ms (18 s)
    for it, then stopped: the same here, with one warning while it waits and one line when it gives up."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "server.properties"
    config.write_text(
        f"node.id=1\nprocess.roles=broker,controller\n"
        "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0\ncontroller.listener.names=CONTROLLER\n"
        f"metadata.store=etcd\nmetadata.etcd.endpoints={endpoint}\nlog.dirs={tmp_path / 'logs'}\n")
    started = time.monotonic()
    result = subprocess.run([server_binary(), str(config)], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    print(f"gave up on etcd after {took:.1f} s")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith(
        f"logbroker-server: Cannot reach the metadata store metadata.etcd.endpoints={endpoint}: no etcd member "
        "answered within 18.0 seconds"), result.stderr
    assert sum("etcd does not answer; trying until the start-up gives up" in line for line in lines) == 1, result.stderr
    assert 15 < took < 60
    assert not (tmp_path / "logs").exists()
