#!/usr/bin/env python3
"""Raw librdkafka (the confluent-kafka wheel) against a Kafka-compatible broker: the baseline
below any RPC layer. Run it with the venv from scripts/pyenv-seed:

    PY=$(scripts/pyenv-seed)
    $PY benches/python/rdkafka_raw.py latency    BOOTSTRAP [--count 200] [--fetch-wait-ms 10]
    $PY benches/python/rdkafka_raw.py roundtrip  BOOTSTRAP [--count 200] [--fetch-wait-ms 10]
    $PY benches/python/rdkafka_raw.py throughput BOOTSTRAP [--records 200000] [--size 64] [--batch 1000]
    $PY benches/python/rdkafka_raw.py echo        BOOTSTRAP --requests T --replies T [--partitions 16]
                                                  [--reply-size 64] [--fetch-wait-ms 10]   # until SIGTERM
    $PY benches/python/rdkafka_raw.py echo-caller BOOTSTRAP --requests T --replies T [--partitions 16]
                                                  [--in-flight 128] [--seconds 10] [--request-size 64]
                                                  [--reply-size 64] [--fetch-wait-ms 10]

Each prints one JSON line on stdout; progress and librdkafka logs go to stderr. Every run uses a
fresh 1-partition topic (created with the admin API, name rdkafka_<test>_<random>, padded with "-" to 64 characters as wire-bench's).

latency    produce-to-consume: a consumer is assigned to partition 0 at its end offset and polls in
           a thread; the main thread produces one record at a time (linger.ms=0) and waits until
           the consumer has it; latency = time from the produce() call to the consumer's poll()
           returning the record. Between records it sleeps a random 0..fetch-wait ms so records do
           not arrive in step with the consumer's fetch cycle (--no-jitter: no pause). 5 warm-up records are not counted.
roundtrip  produce one record (linger.ms=0), wait for its delivery report (flush), assign a consumer
           to that record's offset, poll until it arrives, unassign; the time of the whole round
           trip (also its two halves: produce_p50_ms, fetch_p50_ms). Mirrors "produce one record
           and fetch it back" in the Rust bench: the fetch is sent after the record is stored, so
           it is answered at once. librdkafka sends the next (long-poll) fetch as soon as a fetch
           response arrives, and unassign() does not cancel it; a re-assign waits for that
           in-flight fetch, which on this broker ends only at fetch.wait.max.ms / 2. So after each
           round trip the script pauses fetch-wait + 5 ms (untimed) to let it end.
throughput produce --records records of --size bytes (linger.ms=20, batch.num.messages=--batch, so
           batches hold about --batch records; acks=all, no compression), timed until flush()
           returns; then a fresh consumer assigned at offset 0 reads them all, timed from assign
           to the last record. Each phase's process CPU time (getrusage RUSAGE_SELF: the Python
           thread and librdkafka's threads) is reported per record (produce_cpu_us_per_record,
           fetch_cpu_us_per_record): the Python loop calling produce() is part of it, as it is
           for any Python program using the wheel.
echo       the echo side of the raw echo (the RPC limit without RPC logic): assigned to every
           partition of the request topic from offset 0 (no consumer group), it answers each
           request record with a reply record (its first 8 bytes, the call id, padded to
           --reply-size) on partition 0 of the reply topic. linger.ms=0, acks=all.
echo-caller the calling side: produces request records (the call id in 8 bytes, padded to
           --request-size) to partition id % --partitions, keeping --in-flight outstanding;
           reads the reply topic's partition 0 from offset 0 and sends a new request for each
           reply until --seconds have passed, then waits for the rest. Prints calls/s and the
           request-to-reply latency p50/p99, and its CPU time over the run. Both sides create
           the two topics if missing (use fresh names: they read from offset 0).
"""
import argparse
import json
import os
import queue
import random
import resource
import signal
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def percentile(sorted_values, p):
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def ms(seconds):
    return round(seconds * 1e3, 3)


def fresh_topic(bootstrap, test):
    # Padded to wire-bench's TOPIC_NAME_WIDTH: the test broker's fetch costs more for a longer
    # topic name (wire-bench's `topic` says what was measured), so every client's has one length.
    name = f"rdkafka_{test}_{uuid.uuid4().hex[:8]}_".ljust(64, "-")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for topic, fut in admin.create_topics([NewTopic(name, num_partitions=1,
                                                    replication_factor=1)]).items():
        fut.result(30)
    # Wait until the topic is visible in metadata with its partition.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and 0 in t.partitions:
            return name
        time.sleep(0.1)
    raise RuntimeError(f"topic {name} did not appear in metadata")


def cpu_seconds():
    """CPU seconds (user + system) of this process so far: every thread, librdkafka's too."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def ensure_topic(bootstrap, name, partitions):
    """Creates topic `name` unless it exists; returns once its partitions are in metadata."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, fut in admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                replication_factor=1)]).items():
        try:
            fut.result(30)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = admin.list_topics(name, timeout=10).topics.get(name)
        if t is not None and t.error is None and len(t.partitions) >= 1:
            return len(t.partitions)
        time.sleep(0.1)
    raise RuntimeError(f"topic {name} did not appear in metadata")


def poll_batch(consumer, timeout):
    """Waits up to `timeout` s for one message, then takes whatever else is queued already
    (consume() with a count waits out its timeout unless it gets them all; poll() returns as
    soon as one is there)."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first] + consumer.consume(num_messages=10_000, timeout=0)


def produce(producer, topic, value, partition):
    while True:
        try:
            producer.produce(topic, value, partition=partition)
            return
        except BufferError:
            producer.poll(0.001)


def echo_clients(a):
    """Both topics of the raw echo, and a producer (its failed deliveries collected in the list
    returned) and a consumer set as the echo and its caller both use them."""
    ensure_topic(a.bootstrap, a.replies, 1)
    partitions = ensure_topic(a.bootstrap, a.requests, a.partitions)
    errors = []
    producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": a.linger_ms,
                         "acks": "all", "delivery.report.only.error": True,
                         "on_delivery": lambda err, msg: err is not None and errors.append(err)})
    consumer = Consumer(dict(consumer_conf(a.bootstrap, a.fetch_wait_ms),
                             **{"fetch.queue.backoff.ms": 1}))
    return partitions, errors, producer, consumer


def cmd_echo(a):
    partitions, errors, producer, consumer = echo_clients(a)
    consumer.assign([TopicPartition(a.requests, p, 0) for p in range(partitions)])
    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    print(f"rdkafka_raw echo: {a.requests} -> {a.replies}", file=sys.stderr, flush=True)
    while not stop:
        for msg in poll_batch(consumer, 0.1):
            if msg.error():
                print(f"rdkafka_raw echo: consumer error: {msg.error()}", file=sys.stderr)
                continue
            produce(producer, a.replies, msg.value()[:8].ljust(a.reply_size, b"x"), 0)
        producer.poll(0)
        if errors:
            raise RuntimeError(f"echo: {len(errors)} replies failed ({errors[:3]})")
    producer.flush(10)
    os._exit(0)


def cmd_echo_caller(a):
    partitions, errors, producer, consumer = echo_clients(a)
    consumer.assign([TopicPartition(a.replies, 0, 0)])

    def request(i):
        produce(producer, a.requests, i.to_bytes(8, "big").ljust(a.request_size, b"x"),
                i % partitions)
        producer.poll(0)

    def id_of(msg):
        return int.from_bytes(msg.value()[:8], "big")

    # One call first: the echo may still be starting; it is not part of the measure.
    request(0)
    deadline = time.monotonic() + 60
    while not any(not m.error() and id_of(m) == 0 for m in poll_batch(consumer, 0.1)):
        if time.monotonic() > deadline:
            raise RuntimeError("the echo did not answer within 60 s")
    next_id = 1

    sent, lat = {}, []
    cpu0, start = cpu_seconds(), time.perf_counter()
    stop_at = start + a.seconds
    for _ in range(a.in_flight):
        sent[next_id] = time.perf_counter()
        request(next_id)
        next_id += 1
    last = start
    drain_deadline = stop_at + 30
    while sent:
        for msg in poll_batch(consumer, 0.05):
            if msg.error():
                continue
            t0 = sent.pop(id_of(msg), None)
            if t0 is None:
                continue  # the warm-up's or an earlier run's
            last = time.perf_counter()
            lat.append(last - t0)
            if last < stop_at:
                sent[next_id] = time.perf_counter()
                request(next_id)
                next_id += 1
        producer.poll(0)
        if time.perf_counter() > drain_deadline:
            raise RuntimeError(f"{len(sent)} echoes unanswered 30 s after the run")
    elapsed, cpu = last - start, cpu_seconds() - cpu0
    if errors:
        raise RuntimeError(f"echo-caller: {len(errors)} requests failed ({errors[:3]})")
    lat.sort()
    print(json.dumps({"system": "librdkafka", "test": "raw_echo", "in_flight": a.in_flight,
                      "request_size": a.request_size, "reply_size": a.reply_size,
                      "calls": len(lat), "seconds": round(elapsed, 3),
                      "calls_per_s": round(len(lat) / elapsed, 1),
                      "p50_ms": ms(percentile(lat, 50)), "p99_ms": ms(percentile(lat, 99)),
                      "cpu_s": round(cpu, 3)}), flush=True)
    consumer.close()
    producer.flush(10)
    os._exit(0)


def consumer_conf(bootstrap, fetch_wait_ms):
    return {
        "bootstrap.servers": bootstrap,
        "group.id": f"rdkafka-raw-{uuid.uuid4().hex[:8]}",  # needed by the client; never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": fetch_wait_ms,
    }


def cmd_latency(a):
    topic = fresh_topic(a.bootstrap, "latency")
    producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 0})
    consumer = Consumer(consumer_conf(a.bootstrap, a.fetch_wait_ms))
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, high)])

    arrived = queue.Queue()
    stop = threading.Event()

    def poll_loop():
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            now = time.perf_counter()
            if msg.error():
                print(f"rdkafka_raw: consumer error: {msg.error()}", file=sys.stderr)
                continue
            arrived.put((msg.value(), now))

    poller = threading.Thread(target=poll_loop, daemon=True)
    poller.start()

    warmup = 5
    lat = []
    for i in range(warmup + a.count):
        value = str(i).encode()
        t0 = time.perf_counter()
        producer.produce(topic, value)
        producer.poll(0)
        # Wait for this record (the first ones may take longer: offset lookup, first fetch).
        while True:
            got, t1 = arrived.get(timeout=30 if i < warmup else 10)
            if got == value:
                break
        if i >= warmup:
            lat.append(t1 - t0)
        producer.poll(0)
        if a.jitter:
            time.sleep(random.uniform(0, a.fetch_wait_ms / 1e3))
    stop.set()
    poller.join()
    producer.flush(10)
    consumer.close()
    lat.sort()
    print(json.dumps({"system": "librdkafka", "test": "produce_to_consume", "count": len(lat),
                      "p50_ms": ms(percentile(lat, 50)), "p99_ms": ms(percentile(lat, 99)),
                      "fetch_wait_ms": a.fetch_wait_ms}), flush=True)


def cmd_roundtrip(a):
    topic = fresh_topic(a.bootstrap, "roundtrip")
    producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 0})
    consumer = Consumer(consumer_conf(a.bootstrap, a.fetch_wait_ms))
    delivered = {}

    def on_delivery(err, msg):
        if err is not None:
            raise KafkaException(err)
        delivered["offset"] = msg.offset()

    warmup = 5
    lat, lat_produce, lat_fetch = [], [], []
    for i in range(warmup + a.count):
        value = str(i).encode()
        t0 = time.perf_counter()
        producer.produce(topic, value, on_delivery=on_delivery)
        if producer.flush(10) != 0:
            raise RuntimeError("produce: no delivery report within 10 s")
        t_delivered = time.perf_counter()
        offset = delivered.pop("offset")
        consumer.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + 10
        while True:
            msg = consumer.poll(1)
            if msg is not None:
                if msg.error():
                    raise KafkaException(msg.error())
                if msg.offset() == offset:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"record at offset {offset} not fetched within 10 s")
        t1 = time.perf_counter()
        consumer.unassign()
        if msg.value() != value:
            raise RuntimeError(f"fetched {msg.value()!r} at offset {offset}, produced {value!r}")
        if i >= warmup:
            lat.append(t1 - t0)
            lat_produce.append(t_delivered - t0)
            lat_fetch.append(t1 - t_delivered)
        # Let the fetch librdkafka sent after this record (still in flight) end: see the docstring.
        time.sleep((a.fetch_wait_ms + 5) / 1e3)
    consumer.close()
    for v in (lat, lat_produce, lat_fetch):
        v.sort()
    print(json.dumps({"system": "librdkafka", "test": "produce_fetch_roundtrip", "count": len(lat),
                      "p50_ms": ms(percentile(lat, 50)), "p99_ms": ms(percentile(lat, 99)),
                      "produce_p50_ms": ms(percentile(lat_produce, 50)),
                      "fetch_p50_ms": ms(percentile(lat_fetch, 50)),
                      "fetch_wait_ms": a.fetch_wait_ms}), flush=True)


def cmd_throughput(a):
    topic = fresh_topic(a.bootstrap, "throughput")
    errors = []

    def on_error_report(err, msg):
        if err is not None:
            errors.append(err)

    producer = Producer({
        "bootstrap.servers": a.bootstrap,
        "linger.ms": 20,
        "batch.num.messages": a.batch,
        "batch.size": max(1_000_000, a.batch * (a.size + 64)),
        "queue.buffering.max.messages": max(100_000, a.records),
        "queue.buffering.max.kbytes": 2_097_151,
        "delivery.report.only.error": True,
        "on_delivery": on_error_report,
    })
    # Make sure the producer has the topic's metadata and a connection before timing.
    producer.produce(topic, b"w" * a.size)
    producer.flush(30)

    payload = os.urandom(a.size)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    for _ in range(a.records):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.01)
    left = producer.flush(120)
    produce_s = time.perf_counter() - t0
    produce_cpu = cpu_seconds() - cpu0
    if left or errors:
        raise RuntimeError(f"produce: {left} records undelivered, {len(errors)} errors "
                           f"({errors[:3]})")
    total = a.records + 1  # the warm-up record is in the topic too

    # librdkafka stops fetching once queued.min.messages (default 100000) are queued locally and
    # looks again only after fetch.queue.backoff.ms (default 1000 ms): with the defaults a 200000
    # record read stalls for a second. Raise the first, shorten the second.
    consumer = Consumer(dict(consumer_conf(a.bootstrap, a.fetch_wait_ms),
                             **{"fetch.max.bytes": 52_428_800,
                                "max.partition.fetch.bytes": 10_485_760,
                                "queued.min.messages": max(100_000, 2 * total),
                                "fetch.queue.backoff.ms": 1}))
    got = 0
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline = time.monotonic() + 300
    while got < total:
        # consume() waits out its timeout unless it gets num_messages: never ask for more than
        # are left.
        for msg in consumer.consume(num_messages=min(10_000, total - got), timeout=1):
            if msg.error():
                raise KafkaException(msg.error())
            got += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"fetched only {got} of {total} records in 300 s")
    fetch_s = time.perf_counter() - t0
    fetch_cpu = cpu_seconds() - cpu0
    consumer.close()
    print(json.dumps({"system": "librdkafka", "test": "throughput", "records": a.records,
                      "size": a.size, "batch": a.batch,
                      "produce_per_s": round(a.records / produce_s),
                      "fetch_per_s": round(total / fetch_s),
                      "produce_cpu_us_per_record": round(produce_cpu * 1e6 / a.records, 3),
                      "fetch_cpu_us_per_record": round(fetch_cpu * 1e6 / total, 3)}),
          flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    sp = sub.add_parser("latency", help="produce-to-consume latency, one record at a time")
    sp.add_argument("bootstrap")
    sp.add_argument("--count", type=int, default=200)
    sp.add_argument("--fetch-wait-ms", type=int, default=10)
    sp.add_argument("--no-jitter", dest="jitter", action="store_false",
                    help="produce the next record as soon as the previous one is consumed "
                         "(default: after a random 0..fetch-wait ms pause)")
    sp.set_defaults(func=cmd_latency)

    sp = sub.add_parser("roundtrip", help="produce one record, then fetch it back")
    sp.add_argument("bootstrap")
    sp.add_argument("--count", type=int, default=200)
    sp.add_argument("--fetch-wait-ms", type=int, default=10)
    sp.set_defaults(func=cmd_roundtrip)

    sp = sub.add_parser("throughput", help="batched produce, then fetch everything")
    sp.add_argument("bootstrap")
    sp.add_argument("--records", type=int, default=200_000)
    sp.add_argument("--size", type=int, default=64)
    sp.add_argument("--batch", type=int, default=1000)
    sp.add_argument("--fetch-wait-ms", type=int, default=10)
    sp.set_defaults(func=cmd_throughput)

    def echo_args(sp):
        sp.add_argument("bootstrap")
        sp.add_argument("--requests", required=True, help="request topic (fresh)")
        sp.add_argument("--replies", required=True, help="reply topic (fresh)")
        sp.add_argument("--partitions", type=int, default=16,
                        help="partitions of the request topic if it is created (default 16, "
                             "as an RPC request topic)")
        sp.add_argument("--reply-size", type=int, default=64)
        sp.add_argument("--fetch-wait-ms", type=int, default=10)
        sp.add_argument("--linger-ms", type=float, default=0)

    sp = sub.add_parser("echo", help="the raw echo's echo side, until SIGTERM")
    echo_args(sp)
    sp.set_defaults(func=cmd_echo)

    sp = sub.add_parser("echo-caller", help="the raw echo's calling side")
    echo_args(sp)
    sp.add_argument("--in-flight", type=int, default=128)
    sp.add_argument("--seconds", type=float, default=10)
    sp.add_argument("--request-size", type=int, default=64)
    sp.set_defaults(func=cmd_echo_caller)

    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
