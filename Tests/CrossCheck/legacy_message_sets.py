#!/usr/bin/env python3
"""Decodes a legacy message set (magic 0 or 1) with kafka-python's reader and prints what it found, as JSON.

    legacy_message_sets.py FILE

One JSON object on stdout: {"batches": [...], "remaining": N}. Each batch (a top-level message: one message, or a
compressed wrapper) gives its magic, offset, compression_type, timestamp_type, timestamp, whether kafka-python's
CRC check passes, for lz4 wrappers whether the frame descriptor checksum is the correct one or Kafka's magic-0
variant (taken over the frame magic too), and its records as kafka-python yields them (offset, timestamp,
timestamp_type, key and value in hex or null, headers, CRC check). "remaining" is the count of bytes after the last
whole message, which a consumer ignores.

Exit status 0 when kafka-python read everything, 1 when it raised (the error on stderr), 2 on usage errors or when
kafka-python (with xxhash, which it needs for magic-0 lz4) is missing.
"""

import json
import struct
import sys

try:
    import xxhash
    from kafka.record.memory_records import MemoryRecords
except ImportError as error:  # the Swift test reports this as a failure, not a skip
    print("kafka-python or xxhash is not installed: %s" % error, file=sys.stderr)
    sys.exit(2)


def hexed(data):
    return None if data is None else bytes(data).hex()


def lz4_header_checksum(payload):
    """'correct', 'magic0' (Kafka's magic-0 variant), or 'other', for an lz4 frame."""
    flags = payload[4]
    end = 15 if flags & 0x08 else 7
    stored = payload[end - 1]
    if stored == (xxhash.xxh32(bytes(payload[4:end - 1])).intdigest() >> 8) & 0xFF:
        return "correct"
    if stored == (xxhash.xxh32(bytes(payload[0:end - 1])).intdigest() >> 8) & 0xFF:
        return "magic0"
    return "other"


def wrapper_value(message, magic):
    """The value bytes of one top-level message (the compressed inner set of a wrapper)."""
    key_at = 18 if magic == 0 else 26
    (key_length,) = struct.unpack_from(">i", message, key_at)
    value_at = key_at + 4 + max(key_length, 0)
    (value_length,) = struct.unpack_from(">i", message, value_at)
    return message[value_at + 4:value_at + 4 + value_length]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with open(sys.argv[1], "rb") as handle:
        data = handle.read()
    records = MemoryRecords(data)
    batches = []
    position = 0
    try:
        while records.has_next():
            batch = records.next_batch()
            size = batch.size_in_bytes
            message = data[position:position + size]
            position += size
            entry = {
                "magic": batch.magic,
                "offset": batch.base_offset,
                "compression_type": batch.compression_type,
                "timestamp_type": batch.timestamp_type,
                "timestamp": batch._timestamp,
                "crc_ok": batch.validate_crc(),
                "lz4_header_checksum": None,
                "records": [],
            }
            if batch.compression_type == 3:
                entry["lz4_header_checksum"] = lz4_header_checksum(wrapper_value(message, batch.magic))
            for record in batch:
                entry["records"].append({
                    "offset": record.offset,
                    "timestamp": record.timestamp,
                    "timestamp_type": record.timestamp_type,
                    "key": hexed(record.key),
                    "value": hexed(record.value),
                    "headers": [[key, hexed(value)] for key, value in record.headers],
                    "crc_ok": record.validate_crc(),
                })
            batches.append(entry)
    except Exception as error:  # noqa: BLE001 - any failure to read is the finding
        print("kafka-python could not read the message set: %r" % (error,), file=sys.stderr)
        sys.exit(1)
    json.dump({"batches": batches, "remaining": len(data) - position}, sys.stdout)


if __name__ == "__main__":
    main()
