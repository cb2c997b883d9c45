"""logbroker-admin drives a topic's whole life, and its --json output parses; -b goes before or after the
subcommand; topics show their config overrides; groups that do not exist or have no offsets say so; the help texts
are current."""
import json
import subprocess

from conftest import tool_binary


def admin(broker, *arguments):
    result = subprocess.run([tool_binary("logbroker-admin"), *arguments, "-b", broker, "--json"],
                            capture_output=True, timeout=60)
    return result.returncode, json.loads(result.stdout) if result.returncode == 0 else result.stderr.decode()


def admin_text(*arguments):
    """Exit status, stdout and stderr of a run as given (no -b or --json added)."""
    result = subprocess.run([tool_binary("logbroker-admin"), *arguments], capture_output=True, timeout=60)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_a_topics_whole_life(broker):
    assert admin(broker, "topics", "create", "life", "--partitions", "2", "--config", "retention.ms=3600000") == (
        0, {"topic": "life", "created": True})
    code, topics = admin(broker, "topics", "list")
    assert code == 0 and "life" in topics

    code, described = admin(broker, "topics", "describe", "life")
    assert code == 0 and [len(t["partitions"]) for t in described] == [2]
    assert described[0]["partitions"][0]["leader"] == 1

    code, configs = admin(broker, "configs", "describe", "--topic", "life")
    by_name = {entry["name"]: entry for entry in configs}
    assert by_name["retention.ms"]["value"] == "3600000"
    assert by_name["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"

    assert admin(broker, "configs", "alter", "--topic", "life", "--set", "segment.ms=100000",
                 "--delete", "retention.ms")[0] == 0
    code, configs = admin(broker, "configs", "describe", "--topic", "life")
    by_name = {entry["name"]: entry for entry in configs}
    assert by_name["segment.ms"]["value"] == "100000"
    assert by_name["retention.ms"]["source"] == "DEFAULT_CONFIG"

    assert admin(broker, "topics", "alter", "life", "--partitions", "5")[0] == 0
    code, described = admin(broker, "topics", "describe", "life")
    assert len(described[0]["partitions"]) == 5
    code, refused = admin(broker, "topics", "alter", "life", "--partitions", "3")
    assert code == 1 and "INVALID_PARTITIONS" in refused

    code, cluster = admin(broker, "cluster", "describe")
    assert cluster["controller"] == 1 and [b["id"] for b in cluster["brokers"]] == [1]

    assert admin(broker, "topics", "delete", "life") == (0, {"topic": "life", "deleted": True})
    code, refused = admin(broker, "topics", "delete", "life")
    assert code == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in refused and "life" in refused


def test_groups_lag_reset_and_delete(make_broker):
    import time

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = make_broker("group.initial.rebalance.delay.ms=0\n")
    address = broker.address
    client = AdminClient({"bootstrap.servers": address})
    next(iter(client.create_topics([NewTopic("lagging", 2, 1)]).values())).result(10)
    producer = Producer({"bootstrap.servers": address})
    for index in range(100):
        producer.produce("lagging", value=b"%d" % index, partition=index % 2)
    producer.flush(10)

    def read(count):
        member = Consumer({"bootstrap.servers": address, "group.id": "laggards", "auto.offset.reset": "earliest",
                           "enable.auto.commit": False})
        member.subscribe(["lagging"])
        seen = []
        deadline = time.time() + 30
        while len(seen) < count and time.time() < deadline:
            message = member.poll(0.1)
            if message is not None and message.error() is None:
                seen.append(message.value())
                member.commit(message=message, asynchronous=False)
        return member, seen

    member, seen = read(100)
    code, described = admin(address, "groups", "describe", "laggards")
    assert code == 0 and described["state"] == "Stable" and len(described["members"]) == 1
    assert sum(p["lag"] for p in described["partitions"]) == 0
    assert [p["log_end_offset"] for p in described["partitions"]] == [50, 50]
    # The group's partitions cannot be reset while it has a member.
    code, refused = admin(address, "groups", "reset-offsets", "laggards", "--topic", "lagging", "--to-earliest")
    assert code == 1 and "members" in refused
    member.close()

    code, planned = admin(address, "groups", "reset-offsets", "laggards", "--topic", "lagging", "--to-earliest")
    assert code == 0 and not planned["executed"] and [o["offset"] for o in planned["offsets"]] == [0, 0]
    code, described = admin(address, "groups", "describe", "laggards")
    assert sum(p["lag"] for p in described["partitions"]) == 0, "a dry run changes nothing"
    assert admin(address, "groups", "reset-offsets", "laggards", "--topic", "lagging", "--to-earliest",
                 "--execute")[0] == 0
    code, described = admin(address, "groups", "describe", "laggards")
    assert described["state"] == "Empty" and sum(p["lag"] for p in described["partitions"]) == 100

    # It re-reads everything.
    member, again = read(100)
    assert sorted(again) == sorted(seen)
    member.close()

    code, groups = admin(address, "groups", "list")
    assert groups == [{"group": "laggards", "state": "Empty"}]
    assert admin(address, "groups", "delete", "laggards") == (0, {"group": "laggards", "deleted": True})
    assert admin(address, "groups", "list") == (0, [])


def test_the_bootstrap_server_goes_before_or_after_the_subcommand(broker):
    assert admin(broker, "topics", "create", "placed")[0] == 0
    for arguments in (["-b", broker, "topics", "list", "--json"],
                      ["--bootstrap-server", broker, "--json", "topics", "list"],
                      [f"--bootstrap-server={broker}", "topics", "list", "--json"],
                      ["topics", "list", "-b", broker, "--json"]):
        code, out, err = admin_text(*arguments)
        assert code == 0, (arguments, err)
        assert "placed" in json.loads(out)
    code, out, _ = admin_text("-b", broker, "topics", "describe", "placed")
    assert code == 0 and out.startswith("Topic: placed")
    # Help is still the root's.
    code, out, _ = admin_text("--help")
    assert code == 0 and "SUBCOMMANDS" in out and "-b/--bootstrap-server" in out


def test_topics_describe_shows_the_configs_that_are_not_defaults(broker):
    assert admin(broker, "topics", "create", "tuned", "--config", "retention.ms=3600000",
                 "--config", "cleanup.policy=compact")[0] == 0
    code, described = admin(broker, "topics", "describe", "tuned")
    assert code == 0
    assert described[0]["configs"]["retention.ms"] == "3600000"
    assert described[0]["configs"]["cleanup.policy"] == "compact"
    assert "segment.ms" not in described[0]["configs"], "a default is not an override"
    code, out, _ = admin_text("topics", "describe", "tuned", "-b", broker)
    header = out.splitlines()[0]
    assert code == 0 and "Configs: cleanup.policy=compact,retention.ms=3600000" in header
    # Every topic, each with its own.
    assert admin(broker, "topics", "create", "plain")[0] == 0
    code, described = admin(broker, "topics", "describe")
    by_topic = {topic["topic"]: topic["configs"] for topic in described}
    assert code == 0 and by_topic["plain"] == {} and by_topic["tuned"]["retention.ms"] == "3600000"


def test_groups_describe_says_when_a_group_does_not_exist_or_has_no_offsets(make_broker):
    import time

    from confluent_kafka import Consumer

    broker = make_broker("group.initial.rebalance.delay.ms=0\n")
    code, out, err = admin_text("groups", "describe", "nobody", "-b", broker.address)
    assert code == 1 and out == "" and err == "logbroker-admin: Consumer group 'nobody' does not exist.\n"
    code, _, err = admin_text("groups", "describe", "nobody", "-b", broker.address, "--json")
    assert code == 1 and "does not exist" in err

    # A member joins and leaves without committing: the group is Empty and has no offsets.
    assert admin(broker.address, "topics", "create", "unread")[0] == 0
    member = Consumer({"bootstrap.servers": broker.address, "group.id": "idle", "enable.auto.commit": False})
    member.subscribe(["unread"])
    deadline = time.time() + 30
    while not member.assignment() and time.time() < deadline:
        member.poll(0.1)
    assert member.assignment()
    member.close()
    code, out, _ = admin_text("groups", "describe", "idle", "-b", broker.address)
    assert code == 0
    assert out.splitlines() == ["Group idle: Empty, 0 members", "Consumer group 'idle' has no committed offsets."]


def test_help_texts_name_every_command_and_each_default_once():
    code, out, _ = admin_text("--help")
    assert code == 0
    overview = out.split("USAGE:")[0]
    assert "consumer groups" in overview
    code, out, _ = admin_text("topics", "create", "--help")
    assert code == 0
    assert out.count("(default:") == 3, out  # --partitions, --replication-factor, -b
    assert "default: -1" not in out
    for command in (["topics"], ["topics", "list"], ["topics", "describe"], ["topics", "alter"], ["topics", "delete"],
                    ["configs"], ["configs", "describe"], ["configs", "alter"], ["cluster"], ["cluster", "describe"],
                    ["records"], ["records", "delete"], ["groups"], ["groups", "list"], ["groups", "describe"],
                    ["groups", "reset-offsets"], ["groups", "delete"]):
        code, out, err = admin_text(*command, "--help")
        assert code == 0 and out.startswith("OVERVIEW:"), (command, err)
