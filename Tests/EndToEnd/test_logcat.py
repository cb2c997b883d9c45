"""logcat, the kcat of LogBroker: binary-safe round trips, interchange with Debian's kcat in both directions,
`| head -1`, -L -J, -C -J as kcat prints it, group consumers that commit what they printed (also when stopped by a
signal, leaving the group at once), refused -X properties, and failures on one line that name the broker."""
import json
import random
import signal
import subprocess
import threading
import time

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
    assert unreachable.stderr == b"logcat: cannot connect to 127.0.0.1:1: connection refused\n"
    # A name that resolves to two addresses (::1 and 127.0.0.1) still gives one line, with the name given.
    unreachable = run([logcat, "-b", "localhost:1", "-C", "-t", "t", "-e"])
    assert unreachable.returncode == 1
    assert unreachable.stderr == b"logcat: cannot connect to localhost:1: connection refused\n"
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


def test_unknown_properties_and_options_are_refused_by_name_and_q_is_quiet(broker, logcat):
    unknown = run([logcat, "-b", broker, "-L", "-X", "foo.bar=1"])
    assert unknown.returncode != 0
    assert b"-X foo.bar: no such configuration property" in unknown.stderr
    bad = run([logcat, "-b", broker, "-P", "-t", "refused", "-X", "acks=banana"], b"x\n")
    assert bad.returncode != 0
    assert b"-X acks=banana: acks takes all, -1, 0 or 1" in bad.stderr
    not_a_pair = run([logcat, "-b", broker, "-L", "-X", "acks"])
    assert not_a_pair.returncode != 0 and b"-X acks: expected property=value" in not_a_pair.stderr
    option = run([logcat, "-b", broker, "-L", "--frobnicate"])
    assert option.returncode != 0 and b"Unknown option '--frobnicate'" in option.stderr

    # Known properties, librdkafka's aliases among them, and -q are taken as kcat takes them.
    produced = run([logcat, "-q", "-b", broker, "-P", "-t", "quiet", "-X", "acks=all", "-X", "linger.ms=0",
                    "-X", "compression.codec=lz4", "-X", "client.id=quiet-one"], b"a\nb\n")
    assert produced.returncode == 0, produced.stderr
    consumed = run([logcat, "-q", "-b", broker, "-C", "-t", "quiet", "-e"])
    assert consumed.returncode == 0 and consumed.stdout == b"a\nb\n" and consumed.stderr == b""


def test_consumed_messages_as_json_read_as_kcat_prints_them(broker, logcat):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker})
    futures = admin.create_topics([NewTopic("enveloped", 2, 1),
                                   NewTopic("stamped", 1, 1, config={"message.timestamp.type": "LogAppendTime"})])
    for future in futures.values():
        future.result(timeout=10)
    # Keys, headers (one with an empty value), quotes, backslashes, control bytes, UTF-8 and a null payload (-Z).
    keyed = b"".join(b"k%d:%s\x1e" % (i, v) for i, v in enumerate(
        [b'say "hi"', b"back\\slash", b"tab\tnew\nline\x01\x7f", "caf\u00e9".encode(), b""]))
    assert run(["kcat", "-b", broker, "-P", "-t", "enveloped", "-p", "0", "-K", ":", "-D", "\\x1e", "-Z",
                "-H", "trace=abc", "-H", "empty="], keyed).returncode == 0
    # No key, no headers, on the other partition and on the LogAppendTime topic.
    assert run([logcat, "-b", broker, "-P", "-t", "enveloped", "-p", "1"], b"plain\n").returncode == 0
    assert run([logcat, "-b", broker, "-P", "-t", "stamped"], b"stamped\n").returncode == 0

    for topic, partitions in (("enveloped", ["0", "1"]), ("stamped", ["0"])):
        for partition in partitions:
            ours = run([logcat, "-b", broker, "-C", "-t", topic, "-p", partition, "-e", "-J"])
            theirs = run(["kcat", "-b", broker, "-C", "-t", topic, "-p", partition, "-e", "-q", "-J"])
            assert ours.returncode == 0, ours.stderr
            assert ours.stdout == theirs.stdout
    lines = run([logcat, "-b", broker, "-C", "-t", "enveloped", "-p", "0", "-e", "-J"]).stdout.splitlines()
    first = json.loads(lines[0])
    assert first["headers"] == ["trace", "abc", "empty", ""] and first["key"] == "k0"
    assert first["payload"] == 'say "hi"' and first["tstype"] == "create" and first["broker"] == 1
    assert json.loads(lines[4])["payload"] is None
    stamped = json.loads(run([logcat, "-b", broker, "-C", "-t", "stamped", "-e", "-J"]).stdout)
    assert stamped["tstype"] == "logappend" and "headers" not in stamped and stamped["key"] is None


def group_offsets(address, group):
    """The group's state, its member count and its committed offsets by partition, as logbroker-admin reports them."""
    result = subprocess.run([tool_binary("logbroker-admin"), "groups", "describe", group, "-b", address, "--json"],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    committed = {p["partition"]: p["committed_offset"] for p in described["partitions"]
                 if p["committed_offset"] is not None}
    return described["state"], len(described["members"]), committed


def printed_offsets(lines):
    """The offset after the last record printed per partition, from "%p %o" lines."""
    printed = {}
    for line in lines:
        partition, offset = map(int, line.split())
        printed[partition] = max(printed.get(partition, 0), offset + 1)
    return printed


def test_a_counted_group_consumer_commits_exactly_the_records_it_printed(make_broker, logcat):
    broker = make_broker("group.initial.rebalance.delay.ms=0\n")
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.address})
    next(iter(admin.create_topics([NewTopic("counted", 3, 1)]).values())).result(timeout=10)
    for partition in range(3):
        lines = b"".join(b"%d-%d\n" % (partition, i) for i in range(40))
        assert run([logcat, "-b", broker.address, "-P", "-t", "counted", "-p", str(partition)], lines).returncode == 0

    first = run([logcat, "-b", broker.address, "-G", "counters", "counted", "-c", "25", "-f", "%p %o\\n"])
    assert first.returncode == 0, first.stderr
    printed = first.stdout.decode().splitlines()
    assert len(printed) == 25
    # Partitions it printed nothing from are committed where they started.
    printed_up_to = printed_offsets(printed)
    assert group_offsets(broker.address, "counters") == ("Empty", 0, {p: printed_up_to.get(p, 0) for p in range(3)})

    # The next member of the group goes on right after the 25th record: the other 95, none twice.
    rest = run([logcat, "-b", broker.address, "-G", "counters", "counted", "-e", "-f", "%p %o\\n"])
    assert rest.returncode == 0, rest.stderr
    seen = printed + rest.stdout.decode().splitlines()
    assert sorted(seen) == sorted(f"{p} {o}" for p in range(3) for o in range(40))


class Lines:
    """A process's stdout lines as they come, read by a thread."""

    def __init__(self, process):
        self.lines = []
        self.thread = threading.Thread(target=self.read, args=(process.stdout,), daemon=True)
        self.thread.start()

    def read(self, stream):
        for line in stream:
            self.lines.append(line.decode().strip())

    def wait_for(self, count, timeout=30):
        deadline = time.time() + timeout
        while len(self.lines) < count and time.time() < deadline:
            time.sleep(0.02)
        assert len(self.lines) >= count, f"{len(self.lines)} lines of {count}"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_commits_what_was_printed_and_leaves_the_group_at_once(make_broker, logcat, stop):
    broker = make_broker("group.initial.rebalance.delay.ms=0\n")
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.address})
    next(iter(admin.create_topics([NewTopic("stopped", 2, 1)]).values())).result(timeout=10)
    for partition in range(2):
        lines = b"".join(b"%d\n" % i for i in range(30))
        assert run([logcat, "-b", broker.address, "-P", "-t", "stopped", "-p", str(partition)], lines).returncode == 0

    member = subprocess.Popen([logcat, "-b", broker.address, "-G", "stoppable", "stopped", "-f", "%p %o\\n"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        output = Lines(member)
        output.wait_for(60)
        assert group_offsets(broker.address, "stoppable")[:2] == ("Stable", 1)
        member.send_signal(stop)
        assert member.wait(timeout=10) == 0, member.stderr.read()
    finally:
        if member.poll() is None:
            member.kill()
    output.thread.join(timeout=10)
    # At once: no member left waiting for its session to time out, and every printed record committed.
    assert printed_offsets(output.lines) == {0: 30, 1: 30}
    assert group_offsets(broker.address, "stoppable") == ("Empty", 0, {0: 30, 1: 30})
