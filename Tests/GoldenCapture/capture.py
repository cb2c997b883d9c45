#!/usr/bin/env python3
"""Captures golden request frames from real Kafka clients.

Runs a fake broker (fake_broker.py) and drives, against it:
  - kcat (librdkafka 2.0.2): one produce per codec, `-Q` (ListOffsets by timestamp), `-L`;
  - confluent-kafka 2.16.1: a Producer per codec, a Consumer's offsets_for_times;
  - kafka-python 3.0.12: a KafkaProducer per codec (idempotent by default), a
    KafkaConsumer's offsets_for_times.
Every Produce batch is checked with kafka-python's decoders (one magic-2 batch
with the codec asked for, holding exactly the records sent) before anything is
written. Duplicate frames are dropped. Output: one file per request frame
(request header + body, without the 4-byte size) under
Tests/KafkaMessagesTests/Fixtures/golden/<client>/, and golden/manifest.json.

Usage: python3 Tests/GoldenCapture/capture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import confluent_kafka  # noqa: E402
import kafka  # noqa: E402
from kafka.record.memory_records import MemoryRecords  # noqa: E402

from fake_broker import ADVERTISED, FakeBroker, api_name, parse_request_header  # noqa: E402
from kafka.protocol.api_key import ApiKey  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
TOPIC = "golden"
RECORDS_PER_BATCH = 6
BASE_TIMESTAMP = 1700000000000  # 2023-11-14T22:13:20Z, used where the client lets us set it
QUERY_TIMESTAMP = BASE_TIMESTAMP + 2


def make_records(client: str, codec: str, *, timestamps: bool, header_every_record: dict | None = None):
    """Deterministic records: key-<i>, a value repeating "<client>-<codec>-<i>", some headers."""
    out = []
    for i in range(RECORDS_PER_BATCH):
        word = f"{client}-{codec}-{i}"
        value = " ".join([word] * 4)
        if header_every_record is not None:
            headers = list(header_every_record.items())
        else:
            headers = [("source", client), ("seq", str(i))] if i % 2 == 0 else []
        out.append({
            "key": f"key-{i}",
            "value": value,
            "headers": headers,
            "timestamp": BASE_TIMESTAMP + i if timestamps else None,
        })
    return out


# --- client drivers ----------------------------------------------------------

def kcat_version():
    out = subprocess.run(["kcat", "-V"], capture_output=True, text=True, check=True).stdout
    kc = re.search(r"^Version ([0-9.]+)", out, re.MULTILINE)
    rd = re.search(r"librdkafka ([0-9.]+)", out)
    return f"kcat {kc.group(1) if kc else '?'} (librdkafka {rd.group(1) if rd else '?'})"


def run_kcat(args, stdin=None):
    res = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"kcat {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def kcat_steps(broker):
    for codec in CODECS:
        headers = {"source": "kcat", "codec": codec}
        records = make_records("kcat", codec, timestamps=False, header_every_record=headers)
        lines = "".join(f"{r['key']}:{r['value']}\n" for r in records)
        args = ["-b", broker.bootstrap, "-P", "-t", TOPIC, "-p", "0", "-K", ":", "-z", codec,
                "-X", "linger.ms=200"]
        for k, v in headers.items():
            args += ["-H", f"{k}={v}"]
        yield {"step": "produce", "codec": codec, "records": records,
               "command": "kcat " + " ".join(a if a != broker.bootstrap else "HOST:PORT" for a in args)}, \
            (lambda a=args, s=lines: run_kcat(a, s))
    q = ["-b", broker.bootstrap, "-Q", "-t", f"{TOPIC}:0:{QUERY_TIMESTAMP}"]
    yield {"step": "list-offsets", "timestamp": QUERY_TIMESTAMP, "command": f"kcat -b HOST:PORT -Q -t {TOPIC}:0:{QUERY_TIMESTAMP}"}, \
        (lambda: run_kcat(q))
    yield {"step": "metadata", "command": "kcat -b HOST:PORT -L"}, (lambda: run_kcat(["-b", broker.bootstrap, "-L"]))


def confluent_steps(broker):
    from confluent_kafka import Consumer, Producer, TopicPartition

    def produce(codec, records):
        errors = []
        p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 200})
        for r in records:
            p.produce(TOPIC, value=r["value"].encode(), key=r["key"].encode(), partition=0,
                      headers=[(k, v.encode()) for k, v in r["headers"]] or None, timestamp=r["timestamp"],
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        left = p.flush(30)
        if left or errors:
            raise RuntimeError(f"confluent-kafka produce {codec}: {left} not delivered, errors {errors}")

    for codec in CODECS:
        records = make_records("confluent", codec, timestamps=True)
        yield {"step": "produce", "codec": codec, "records": records,
               "command": f"Producer(compression.type={codec}, linger.ms=200).produce x{len(records)}; flush()"}, \
            (lambda c=codec, r=records: produce(c, r))

    def offsets_for_times():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "golden-group"})
        try:
            got = c.offsets_for_times([TopicPartition(TOPIC, 0, QUERY_TIMESTAMP)], timeout=20)
            if got[0].error:
                raise RuntimeError(f"offsets_for_times: {got[0].error}")
        finally:
            c.close()

    yield {"step": "list-offsets", "timestamp": QUERY_TIMESTAMP,
           "command": f"Consumer(group.id=golden-group).offsets_for_times([{TOPIC}:0 @ {QUERY_TIMESTAMP}])"}, \
        offsets_for_times


def kafka_python_steps(broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    def produce(codec, records):
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=None if codec == "none" else codec,
                          linger_ms=200)
        try:
            futures = [p.send(TOPIC, value=r["value"].encode(), key=r["key"].encode(), partition=0,
                              headers=[(k, v.encode()) for k, v in r["headers"]], timestamp_ms=r["timestamp"])
                       for r in records]
            p.flush(30)
            for f in futures:
                f.get(timeout=10)
        finally:
            p.close(timeout=10)

    for codec in CODECS:
        records = make_records("kafka-python", codec, timestamps=True)
        yield {"step": "produce", "codec": codec, "records": records,
               "command": f"KafkaProducer(compression_type={codec!r}, linger_ms=200).send x{len(records)}; flush()"}, \
            (lambda c=codec, r=records: produce(c, r))

    def offsets_for_times():
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
        try:
            tp = TopicPartition(TOPIC, 0)
            got = c.offsets_for_times({tp: QUERY_TIMESTAMP})
            if got.get(tp) is None:
                raise RuntimeError(f"offsets_for_times returned {got}")
        finally:
            c.close()

    yield {"step": "list-offsets", "timestamp": QUERY_TIMESTAMP,
           "command": f"KafkaConsumer().offsets_for_times({{{TOPIC}:0: {QUERY_TIMESTAMP}}})"}, offsets_for_times


CLIENTS = [
    ("kcat", kcat_version, kcat_steps),
    ("confluent-kafka",
     lambda: f"confluent-kafka {confluent_kafka.version()} (librdkafka {confluent_kafka.libversion()[0]})",
     confluent_steps),
    ("kafka-python", lambda: f"kafka-python {kafka.__version__}", kafka_python_steps),
]


# --- checks ------------------------------------------------------------------

def check_produce(frame, step):
    """The Produce request must hold one magic-2 batch with the codec asked for and the records sent."""
    req = frame.request
    where = f"{frame.label[0]} {step['codec']} (Produce v{frame.api_version})"
    if len(req.topic_data) != 1 or len(req.topic_data[0].partition_data) != 1:
        raise AssertionError(f"{where}: expected one topic-partition")
    t = req.topic_data[0]
    p = t.partition_data[0]
    records = MemoryRecords(bytes(p.records))
    batches = []
    while records.has_next():
        batches.append(records.next_batch())
    if len(batches) != 1:
        raise AssertionError(f"{where}: expected one batch, got {len(batches)}")
    b = batches[0]
    if b.magic != 2:
        raise AssertionError(f"{where}: magic {b.magic}, expected 2 (check the advertised Produce/Fetch ranges)")
    if b.attributes & 7 != CODEC_ID[step["codec"]]:
        raise AssertionError(f"{where}: codec {b.attributes & 7}, asked for {CODEC_ID[step['codec']]} "
                             f"(the client fell back; check the advertised ranges)")
    if not b.validate_crc():
        raise AssertionError(f"{where}: CRC-32C mismatch")
    got = [{"key": r.key.decode() if r.key is not None else None,
            "value": r.value.decode() if r.value is not None else None,
            "headers": [(k, v.decode()) for k, v in r.headers],
            "timestamp": r.timestamp} for r in b]
    want = step["records"]
    for g, w in zip(got, want):
        if (g["key"], g["value"], g["headers"]) != (w["key"], w["value"], [tuple(h) for h in w["headers"]]):
            raise AssertionError(f"{where}: record {g} != sent {w}")
        if w["timestamp"] is not None and g["timestamp"] != w["timestamp"]:
            raise AssertionError(f"{where}: timestamp {g['timestamp']} != sent {w['timestamp']}")
    if len(got) != len(want):
        raise AssertionError(f"{where}: {len(got)} records in the batch, {len(want)} sent")
    info = {
        "topic": t.name,
        "partition": p.index,
        "acks": req.acks,
        "transactional_id": req.transactional_id,
        "batch": {
            "magic": b.magic,
            "attributes": b.attributes,
            "records_count": b.records_count,
            "last_offset_delta": b.last_offset_delta,
            "producer_id": b.producer_id,
            "producer_epoch": b.producer_epoch,
            "base_sequence": b.base_sequence,
            "first_timestamp": b.first_timestamp,
            "max_timestamp": b.max_timestamp,
        },
    }
    if CODEC_ID[step["codec"]] == 2:
        # Java and kafka-python write xerial-framed snappy, librdkafka raw snappy (CLIENTS.md 3.3).
        payload = bytes(p.records)[61:]
        info["snappy_framing"] = "xerial" if payload.startswith(b"\x82SNAPPY\x00") else "raw"
    return info


# --- main --------------------------------------------------------------------

def request_body(frame: bytes) -> bytes:
    return frame[parse_request_header(frame)[4]:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "Tests", "KafkaMessagesTests", "Fixtures", "golden"))
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args()

    broker = FakeBroker().start()
    entries = []  # (client, client_version, frame, extra)
    try:
        for client, version_fn, steps_fn in CLIENTS:
            client_version = version_fn()
            seen = set()
            for step, run in steps_fn(broker):
                broker.label = (client, step["step"], step.get("codec"))
                start = len(broker.frames)
                run()
                time.sleep(0.3)  # let trailing requests on other connections land
                with broker.lock:
                    frames = [f for f in broker.frames[start:] if f.label == broker.label]
                if args.verbose:
                    for f in frames:
                        print(f"  {client} {step['step']} {step.get('codec') or ''}: conn {f.conn} "
                              f"{api_name(f.api_key)} v{f.api_version} ({len(f.frame)} B)")
                produce = [f for f in frames if f.api_key == ApiKey.Produce]
                if step["step"] == "produce" and len(produce) != 1:
                    raise AssertionError(f"{client} {step['codec']}: {len(produce)} Produce requests, expected 1")
                for f in frames:
                    extra = {"step": step["step"], "command": step["command"]}
                    if f.api_key == ApiKey.Produce:
                        extra.update(codec=step["codec"], codec_id=CODEC_ID[step["codec"]])
                        extra.update(check_produce(f, step))
                        extra["records"] = [
                            {"key": r["key"], "value": r["value"],
                             "headers": [{"key": k, "value": v} for k, v in r["headers"]],
                             "timestamp": r["timestamp"]}
                            for r in step["records"]]
                        entries.append((client, client_version, f, extra))
                        continue
                    if f.api_key == ApiKey.ListOffsets:
                        extra["timestamp"] = step.get("timestamp")
                    # A duplicate is the same request body at the same version (the header's
                    # correlation id and client id may differ).
                    key = (f.api_key, f.api_version, request_body(f.frame))
                    if key in seen:
                        continue
                    seen.add(key)
                    entries.append((client, client_version, f, extra))
    finally:
        broker.stop()
    if broker.errors:
        print("fake broker reported:", *broker.errors, sep="\n  ", file=sys.stderr)

    # Write the fixtures.
    out = os.path.abspath(args.out)
    for client, _, _ in CLIENTS:
        shutil.rmtree(os.path.join(out, client), ignore_errors=True)
    manifest_frames = []
    counters = {}
    for client, client_version, f, extra in entries:
        counters[client] = counters.get(client, 0) + 1
        name = f"{counters[client]:02d}-{api_name(f.api_key)}-v{f.api_version}.bin"
        rel = f"{client}/{name}"
        os.makedirs(os.path.join(out, client), exist_ok=True)
        with open(os.path.join(out, rel), "wb") as fh:
            fh.write(f.frame)
        entry = {
            "file": rel,
            "client": client,
            "client_version": client_version,
            "api_key": int(f.api_key),
            "api_name": api_name(f.api_key),
            "api_version": f.api_version,
            "correlation_id": f.correlation_id,
            "client_id": f.client_id,
            "size": len(f.frame),
        }
        entry.update(extra)
        manifest_frames.append(entry)
    manifest = {
        "about": "Request frames (request header + body, without the 4-byte size prefix) captured from real "
                 "clients by Tests/GoldenCapture/capture.py against its fake broker. Record keys, values and "
                 "header values are UTF-8 text; timestamp null means the client chose it (kcat).",
        "advertised_api_versions": [
            {"api_key": int(k), "api_name": api_name(k), "min_version": lo, "max_version": hi}
            for k, lo, hi in ADVERTISED],
        "frames": manifest_frames,
    }
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
    for e in manifest_frames:
        codec = f" {e['codec']}" if "codec" in e else ""
        print(f"{e['file']}: {e['api_name']} v{e['api_version']}{codec}")
    print(f"{len(manifest_frames)} frames written to {os.path.relpath(out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
