"""Writes murmur2-kafka-python.txt: for keys of every length 0-40 and some text keys, the partition kafka-python's
DefaultPartitioner gives each key among 1, 3, 6, 7, 50 and 1000 partitions, as 'hexkey count partition' lines.
The Swift partitioner is tested against these, so the fixture must come from kafka-python, not from LogBroker."""
import random

from kafka.partitioner.default import murmur2

COUNTS = [1, 3, 6, 7, 50, 1000]
rng = random.Random(20261129)
keys = [bytes(rng.randrange(256) for _ in range(length)) for length in range(41) for _ in range(3)]
keys += [text.encode() for text in ["key-0", "key-1", "user-42", "orders", "é-ünïcødé", "a" * 100]]
with open("murmur2-kafka-python.txt", "w") as out:
    for key in keys:
        for count in COUNTS:
            out.write(f"{key.hex()} {count} {(murmur2(key) & 0x7fffffff) % count}\n")
