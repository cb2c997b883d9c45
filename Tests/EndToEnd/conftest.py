"""A real logbroker-server (the debug build `bin/test` made) on an ephemeral port, in a temporary directory."""
import os
import re
import resource
import signal
import struct
import subprocess
import time
import warnings

import pytest

from etcd_server import free_port  # noqa: F401 - the tests import it from here

with warnings.catch_warnings():
    # kafka-python 3.0.12 loads its schemas through importlib.resources APIs that Python deprecates.
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_exactly(sock, count):
    """`count` bytes from `sock`, or None if the connection closes first."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(sock):
    """One Kafka frame's contents (without its size), or None if the connection closed first."""
    size = read_exactly(sock, 4)
    if size is None:
        return None
    (length,) = struct.unpack(">i", size)
    assert 0 <= length < 100 << 20, f"implausible frame size {length}"
    return read_exactly(sock, length)


def tool_binary(name):
    """The path of one of the package's programs in the debug build."""
    # LOGBROKER_SCRATCH_PATH: a build made with `swift build --scratch-path` instead of the default .build.
    scratch = os.environ.get("LOGBROKER_SCRATCH_PATH")
    path = subprocess.run(
        ["swift", "build", "--show-bin-path"] + (["--scratch-path", scratch] if scratch else []),
        cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    binary = os.path.join(path, name)
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is not built: run bin/test")
    return binary


def server_binary():
    return tool_binary("logbroker-server")


class Broker:
    """A standalone logbroker-server in `directory` (its `server.properties`, `logs/` and one stderr file per run)
    that can be stopped and started again on the same data. It listens on `port`, or on an ephemeral port, and then
    `address` changes with every start."""

    def __init__(self, directory, properties="", port=0, nofile=None):
        self.directory = directory
        # The process's descriptor limit (soft and hard, as `prlimit --nofile=N`), or None to inherit the test's.
        self.nofile = nofile
        self.log_dir = directory / "logs"
        self.config = directory / "server.properties"
        directory.mkdir(exist_ok=True)
        self.config.write_text(
            f"node.id=1\nprocess.roles=broker,controller\nlisteners=PLAINTEXT://127.0.0.1:{port}\n"
            f"log.dirs={self.log_dir}\n{properties}"
        )
        self.process = None
        self.address = None
        self.runs = 0

    def start(self):
        self.runs += 1
        log = open(self.directory / f"server-{self.runs}.log", "w+")
        limit = self.nofile
        set_limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))) if limit else None
        self.process = subprocess.Popen([server_binary(), str(self.config)], stdout=subprocess.DEVNULL, stderr=log,
                                        preexec_fn=set_limit)
        text = ""
        for _ in range(200):
            log.seek(0)
            text = log.read()
            match = re.search(r"listener=PLAINTEXT port=(\d+)", text)
            if match and "LogBroker started" in text:
                self.address = f"127.0.0.1:{match.group(1)}"
                return self.address
            time.sleep(0.05)
        self.process.kill()
        pytest.fail("logbroker-server did not start:\n" + text)

    def stderr(self):
        """The current run's log so far."""
        return (self.directory / f"server-{self.runs}.log").read_text()

    def stop(self):
        """SIGTERM, and the graceful stop must exit with status 0."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=20) == 0
        self.process = None

    def kill(self):
        """SIGKILL, as a crash: nothing flushed, no clean-shutdown marker."""
        self.process.kill()
        self.process.wait(timeout=20)
        self.process = None


@pytest.fixture
def broker(tmp_path):
    """Yields 'host:port' of a standalone broker; stops it with SIGTERM and expects exit status 0."""
    server = Broker(tmp_path)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def make_broker(tmp_path):
    """A factory: make_broker(properties, port, nofile) starts a `Broker` with extra server.properties lines (on
    `port`, else an ephemeral one; under a descriptor limit of `nofile`) and returns it (it can be stopped and started again); every broker it made is stopped at the
    end, each expected to exit with 0."""
    made = []

    def make(properties="", port=0, nofile=None):
        server = Broker(tmp_path / f"broker-{len(made)}", properties, port, nofile)
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        if server.process is not None:
            server.stop()
