"""A real single-member etcd for end-to-end tests (Debian's etcd-server): two free loopback ports, a fresh data dir.

Use the `etcd` fixture (import it into the test module: `from etcd_server import etcd  # noqa: F401`), or
`EtcdServer` directly for several. The Swift tests have the same helper in Tests/EtcdTestSupport.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

ETCD = "/usr/bin/etcd"


class EtcdServer:
    """etcd on `host` (127.0.0.1 unless given) at `client_port` (its `endpoint`, http://HOST:PORT) and `peer_port`,
    with its data and its log (`etcd.log`, appended across restarts) in `directory`. `kill()` then `start()` is a
    crash and recovery on the same data and ports; `stop()` ends it with SIGTERM and removes the directory."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.directory = tempfile.mkdtemp(prefix="etcd-")
        self.process = None

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.client_port}"

    def start(self, timeout=30.0):
        """Starts etcd and returns once it answers /health; fails the test with its log if it does not."""
        assert self.process is None, "etcd is already running"
        if not os.access(ETCD, os.X_OK):
            pytest.fail(f"{ETCD} is missing: run bin/setup (Debian package etcd-server)")
        peer = f"http://{self.host}:{self.peer_port}"
        log = open(os.path.join(self.directory, "etcd.log"), "ab")
        self.process = subprocess.Popen(
            [ETCD, "--name", "t", "--data-dir", os.path.join(self.directory, "data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"t={peer}",
             "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None:
                status = self.process.returncode
                self.process = None
                pytest.fail(f"etcd exited with status {status}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"etcd did not answer /health within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def healthy(self):
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=2) as answer:
                return json.load(answer).get("health") == "true"
        except (OSError, ValueError):
            return False

    def kill(self):
        """SIGKILL, as in a crash."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self):
        """SIGTERM (SIGKILL after 10 s), then the directory goes."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self):
        try:
            with open(os.path.join(self.directory, "etcd.log"), errors="replace") as log:
                return "".join(log.readlines()[-20:])
        except OSError:
            return ""

    def call(self, path, body):
        """POSTs `body` (a dict) to etcd's JSON gateway (`/v3/...`) and returns the decoded answer."""
        request = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    def put(self, key, value):
        return self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key):
        """The value of `key` (bytes), or None."""
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def keys(self, prefix):
        """Every key under `prefix`, in order (bytes)."""
        end = bytearray(prefix)
        end[-1] += 1
        answer = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(bytes(end)), "keys_only": True})
        return [base64.b64decode(kv["key"]) for kv in answer.get("kvs", [])]


_ports_handed_out = set()


def free_port():
    """A port nothing listens on now on 127.0.0.1, for a process that binds it later (and again after a restart).
    Never the same one twice in a run: the kernel may offer a port again before the process it was handed to binds
    it (seen: etcd and a node of one cluster given the same port)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


def _b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


@pytest.fixture
def etcd():
    """A started etcd, stopped and removed after the test."""
    server = EtcdServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
