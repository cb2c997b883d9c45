"""Checks the committed golden frames against their manifest with kafka-python's decoders.

Runs offline (no client, no broker): every file is listed, every frame's header
matches the manifest, every body decodes at its version and re-encodes to the
same bytes, and every Produce frame holds one magic-2 batch with the codec and
records the manifest names.
"""

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fake_broker import REQUEST_CLASSES, parse_request_header  # noqa: E402
from kafka.record.memory_records import MemoryRecords  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(HERE), "KafkaMessagesTests", "Fixtures", "golden")
with open(os.path.join(GOLDEN, "manifest.json")) as fh:
    MANIFEST = json.load(fh)
FRAMES = MANIFEST["frames"]


def read(entry):
    with open(os.path.join(GOLDEN, entry["file"]), "rb") as fh:
        return fh.read()


def test_manifest_lists_every_file():
    on_disk = set()
    for dirpath, _, files in os.walk(GOLDEN):
        for f in files:
            if f.endswith(".bin"):
                on_disk.add(os.path.relpath(os.path.join(dirpath, f), GOLDEN))
    assert on_disk == {e["file"] for e in FRAMES}


def test_every_client_produced_every_codec():
    produced = {(e["client"], e["codec"]) for e in FRAMES if e["api_name"] == "Produce"}
    for client in ("kcat", "confluent-kafka", "kafka-python"):
        for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
            assert (client, codec) in produced


@pytest.mark.parametrize("entry", FRAMES, ids=[e["file"] for e in FRAMES])
def test_frame_header_and_body(entry):
    frame = read(entry)
    assert len(frame) == entry["size"]
    api_key, version, corr, client_id, body_pos = parse_request_header(frame)
    assert (api_key, version, corr, client_id) == (
        entry["api_key"], entry["api_version"], entry["correlation_id"], entry["client_id"])
    assert body_pos is not None
    cls = REQUEST_CLASSES[api_key]
    body = frame[body_pos:]
    request = cls.decode(body, version=version, header=False)
    request._header = None  # decode() bypasses __init__; encode() reads this slot
    assert request.encode(version=version) == body


@pytest.mark.parametrize("entry", [e for e in FRAMES if e["api_name"] == "Produce"],
                         ids=[e["file"] for e in FRAMES if e["api_name"] == "Produce"])
def test_produce_batch(entry):
    frame = read(entry)
    api_key, version, _, _, body_pos = parse_request_header(frame)
    request = REQUEST_CLASSES[api_key].decode(frame[body_pos:], version=version, header=False)
    assert request.acks == entry["acks"]
    [topic] = request.topic_data
    [partition] = topic.partition_data
    assert (topic.name, partition.index) == (entry["topic"], entry["partition"])
    records = MemoryRecords(bytes(partition.records))
    batch = records.next_batch()
    assert not records.has_next()
    assert batch.magic == 2
    assert batch.attributes & 7 == entry["codec_id"]
    assert batch.validate_crc()
    got = [(r.key.decode(), r.value.decode(), [(k, v.decode()) for k, v in r.headers], r.timestamp) for r in batch]
    want = [(r["key"], r["value"], [(h["key"], h["value"]) for h in r["headers"]], r["timestamp"])
            for r in entry["records"]]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:3] == w[:3]
        if w[3] is not None:
            assert g[3] == w[3]
