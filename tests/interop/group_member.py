"""A consumer-group member written with an independent client, for the mixed-group tests.

  group_member.py CLIENT BOOTSTRAP GROUP TOPIC      (CLIENT: confluent | kafka-python)

Prints `assigned P,P,...` on every assignment and `revoked` on every revocation (flushed at
once), and leaves the group cleanly when stdin closes; gives up after 180 s whatever happens.
"""
import sys
import threading
import time

client, bootstrap, group, topic = sys.argv[1:5]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
deadline = time.time() + 180


def say(line):
    print(line, flush=True)


if client == "confluent":
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                  "partition.assignment.strategy": "range,roundrobin", "fetch.wait.max.ms": 50})
    c.subscribe([topic],
                on_assign=lambda _c, parts: say("assigned " + ",".join(str(p.partition) for p in parts)),
                on_revoke=lambda _c, parts: say("revoked"))
    while not stop.is_set() and time.time() < deadline:
        m = c.poll(0.1)
        if m is not None and m.error():
            say("error %s" % m.error())
    c.close()
else:
    from kafka import KafkaConsumer, ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned):
            say("assigned " + ",".join(str(tp.partition) for tp in assigned))

        def on_partitions_revoked(self, revoked):
            say("revoked")

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      session_timeout_ms=10000, heartbeat_interval_ms=500, fetch_max_wait_ms=50)
    c.subscribe([topic], listener=Listener())
    while not stop.is_set() and time.time() < deadline:
        c.poll(timeout_ms=100)
    c.close()
say("closed")
