"""Writes the magic 0/1 message sets in this directory, made by kafka-python 3.0.12's own legacy builder
(kafka.record.legacy_records.LegacyRecordBatchBuilder, what its KafkaProducer sends to brokers older than 0.11),
and manifest.json, which lists each file's magic, codec, wrapper CRC and records (offset, timestamp, key, value,
CRC-32 as the builder reported it). The Swift tests read and convert these, so they must come from kafka-python,
not from LogBroker. Run from anywhere: python3 make_legacy_message_sets.py (needs bin/setup's kafka-python extras:
lz4, python-snappy and xxhash, which the magic 0 lz4 framing uses).

gzip headers carry a modification time; it is pinned to 0 so that a re-run writes the same bytes."""
import gzip
import json
import os
import struct
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.legacy_records import LegacyRecordBatch, LegacyRecordBatchBuilder

HERE = os.path.dirname(os.path.abspath(__file__))
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3}
BASE_TIMESTAMP = 1700000000000


class PinnedClock:
    """Stands in for the time module inside gzip, so the gzip header's mtime is 0."""

    @staticmethod
    def time():
        return 0


gzip.time = PinnedClock


def records(magic, codec):
    """Six records: ordinary ones, a null key, a null value (a tombstone) and an empty value."""
    rows = []
    for i in range(6):
        key = None if i == 1 else f"key-{i}".encode()
        value = (f"legacy-v{magic}-{codec}-{i} " * 4).encode()
        if i == 2:
            value = None
        elif i == 3:
            value = b""
        rows.append((key, value))
    return rows


def build(magic, codec, offsets):
    builder = LegacyRecordBatchBuilder(magic=magic, compression_type=CODECS[codec], batch_size=1 << 20)
    written = []
    for (key, value), offset in zip(records(magic, codec), offsets):
        timestamp = BASE_TIMESTAMP + offset if magic == 1 else None
        metadata = builder.append(offset, timestamp=timestamp, key=key, value=value)
        assert metadata is not None
        written.append({
            "offset": offset,
            "timestamp": metadata.timestamp,
            "key": None if key is None else key.decode(),
            "value": None if value is None else value.decode(),
            "crc": metadata.crc,
        })
    data = bytes(builder.build())
    # kafka-python's reader checks what was written: one wrapper (or one message per record), valid CRCs.
    wrapper_crc = None
    if codec != "none":
        batch = LegacyRecordBatch(data, magic)
        assert batch.validate_crc()
        assert [record.value for record in batch] == [None if r["value"] is None else r["value"].encode()
                                                     for r in written]
        wrapper_crc = struct.unpack_from(">I", data, 12)[0]
    return data, written, wrapper_crc


def main():
    sets = []
    plan = [(magic, codec, list(range(6)), f"v{magic}-{codec}") for magic in (0, 1) for codec in CODECS]
    # Inner offsets that go backwards (5, 4, ..., 0): Kafka accepts them and assigns offsets afresh.
    plan.append((1, "gzip", list(range(5, -1, -1)), "v1-gzip-backwards"))
    for magic, codec, offsets, name in plan:
        data, written, wrapper_crc = build(magic, codec, offsets)
        file = f"{name}.bin"
        with open(os.path.join(HERE, file), "wb") as out:
            out.write(data)
        sets.append({"file": file, "magic": magic, "codec": codec, "wrapper_crc": wrapper_crc, "records": written})
    manifest = {"generator": "kafka-python 3.0.12 LegacyRecordBatchBuilder", "sets": sets}
    with open(os.path.join(HERE, "manifest.json"), "w") as out:
        json.dump(manifest, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
