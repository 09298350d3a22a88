"""Independent Kafka clients for the interop tests: produce or consume with librdkafka
(confluent-kafka) or kafka-python, exchanging records with the Rust side as JSON lines.

  peers.py produce CLIENT BOOTSTRAP TOPIC CODEC COUNT   -> writes COUNT sample records to partition 0
  peers.py consume CLIENT BOOTSTRAP TOPIC COUNT         -> prints COUNT records of partition 0 as JSON
  peers.py murmur2 HEX...                               -> kafka-python's murmur2 of each key
  peers.py produce-big CLIENT BOOTSTRAP TOPIC CODEC COUNT
      -> COUNT compressible records (key b"big-i", value 4 KiB of one letter) to partition 0
  peers.py produce-old BOOTSTRAP TOPIC CODEC API_VERSION COUNT
      -> kafka-python with api_version (e.g. 0.9 or 0.10): old message formats (magic 0 / 1),
         records (key b"old-i", value b"old-value-i" * 20, timestamp 1_600_000_000_000 + i)
  peers.py produce-idempotent CLIENT BOOTSTRAP TOPIC COUNT
      -> COUNT sample records with enable.idempotence; prints the producer's idempotence state
  peers.py produce-aborted CLIENT BOOTSTRAP TOPIC
      -> c1; begin a transaction, a1, abort; c2; prints "done", or "refused: WHY" (and writes
         nothing) when the broker refuses the transactional producer

A sample record i: key b"key-i" (None when i % 5 == 4), value b"value-i" * (i % 3 + 1)
(None when i % 7 == 6), headers [("h", b"i"), ("n", None), ("h", b"again")] (a key
repeated, as Kafka allows), timestamp 1_600_000_000_000 + i.
kafka-python cannot produce a null header value, so its records carry only the two "h".
"""
import json
import sys
import time

DEADLINE_S = 60


def sample(i):
    key = None if i % 5 == 4 else b"key-%d" % i
    value = None if i % 7 == 6 else (b"value-%d" % i) * (i % 3 + 1)
    headers = [("h", str(i).encode()), ("n", None), ("h", b"again")]
    return key, value, headers, 1_600_000_000_000 + i


def hexb(b):
    return None if b is None else b.hex()


def produce(client, bootstrap, topic, codec, count):
    if client == "confluent":
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5,
                      "api.version.request": True})
        errors = []
        for i in range(count):
            key, value, headers, ts = sample(i)
            p.produce(topic, value=value, key=key, partition=0, headers=headers, timestamp=ts,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        left = p.flush(DEADLINE_S)
        if left or errors:
            sys.exit("librdkafka produce failed: %d undelivered, errors %s" % (left, errors[:3]))
    else:
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bootstrap, compression_type=None if codec == "none" else codec)
        futures = []
        for i in range(count):
            key, value, headers, ts = sample(i)
            # kafka-python cannot send a null header value: it sends none of those.
            headers = [(k, v) for k, v in headers if v is not None]
            futures.append(p.send(topic, value=value, key=key, partition=0, headers=headers, timestamp_ms=ts))
        for f in futures:
            f.get(timeout=DEADLINE_S)
        p.close()


def big(i):
    return b"big-%d" % i, bytes([65 + i % 26]) * 4096


def produce_big(client, bootstrap, topic, codec, count):
    if client == "confluent":
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5})
        errors = []
        for i in range(count):
            key, value = big(i)
            p.produce(topic, value=value, key=key, partition=0,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        left = p.flush(DEADLINE_S)
        if left or errors:
            sys.exit("librdkafka produce failed: %d undelivered, errors %s" % (left, errors[:3]))
    else:
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bootstrap, compression_type=None if codec == "none" else codec)
        futures = [p.send(topic, value=big(i)[1], key=big(i)[0], partition=0) for i in range(count)]
        for f in futures:
            f.get(timeout=DEADLINE_S)
        p.close()


def produce_old(bootstrap, topic, codec, api_version, count):
    from kafka import KafkaProducer
    version = tuple(int(x) for x in api_version.split("."))
    p = KafkaProducer(bootstrap_servers=bootstrap, api_version=version,
                      compression_type=None if codec == "none" else codec)
    futures = [p.send(topic, key=b"old-%d" % i, value=(b"old-value-%d" % i) * 20, partition=0,
                      timestamp_ms=1_600_000_000_000 + i) for i in range(count)]
    for f in futures:
        f.get(timeout=DEADLINE_S)
    p.close()


def produce_idempotent(client, bootstrap, topic, count):
    if client == "confluent":
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        errors = []
        for i in range(count):
            key, value, headers, ts = sample(i)
            p.produce(topic, value=value, key=key, partition=0, headers=headers, timestamp=ts,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        left = p.flush(DEADLINE_S)
        if left or errors:
            sys.exit("librdkafka idempotent produce failed: %d undelivered, errors %s" % (left, errors[:3]))
    else:
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
        futures = []
        for i in range(count):
            key, value, headers, ts = sample(i)
            headers = [(k, v) for k, v in headers if v is not None]
            futures.append(p.send(topic, value=value, key=key, partition=0, headers=headers, timestamp_ms=ts))
        for f in futures:
            f.get(timeout=DEADLINE_S)
        p.close()


def produce_aborted(client, bootstrap, topic):
    """c1; begin, a1, abort; c2. Prints "done", or "refused: ..." if the broker refuses."""
    tid = "interop-txn-%s-%d" % (topic, int(time.time() * 1000))
    if client == "confluent":
        from confluent_kafka import Producer, KafkaException
        plain = Producer({"bootstrap.servers": bootstrap})
        txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid})
        try:
            txn.init_transactions(30)
        except KafkaException as e:
            print("refused: %s" % e)
            return
        plain.produce(topic, value=b"c1", partition=0)
        plain.flush(DEADLINE_S)
        txn.begin_transaction()
        txn.produce(topic, value=b"a1", partition=0)
        txn.flush(DEADLINE_S)
        txn.abort_transaction(30)
        plain.produce(topic, value=b"c2", partition=0)
        plain.flush(DEADLINE_S)
        print("done")
    else:
        from kafka import KafkaProducer
        plain = KafkaProducer(bootstrap_servers=bootstrap)
        try:
            txn = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid)
            txn.init_transactions()
        except Exception as e:  # noqa: BLE001 - any refusal is reported the same way
            print("refused: %r" % e)
            return
        plain.send(topic, value=b"c1", partition=0).get(timeout=DEADLINE_S)
        txn.begin_transaction()
        txn.send(topic, value=b"a1", partition=0).get(timeout=DEADLINE_S)
        txn.abort_transaction()
        plain.send(topic, value=b"c2", partition=0).get(timeout=DEADLINE_S)
        plain.close()
        txn.close()
        print("done")


def consume(client, bootstrap, topic, count):
    out = []
    deadline = time.time() + DEADLINE_S
    if client == "confluent":
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "interop-unused",
                      "enable.auto.commit": False, "fetch.wait.max.ms": 50})
        c.assign([TopicPartition(topic, 0, 0)])
        while len(out) < count and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                sys.exit("librdkafka consume error: %s" % m.error())
            out.append((m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
        c.close()
    else:
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        while len(out) < count and time.time() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                for m in recs:
                    out.append((m.offset, m.key, m.value, list(m.headers or []), m.timestamp))
        c.close()
    if len(out) < count:
        sys.exit("only %d of %d records consumed within %ds" % (len(out), count, DEADLINE_S))
    for offset, key, value, headers, ts in out[:count]:
        print(json.dumps({"offset": offset, "key": hexb(key), "value": hexb(value),
                          "headers": [[k, hexb(v)] for k, v in headers], "timestamp": ts}))


def watermarks(bootstrap, topic, partition):
    # librdkafka's view of a partition's log start offset and high watermark.
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "interop-unused"})
    low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=DEADLINE_S)
    c.close()
    print(json.dumps({"low": low, "high": high}))


def main():
    cmd = sys.argv[1]
    if cmd == "watermarks":
        watermarks(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if cmd == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif cmd == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif cmd == "produce-big":
        produce_big(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif cmd == "produce-old":
        produce_old(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif cmd == "produce-idempotent":
        produce_idempotent(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif cmd == "produce-aborted":
        produce_aborted(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "murmur2":
        from kafka.partitioner.default import murmur2
        for h in sys.argv[2:]:
            print(murmur2(bytes.fromhex(h)))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
