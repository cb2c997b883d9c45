"""logcat, the kcat of LogBroker: binary-safe round trips, interchange with Debian's kcat in both directions,
`| head -1`, -L -J, and a failure that names the broker."""
import json
import random
import subprocess

import pytest

from conftest import tool_binary

DELIMITER = b"\x1e"


@pytest.fixture(scope="module")
def logcat():
    return tool_binary("logcat")


def payloads(count, seed):
    """Random binary messages of 0-300 bytes that never contain the delimiter."""
    rng = random.Random(seed)
    return [bytes(b for b in rng.randbytes(rng.randrange(1, 300)) if b != DELIMITER[0]) or b"x" for _ in range(count)]


def run(command, data=b"", timeout=60):
    return subprocess.run(command, input=data, capture_output=True, timeout=timeout)


def test_binary_payloads_round_trip_with_a_custom_delimiter(broker, logcat):
    messages = payloads(500, 1)
    produced = run([logcat, "-b", broker, "-P", "-t", "binary", "-D", "\\x1e", "-z", "lz4"],
                   DELIMITER.join(messages) + DELIMITER)
    assert produced.returncode == 0, produced.stderr
    consumed = run([logcat, "-b", broker, "-C", "-t", "binary", "-D", "\\x1e", "-e"])
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == DELIMITER.join(messages) + DELIMITER


def test_what_logcat_writes_kcat_reads_and_the_other_way_round(broker, logcat):
    messages = payloads(300, 2)
    stream = DELIMITER.join(messages) + DELIMITER
    assert run([logcat, "-b", broker, "-P", "-t", "to-kcat", "-D", "\\x1e"], stream).returncode == 0
    read = run(["kcat", "-b", broker, "-C", "-t", "to-kcat", "-D", "\\x1e", "-e", "-q"])
    assert read.returncode == 0, read.stderr
    assert read.stdout == stream

    assert run(["kcat", "-b", broker, "-P", "-t", "from-kcat", "-D", "\\x1e"], stream).returncode == 0
    read = run([logcat, "-b", broker, "-C", "-t", "from-kcat", "-D", "\\x1e", "-e"])
    assert read.returncode == 0, read.stderr
    assert read.stdout == stream

    # Keys and the format tokens read the same in both tools.
    keyed = b"k1:v1\nk2:v2\n"
    assert run([logcat, "-b", broker, "-P", "-t", "keyed", "-K", ":"], keyed).returncode == 0
    fmt = "%k=%s@%o\\n"
    ours = run([logcat, "-b", broker, "-C", "-t", "keyed", "-e", "-f", fmt])
    theirs = run(["kcat", "-b", broker, "-C", "-t", "keyed", "-e", "-q", "-f", fmt])
    assert ours.stdout == theirs.stdout == b"k1=v1@0\nk2=v2@1\n"


def test_a_closed_stdout_ends_logcat_with_status_0(broker, logcat):
    assert run([logcat, "-b", broker, "-P", "-t", "many"], b"".join(b"%d\n" % i for i in range(1000))).returncode == 0
    pipeline = subprocess.run(f"'{logcat}' -b {broker} -C -t many | head -1; exit ${{PIPESTATUS[0]}}",
                              shell=True, executable="/bin/bash", capture_output=True, timeout=30)
    assert pipeline.stdout == b"0\n"
    assert pipeline.returncode == 0, pipeline.stderr


def test_metadata_as_json_and_counts_and_offsets(broker, logcat):
    assert run([logcat, "-b", broker, "-P", "-t", "listed"], b"a\nb\nc\n").returncode == 0
    listed = run([logcat, "-b", broker, "-L", "-J"])
    assert listed.returncode == 0
    metadata = json.loads(listed.stdout)
    topic = next(t for t in metadata["topics"] if t["topic"] == "listed")
    assert topic["partitions"][0]["leader"] == 1 and metadata["brokers"][0]["id"] == 1
    assert run([logcat, "-b", broker, "-C", "-t", "listed", "-o", "-2", "-e"]).stdout == b"b\nc\n"
    assert run([logcat, "-b", broker, "-C", "-t", "listed", "-o", "1", "-c", "1"]).stdout == b"b\n"


def test_failures_exit_non_zero_with_one_line_naming_what_failed(broker, logcat):
    unreachable = run([logcat, "-b", "127.0.0.1:1", "-L"])
    assert unreachable.returncode == 1
    assert unreachable.stderr.decode().count("\n") == 1 and "127.0.0.1:1" in unreachable.stderr.decode()
    missing = run([logcat, "-b", broker, "-C", "-t", "no-such-topic", "-e"])
    assert missing.returncode == 1 and "no-such-topic" in missing.stderr.decode()


def test_group_consumers_share_a_topic_and_commit(make_broker, logcat):
    broker = make_broker("group.initial.rebalance.delay.ms=0\n")
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.address})
    next(iter(admin.create_topics([NewTopic("grouped", 4, 1)]).values())).result(timeout=10)
    lines = b"".join(b"%d\n" % i for i in range(400))
    assert run([logcat, "-b", broker.address, "-P", "-t", "grouped"], lines).returncode == 0

    # One balanced consumer reads everything and commits; the next one of the group finds nothing left.
    first = run([logcat, "-b", broker.address, "-G", "cats", "grouped", "-e"])
    assert first.returncode == 0, first.stderr
    assert sorted(int(line) for line in first.stdout.split()) == list(range(400))
    again = run([logcat, "-b", broker.address, "-G", "cats", "grouped", "-e"])
    assert again.returncode == 0 and again.stdout == b""

    # Debian's kcat -G sees the same committed offsets: nothing left for the group either.
    more = b"".join(b"%d\n" % i for i in range(400, 410))
    assert run([logcat, "-b", broker.address, "-P", "-t", "grouped"], more).returncode == 0
    kcat = run(["kcat", "-b", broker.address, "-G", "cats", "grouped", "-c", "10", "-q"], timeout=60)
    assert sorted(int(line) for line in kcat.stdout.split()) == list(range(400, 410))
