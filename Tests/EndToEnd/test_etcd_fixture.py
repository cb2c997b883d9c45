"""The etcd fixture the cluster tests stand on: it starts a real etcd, survives a crash and restart on its data, and
leaves nothing behind."""
import os

from etcd_server import EtcdServer, etcd  # noqa: F401


def test_etcd_serves_and_keeps_its_data_across_a_crash(etcd):  # noqa: F811
    etcd.put("/logbroker/brokers/1", "one")
    etcd.put("/logbroker/brokers/2", "two")
    etcd.put("/other/brokers/1", "x")
    etcd.kill()
    assert not etcd.healthy()
    etcd.start()
    assert etcd.get("/logbroker/brokers/1") == b"one"
    assert etcd.keys(b"/logbroker/") == [b"/logbroker/brokers/1", b"/logbroker/brokers/2"]


def test_two_servers_run_side_by_side_and_stop_cleanly():
    first, second = EtcdServer(), EtcdServer()
    try:
        first.start()
        second.start()
        assert first.endpoint != second.endpoint
        first.put("k", "1")
        assert second.get("k") is None
    finally:
        first.stop()
        second.stop()
    assert not os.path.exists(first.directory) and not os.path.exists(second.directory)
    assert not first.healthy()
