#!/usr/bin/env python3
"""Benchmark of the real Python kafka-rpc 1.0.8 (the system this project replaces) with the seed
README's Sum.add demo. Run it with the venv from scripts/pyenv-seed:

    PY=$(scripts/pyenv-seed)
    $PY benches/python/krpc_seed.py server BOOTSTRAP NAME [--fetch-wait-ms 10]     # until SIGTERM
    $PY benches/python/krpc_seed.py client BOOTSTRAP NAME --mode sequential|threads \
        [--threads 128] [--seconds 10] [--fetch-wait-ms 10]
    $PY benches/python/krpc_seed.py client BOOTSTRAP NAME --mode rate --rate 500 \
        [--threads 256] [--seconds 10]     # open loop at a fixed rate
    $PY benches/python/krpc_seed.py bench BOOTSTRAP NAME [--seconds 10] [--threads 128]
        # convenience: starts `server` in a child process, runs `client` sequential then threads
        # (each in its own process), stops the server; prints the client's JSON lines

The client prints ONE JSON line on stdout:
  {"system":"python kafka-rpc 1.0.8","mode":...,"threads":...,"calls":N,"errors":E,"seconds":..,
   "calls_per_s":..,"p50_ms":..,"p99_ms":..,"p999_ms":..,"cpu_s":..}
`seconds` is the wall time from the first call to the end of the last one (threads stop starting
calls after --seconds, then finish the call they are in); calls_per_s = calls / seconds; an error is
a call that raised (the package raises TimeoutError after 10 s) or returned something other than 3.
cpu_s is this process's CPU time (all threads, librdkafka's included) over the measured calls.

--mode rate is an open loop (as wrk2): call i is due at start + i / --rate whatever earlier calls
did; --threads workers each claim the next due call, sleep until it is due and make it, and its
latency runs from its due time, not from when a worker got to it (so calls delayed because every
worker was busy count their wait: no coordinated omission). The JSON adds "target_rate" and
"achieved_rate" (answers per second between the first and the last answer: a system that keeps
up answers at the target rate; one that does not drains a backlog after the window).

Fetch wait: kafka-rpc 1.0.8 builds its librdkafka configs as literal dicts inside
KRPCServer.__init__ / KRPCClient.__init__ and has no argument that reaches them (only
message_max_bytes and the queue.buffering.* settings of the producer). So this script
MONKEYPATCHES the `Consumer` name that kafka_rpc.client and kafka_rpc.server imported from
confluent_kafka (`from confluent_kafka import Producer, Consumer`) with a subclass that adds
`fetch.wait.max.ms` to the config, before any KRPCServer/KRPCClient is created. It is applied to
the consumers of both sides: the server's (reading requests) and the client's (reading replies).
The producers are not touched: fetch.wait.max.ms is a consumer-only property (librdkafka warns and
ignores it on a producer); they keep librdkafka's default linger.ms (5 ms) unless --linger-ms is
given, which likewise patches `Producer` on both sides.
"""
import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

SYSTEM = "python kafka-rpc 1.0.8"


def patch_kafka_rpc(fetch_wait_ms, linger_ms=None):
    """Import kafka_rpc with fetch.wait.max.ms (and optionally linger.ms) forced; see the docstring."""
    import confluent_kafka
    import kafka_rpc.client
    import kafka_rpc.server

    class FetchWaitConsumer(confluent_kafka.Consumer):
        def __init__(self, conf, *args, **kwargs):
            conf = dict(conf)
            conf["fetch.wait.max.ms"] = int(fetch_wait_ms)
            super().__init__(conf, *args, **kwargs)

    kafka_rpc.client.Consumer = FetchWaitConsumer
    kafka_rpc.server.Consumer = FetchWaitConsumer

    if linger_ms is not None:
        class LingerProducer(confluent_kafka.Producer):
            def __init__(self, conf, *args, **kwargs):
                conf = dict(conf)
                conf["linger.ms"] = linger_ms
                super().__init__(conf, *args, **kwargs)

        kafka_rpc.client.Producer = LingerProducer
        kafka_rpc.server.Producer = LingerProducer
    return kafka_rpc


# The seed README's demo class.
class Sum:
    def add(self, x, y):
        return x + y


def cmd_server(a):
    kafka_rpc = patch_kafka_rpc(a.fetch_wait_ms, a.linger_ms)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # KafkaControl prints "Topic ... created" on stdout: keep stdout for nothing but results.
    with contextlib.redirect_stdout(sys.stderr):
        krs = kafka_rpc.KRPCServer(a.bootstrap, handle=Sum(), topic_name=a.name, concurrent=128)
    print(f"krpc_seed server: serving {a.name} on {a.bootstrap} "
          f"(fetch.wait.max.ms={a.fetch_wait_ms})", file=sys.stderr, flush=True)
    try:
        # server_forever() itself turns KeyboardInterrupt into close() + return.
        krs.server_forever()
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            krs.close()
    # The gevent thread pool's threads would keep the interpreter alive.
    os._exit(0)


def cpu_seconds():
    """CPU seconds (user + system) of this process so far: every thread, librdkafka's too."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def cmd_client(a):
    kafka_rpc = patch_kafka_rpc(a.fetch_wait_ms, a.linger_ms)
    # The constructor handshakes with the server (it polls for the answer every 2 s, 30 s at most).
    krc = kafka_rpc.KRPCClient(a.bootstrap, topic_name=a.name)

    # Wait until the server answers one call before measuring (group rebalances on this broker
    # can take a few seconds after a member joins).
    deadline = time.monotonic() + a.ready_timeout
    while True:
        try:
            r = krc.add(1, 2, timeout=5)
            if r["ret"] == 3:
                break
            raise RuntimeError(f"warm-up call returned {r!r}")
        except TimeoutError:
            if time.monotonic() > deadline:
                print("krpc_seed client: the server did not answer within "
                      f"{a.ready_timeout} s", file=sys.stderr)
                os._exit(2)

    if a.threads is None:
        a.threads = 256 if a.mode == "rate" else 128
    if a.mode == "rate" and not (a.rate and a.rate > 0):
        sys.exit("krpc_seed client: --mode rate needs --rate above 0")
    nthreads = 1 if a.mode == "sequential" else a.threads
    results = [None] * nthreads
    done_at = []  # (first, last) answer time of each open-loop worker
    claim = threading.Lock()
    counter = [0]

    def worker(i, stop_at):
        lat, calls, errors = [], 0, 0
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                r = krc.add(1, 2)
                ok = r["ret"] == 3
            except Exception:
                ok = False
            if ok:
                lat.append(time.perf_counter() - t0)
                calls += 1
            else:
                errors += 1
        results[i] = (lat, calls, errors)

    def open_loop_worker(i, start, stop_at):
        lat, calls, errors, first, last = [], 0, 0, None, None
        while True:
            with claim:
                n = counter[0]
                counter[0] += 1
            due = start + n / a.rate
            if due >= stop_at:
                break
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            try:
                r = krc.add(1, 2)
                ok = r["ret"] == 3
            except Exception:
                ok = False
            now = time.perf_counter()
            if ok:
                lat.append(now - due)  # from the scheduled start
                calls += 1
                first = now if first is None else first
                last = now
            else:
                errors += 1
        results[i] = (lat, calls, errors)
        if first is not None:
            done_at.append((first, last))

    cpu0 = cpu_seconds()
    start = time.perf_counter()
    stop_at = start + a.seconds
    if a.mode == "rate":
        threads = [threading.Thread(target=open_loop_worker, args=(i, start, stop_at), daemon=True)
                   for i in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif nthreads == 1:
        worker(0, stop_at)
    else:
        threads = [threading.Thread(target=worker, args=(i, stop_at), daemon=True)
                   for i in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0

    lat = sorted(x for r in results for x in r[0])
    calls = sum(r[1] for r in results)
    errors = sum(r[2] for r in results)
    report = {
        "system": SYSTEM,
        "mode": a.mode,
        "threads": nthreads,
        "calls": calls,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(calls / elapsed, 1),
        "p50_ms": round(percentile(lat, 50) * 1e3, 3) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1e3, 3) if lat else None,
        "p999_ms": round(percentile(lat, 99.9) * 1e3, 3) if lat else None,
        "fetch_wait_ms": a.fetch_wait_ms,
        "cpu_s": round(cpu, 3),
        "cpu_us_per_call": round(cpu * 1e6 / max(calls, 1), 1),
    }
    if a.mode == "rate":
        report["target_rate"] = a.rate
        first = min((f for f, _ in done_at), default=None)
        last = max((l for _, l in done_at), default=None)
        report["achieved_rate"] = (round((calls - 1) / (last - first), 1)
                                   if calls > 1 and last > first else 0.0)
    print(json.dumps(report), flush=True)

    # close() can race with its own polling thread; never let teardown hang the benchmark.
    closer = threading.Thread(target=krc.close, daemon=True)
    closer.start()
    closer.join(10)
    os._exit(0)


def cmd_bench(a):
    me = [sys.executable, os.path.abspath(__file__)]
    common = ["--fetch-wait-ms", str(a.fetch_wait_ms)]
    if a.linger_ms is not None:
        common += ["--linger-ms", str(a.linger_ms)]
    server = subprocess.Popen(me + ["server", a.bootstrap, a.name] + common)
    try:
        for mode in ("sequential", "threads"):
            if server.poll() is not None:
                sys.exit(f"krpc_seed bench: the server exited with {server.returncode}")
            subprocess.run(me + ["client", a.bootstrap, a.name, "--mode", mode,
                                 "--threads", str(a.threads), "--seconds", str(a.seconds)]
                           + common, check=True, timeout=a.seconds + 180)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("bootstrap", help="broker address, host:port")
        sp.add_argument("name", help="kafka-rpc topic_name (topics krpc_NAME_server/_client)")
        sp.add_argument("--fetch-wait-ms", type=int, default=10,
                        help="librdkafka fetch.wait.max.ms of the server's and the client's "
                             "consumers (default 10; the package's own default is 500)")
        sp.add_argument("--linger-ms", type=float, default=None,
                        help="librdkafka linger.ms of both producers (default: untouched, 5)")

    sp = sub.add_parser("server", help="serve Sum with concurrent=128 until SIGTERM")
    common(sp)
    sp.set_defaults(func=cmd_server)

    sp = sub.add_parser("client", help="call add(1, 2) for --seconds, print one JSON line")
    common(sp)
    sp.add_argument("--mode", choices=("sequential", "threads", "rate"), default="sequential")
    sp.add_argument("--threads", type=int, default=None,
                    help="callers (threads mode; default 128) or open-loop workers (rate "
                         "mode; default 256)")
    sp.add_argument("--rate", type=float, default=None,
                    help="rate mode: calls started per second")
    sp.add_argument("--seconds", type=float, default=10)
    sp.add_argument("--ready-timeout", type=float, default=60,
                    help="seconds to wait for the server's first answer")
    sp.set_defaults(func=cmd_client)

    sp = sub.add_parser("bench", help="server + sequential client + threads client")
    common(sp)
    sp.add_argument("--threads", type=int, default=128)
    sp.add_argument("--seconds", type=float, default=10)
    sp.set_defaults(func=cmd_bench)

    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
