"""The README's first command as a new user meets it: the repository's own config/server.properties, started from a
directory laid out like a fresh clone (no data/), must create its log directories and serve a produce and a fetch."""
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ROOT, free_port, server_binary


def test_the_default_config_starts_in_a_fresh_clone_and_serves_a_produce_and_a_fetch(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(f"{ROOT}/config/server.properties", tmp_path / "config" / "server.properties")
    assert not (tmp_path / "data").exists()
    # Only the port differs from the embedded default (9092 may be taken on this machine).
    address = f"127.0.0.1:{free_port()}"
    log = open(tmp_path / "server.log", "w+")
    server = subprocess.Popen(
        [server_binary(), "config/server.properties",
         "--override", f"listeners=PLAINTEXT://{address}", "--override", f"advertised.listeners=PLAINTEXT://{address}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "LogBroker started" not in text:
            assert server.poll() is None, "logbroker-server exited:\n" + open(tmp_path / "server.log").read()
            assert time.monotonic() < deadline, "logbroker-server did not start:\n" + text
            time.sleep(0.05)
            log.seek(0)
            text = log.read()
        assert (tmp_path / "data" / "logs").is_dir()

        produced = subprocess.run(["kcat", "-b", address, "-P", "-t", "first-steps"], input=b"hello\nworld\n",
                                  capture_output=True, timeout=60)
        assert produced.returncode == 0, produced.stderr
        consumed = subprocess.run(["kcat", "-b", address, "-C", "-t", "first-steps", "-e", "-q"],
                                  capture_output=True, timeout=60)
        assert consumed.returncode == 0, consumed.stderr
        assert consumed.stdout == b"hello\nworld\n"
        assert list((tmp_path / "data" / "logs").glob("first-steps-0/*.log"))
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


@pytest.mark.parametrize("layout", ["a file", "under a file"])
def test_a_log_dir_that_cannot_be_a_directory_stops_start_up_naming_it(tmp_path, layout):
    (tmp_path / "blocker").write_text("not a directory")
    log_dir = tmp_path / "blocker" if layout == "a file" else tmp_path / "blocker" / "logs"
    config = tmp_path / "server.properties"
    config.write_text(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:0\nlog.dirs={log_dir}\n")
    result = subprocess.run([server_binary(), str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert re.search(rf"Log directory {re.escape(str(log_dir))} is unusable", result.stderr), result.stderr
