"""A real logbroker-server (the debug build `bin/test` made) on an ephemeral port, in a temporary directory."""
import os
import re
import signal
import subprocess
import time
import warnings

import pytest

with warnings.catch_warnings():
    # kafka-python 3.0.12 loads its schemas through importlib.resources APIs that Python deprecates.
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def server_binary():
    # LOGBROKER_SCRATCH_PATH: a build made with `swift build --scratch-path` instead of the default .build.
    scratch = os.environ.get("LOGBROKER_SCRATCH_PATH")
    path = subprocess.run(
        ["swift", "build", "--show-bin-path"] + (["--scratch-path", scratch] if scratch else []),
        cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    binary = os.path.join(path, "logbroker-server")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is not built: run bin/test")
    return binary


@pytest.fixture
def broker(tmp_path):
    """Yields 'host:port' of a standalone broker; stops it with SIGTERM and expects exit status 0."""
    config = tmp_path / "server.properties"
    config.write_text(
        "node.id=1\nprocess.roles=broker,controller\nlisteners=PLAINTEXT://127.0.0.1:0\n"
        f"log.dirs={tmp_path}/logs\n"
    )
    log = open(tmp_path / "server.log", "w+")
    process = subprocess.Popen([server_binary(), str(config)], stdout=subprocess.DEVNULL, stderr=log)
    port = None
    for _ in range(200):
        log.seek(0)
        text = log.read()
        match = re.search(r"listener=PLAINTEXT port=(\d+)", text)
        if match and "LogBroker started" in text:
            port = int(match.group(1))
            break
        time.sleep(0.05)
    if port is None:
        process.kill()
        pytest.fail("logbroker-server did not start:\n" + text)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
