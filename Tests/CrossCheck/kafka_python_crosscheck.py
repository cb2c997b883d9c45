#!/usr/bin/env python3
"""Cross-checks LogBroker's generated Kafka codecs against kafka-python, an independent implementation.

    generate OUT.jsonl            random instances of every allowlisted API request and response that
                                  kafka-python has, at every version both sides know, encoded by kafka-python:
                                  one {"id", "name", "version", "hex"} object per line.
    verify IN.jsonl ORIGINAL.jsonl
                                  IN holds LogBroker's re-encodings (same ids). Each is decoded by kafka-python
                                  and re-encoded; the bytes must equal kafka-python's original encoding.

Exit status 0 when everything matched, 1 on any mismatch (each printed as "MISMATCH <name> v<version>: ..."),
2 on usage errors or when kafka-python is missing. Needs kafka-python 3.0.x (pip install kafka-python==3.0.12).
"""

import importlib
import json
import os
import pkgutil
import random
import re
import sys
import uuid

try:
    import kafka
    import kafka.protocol
    from kafka.protocol.api_message import ApiMessage
except ImportError as error:  # the Swift test reports this as a failure, not a skip
    print("kafka-python is not installed: %s" % error, file=sys.stderr)
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESSAGES = os.path.join(ROOT, "Sources", "KafkaMessages")
SEEDS_PER_VERSION = 6


def allowlisted_names():
    names = []
    with open(os.path.join(MESSAGES, "allowlist.txt"), encoding="utf-8") as handle:
        for line in handle:
            name = line.split("#", 1)[0].strip()
            if name.endswith("Request") or name.endswith("Response"):
                if name not in ("RequestHeader", "ResponseHeader"):
                    names.append(name)
    return names


def parse_versions(text):
    text = text.strip()
    if text == "none":
        return None
    if text.endswith("+"):
        return (int(text[:-1]), 32767)
    if "-" in text:
        low, high = text.split("-")
        return (int(low), int(high))
    return (int(text), int(text))


def our_valid_versions(name):
    with open(os.path.join(MESSAGES, "Definitions", name + ".json"), encoding="utf-8") as handle:
        text = "\n".join(line for line in handle if not line.lstrip().startswith("//"))
    return parse_versions(json.loads(text)["validVersions"])


def kafka_python_classes():
    for module in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
        try:
            importlib.import_module(module.name)
        except Exception:  # optional modules (compression codecs, ...) may not import; not ours to judge
            pass
    classes = {}
    pending = [ApiMessage]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        json_def = getattr(cls, "_json", None)
        if json_def and getattr(cls, "_class_version", None) is None:
            classes.setdefault(json_def["name"], cls)
    return classes


# ---------------------------------------------------------------------------------------------------------------
# Random values, driven by kafka-python's own parsed schema.

INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
}
CHARACTERS = ["a", "b", "z", "0", "-", "_", ".", " ", "é", "ß", "漢", "🙂"]


def random_int(rng, type_str):
    low, high = INT_RANGES[type_str]
    choice = rng.randrange(6)
    if choice == 0:
        return 0
    if choice == 1:
        return high
    if choice == 2:
        return low
    if choice == 3:
        return -1 if low < 0 else 1
    return rng.randint(low, high)


def random_value(rng, field, version):
    nullable = field.nullable_for_version_q(version)
    if field.is_struct_array() or field.is_array():
        if nullable and rng.randrange(5) == 0:
            return None
        count = rng.randrange(4)
        if field.is_struct_array():
            return [random_struct(rng, field.data_class, field.fields, version) for _ in range(count)]
        return [random_primitive(rng, field.array_of.type_str, False) for _ in range(count)]
    if field.is_struct():
        return random_struct(rng, field.data_class, field.fields, version)
    return random_primitive(rng, field.type_str, nullable)


def random_primitive(rng, type_str, nullable):
    if type_str in INT_RANGES:
        return random_int(rng, type_str)
    if type_str == "bool":
        return rng.random() < 0.5
    if type_str == "float64":
        return rng.randrange(-1000000, 1000000) / 64.0
    if type_str == "bitfield":  # kafka-python's view of an int32 authorized-operations mask: a set of bits
        return None if rng.randrange(5) == 0 else set(rng.sample(range(32), rng.randrange(5)))
    if type_str == "uuid":
        return uuid.UUID(int=0 if rng.randrange(4) == 0 else rng.getrandbits(128))
    if nullable and rng.randrange(5) == 0:
        return None
    if type_str == "string":
        return "".join(rng.choice(CHARACTERS) for _ in range(rng.randrange(7)))
    if type_str in ("bytes", "records"):
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(8)))
    raise ValueError("unknown type %s" % type_str)


def random_fields(rng, fields, version):
    if isinstance(fields, dict):
        fields = fields.values()
    values = {}
    for field in fields:
        if not field.for_version_q(version):
            continue
        if field.tagged_field_q(version) and rng.random() < 0.4:
            continue  # leave the tagged field at its default: not written
        value = random_value(rng, field, version)
        if field.tagged_field_q(version) and field.is_struct() and struct_is_default(value, field, version):
            # Known kafka-python difference: it writes a tagged struct field whenever the attribute is set, even
            # when every member has its default (e.g. FetchRequest.ReplicaState with ReplicaId = -1 and
            # ReplicaEpoch = -1). Kafka writes a tagged field only if it differs from the default
            # (MessageDataGenerator compares with `new ReplicaState()`), and so does LogBroker, which matters for
            # librdkafka 2.0.2. So such values are left unset here, where both agree: the tag is not written.
            continue
        values[field.name] = value
    return values


def struct_is_default(value, field, version):
    members = field.fields.values() if isinstance(field.fields, dict) else field.fields
    return all(getattr(value, member.name) == member.default
               for member in members if member.for_version_q(version))


def random_struct(rng, data_class, fields, version):
    return data_class(version=version, **random_fields(rng, fields, version))


def random_message(rng, cls, version):
    values = random_fields(rng, cls._struct.fields.values(), version)
    if cls._json["name"] == "ApiVersionsResponse" and version > 0:
        # Known exception, not a codec difference: kafka-python (kafka/protocol/metadata/api_versions.py) decodes
        # every ApiVersionsResponse whose error_code is non-zero with the v0 layout, because a broker answers an
        # ApiVersions version it does not support with UNSUPPORTED_VERSION in the v0 layout (KIP-511). Kafka's Java
        # client tries the requested version first and falls back to v0 only if that fails. LogBroker's codec
        # follows the JSON schema; so non-zero error codes are generated only at v0, where both rules agree.
        values["error_code"] = 0
    return cls(version=version, **values)


# ---------------------------------------------------------------------------------------------------------------


def versions_both_know(name, cls):
    ours = our_valid_versions(name)
    theirs = parse_versions(cls._json["validVersions"])
    low, high = max(ours[0], theirs[0]), min(ours[1], theirs[1])
    return range(low, high + 1)


def generate(path):
    classes = kafka_python_classes()
    rng = random.Random(20241025)
    count = 0
    skipped = []
    with open(path, "w", encoding="utf-8") as out:
        for name in allowlisted_names():
            cls = classes.get(name)
            if cls is None:
                skipped.append(name)
                continue
            for version in versions_both_know(name, cls):
                for _ in range(SEEDS_PER_VERSION):
                    message = random_message(rng, cls, version)
                    encoded = bytes(message.encode(version=version))
                    record = {"id": count, "name": name, "version": version, "hex": encoded.hex()}
                    out.write(json.dumps(record) + "\n")
                    count += 1
    print("generated %d encodings; kafka-python lacks: %s" % (count, ", ".join(skipped) or "nothing"))
    return 0


def load(path):
    with open(path, encoding="utf-8") as handle:
        return {record["id"]: record for record in map(json.loads, handle)}


def verify(ours_path, original_path):
    classes = kafka_python_classes()
    ours, original = load(ours_path), load(original_path)
    mismatches = 0
    for record_id, expected in sorted(original.items()):
        name, version = expected["name"], expected["version"]
        actual = ours.get(record_id)
        if actual is None:
            print("MISMATCH %s v%d: LogBroker produced no encoding for id %d" % (name, version, record_id))
            mismatches += 1
            continue
        try:
            decoded = classes[name].decode(bytes.fromhex(actual["hex"]), version=version)
            if not hasattr(decoded, "_header"):
                decoded._header = None  # decode() bypasses __init__; encode() reads the attribute
            again = bytes(decoded.encode(version=version)).hex()
        except Exception as error:  # report every failure, keep going
            print("MISMATCH %s v%d: kafka-python cannot decode LogBroker's bytes %s: %r"
                  % (name, version, actual["hex"], error))
            mismatches += 1
            continue
        if again != expected["hex"]:
            print("MISMATCH %s v%d: kafka-python encoded %s, LogBroker %s, kafka-python re-encoded that as %s"
                  % (name, version, expected["hex"], actual["hex"], again))
            mismatches += 1
    print("verified %d encodings, %d mismatches" % (len(original), mismatches))
    return 1 if mismatches else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "generate":
        return generate(argv[2])
    if len(argv) == 4 and argv[1] == "verify":
        return verify(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
