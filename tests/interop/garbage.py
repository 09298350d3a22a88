"""Writes N garbage records to a request topic with librdkafka (an independent client).

  garbage.py BOOTSTRAP TOPIC N OVERSIZE_BYTES

Kinds, in turn: random bytes and no headers; random header names and values; a krpc-id of the
wrong length; krpc-v = 9 with a readable id and reply-to; a non-UTF-8 method; a valid-looking
envelope missing krpc-sent-ms; and every 100th record a value of OVERSIZE_BYTES.
Prints the number of records of each kind as JSON.
"""
import json
import os
import random
import sys

from confluent_kafka import Producer

bootstrap, topic, n, oversize = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 10_000_000})
rng = random.Random(7)
kinds = {}


def rid():
    return os.urandom(16)


def make(i):
    if i % 100 == 99:
        return "oversize", os.urandom(oversize), [("krpc-v", b"\x01"), ("krpc-id", rid())]
    k = i % 6
    if k == 0:
        return "random", os.urandom(rng.randint(0, 300)), []
    if k == 1:
        return "random-headers", os.urandom(20), [(os.urandom(8).hex(), os.urandom(rng.randint(0, 20))) for _ in range(rng.randint(1, 6))]
    if k == 2:
        return "short-id", b"\x90", [("krpc-v", b"\x01"), ("krpc-id", b"abc"), ("krpc-method", b"add")]
    if k == 3:
        return "new-version", b"\x90", [("krpc-v", b"\x09"), ("krpc-id", rid()), ("krpc-method", b"add"),
                                         ("krpc-reply-topic", b"krpc.replies"), ("krpc-reply-partition", b"\x00\x00\x00\x00")]
    if k == 4:
        return "bad-method", b"\x90", [("krpc-v", b"\x01"), ("krpc-id", rid()), ("krpc-method", b"\xff\xfe"),
                                        ("krpc-sent-ms", (0).to_bytes(8, "big"))]
    return "no-sent", b"\x92\x01\x02", [("krpc-v", b"\x01"), ("krpc-id", rid()), ("krpc-method", b"add")]


errors = []
for i in range(n):
    kind, value, headers = make(i)
    kinds[kind] = kinds.get(kind, 0) + 1
    while True:
        try:
            p.produce(topic, value=value, headers=headers, on_delivery=lambda err, _m: errors.append(err) if err else None)
            break
        except BufferError:
            p.poll(0.1)
    p.poll(0)
left = p.flush(60)
if left or errors:
    sys.exit("garbage produce failed: %d undelivered, errors %s" % (left, errors[:3]))
print(json.dumps(kinds))
