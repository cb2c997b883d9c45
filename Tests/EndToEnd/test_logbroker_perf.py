"""logbroker-perf against a real broker: its counts match what kcat reads back, its JSON parses, the rate limit
holds within 10%, end-to-end latencies are measured, and payload files are used."""
import json
import subprocess

from conftest import tool_binary


def perf(*arguments, timeout=120):
    result = subprocess.run([tool_binary("logbroker-perf"), *arguments, "--json"], capture_output=True, timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def kcat_count(address, topic):
    result = subprocess.run(["kcat", "-b", address, "-C", "-t", topic, "-e", "-q", "-f", "%s\n"],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_producer_counts_match_what_a_consumer_reads_back(broker):
    sent = perf("producer", "-b", broker, "--topic", "counted", "--partitions", "3", "--num-records", "30000",
                "--record-size", "100", "--acks", "1", "--compression", "lz4")
    assert (sent["mode"], sent["records_sent"], sent["records_acknowledged"], sent["records_failed"]) == \
        ("producer", 30000, 30000, 0)
    latency = sent["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["p999"] <= latency["max"]
    values = kcat_count(broker, "counted")
    assert len(values) == 30000 and all(len(value) == 100 for value in values)

    read = perf("consumer", "-b", broker, "--topic", "counted", "--messages", "30000")
    assert (read["records_received"], read["records_failed"]) == (30000, 0)
    assert read["records_per_second"] > 0 and read["mb_per_second"] > 0
    grouped = perf("consumer", "-b", broker, "--topic", "counted", "--messages", "30000", "--group", "perf")
    assert grouped["records_received"] == 30000


def test_the_rate_limit_holds_within_ten_percent(broker):
    result = perf("producer", "-b", broker, "--topic", "paced", "--num-records", "6000", "--record-size", "50",
                  "--throughput", "2000", "--linger-ms", "0")
    assert result["records_acknowledged"] == 6000
    assert 1800 <= result["records_per_second"] <= 2200, result


def test_end_to_end_measures_send_to_receipt_latency(broker):
    result = perf("end-to-end", "-b", broker, "--topic", "roundtrip", "--partitions", "2", "--num-records", "3000",
                  "--record-size", "64", "--throughput", "3000", "--acks", "all")
    assert (result["records_sent"], result["records_acknowledged"], result["records_received"]) == (3000, 3000, 3000)
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 10000


def test_payload_file_lines_are_the_values(broker, tmp_path):
    payloads = tmp_path / "payloads.txt"
    payloads.write_text("alpha\nbeta\ngamma\n")
    result = perf("producer", "-b", broker, "--topic", "payloads", "--num-records", "9", "--payload-file",
                  str(payloads), "--acks", "all")
    assert result["records_acknowledged"] == 9
    assert sorted(kcat_count(broker, "payloads")) == sorted([b"alpha", b"beta", b"gamma"] * 3)


def test_bad_options_are_refused_with_a_message():
    result = subprocess.run([tool_binary("logbroker-perf"), "producer", "--topic", "t", "--num-records", "1"],
                            capture_output=True, timeout=30)
    assert result.returncode != 0 and b"--record-size" in result.stderr
