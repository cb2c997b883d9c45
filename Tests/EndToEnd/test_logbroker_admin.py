"""logbroker-admin drives a topic's whole life, and its --json output parses."""
import json
import subprocess

from conftest import tool_binary


def admin(broker, *arguments):
    result = subprocess.run([tool_binary("logbroker-admin"), *arguments, "-b", broker, "--json"],
                            capture_output=True, timeout=60)
    return result.returncode, json.loads(result.stdout) if result.returncode == 0 else result.stderr.decode()


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
