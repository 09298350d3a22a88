"""Runs every benchmark against one broker and prints the comparison tables (see benches/compare).

Each system runs in processes of its own; their results come back as JSON lines. CPU time is
taken per run as deltas of /proc/PID/stat utime+stime of the processes that live across runs
(the broker, the servers, the echo processes), and from the clients themselves (getrusage over
their measured window; see krpc bench's and the Python scripts' `cpu_s`), and divided by the
run's answered calls. Peak RSS is VmHWM from /proc/PID/status (servers) or wait4(2) (clients).

Sections (each can be skipped with --skip NAME,...): kafka (the Kafka-layer table, --runs
times), python (kafka-rpc 1.0.8), rust (kafka-rpc (Rust)), echo (the raw-echo limit), rates
(latency at fixed rates, after both systems' runs: the two systems in turn at each rate), scaling.
"""
import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
RAW = os.path.join(HERE, "python", "rdkafka_raw.py")
SEED = os.path.join(HERE, "python", "krpc_seed.py")


def run_json(cmd, timeout):
    """Runs cmd, returns (list of JSON objects it printed, rusage)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    deadline = time.time() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.time() > deadline:
            proc.kill()
            raise SystemExit("timed out: %s" % " ".join(cmd))
        time.sleep(0.05)
    text = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("failed (%s): %s\n%s" % (status, " ".join(cmd), text))
    out = [json.loads(line) for line in map(str.strip, text.splitlines()) if line.startswith("{")]
    return out, usage


def one_json(cmd, timeout):
    """Runs cmd; returns its first JSON object, with client_process_cpu_s and client_rss_mb
    (the whole process, from wait4) added."""
    out, usage = run_json(cmd, timeout)
    if not out:
        raise SystemExit("no JSON from: %s" % " ".join(cmd))
    r = out[0]
    r["client_process_cpu_s"] = usage.ru_utime + usage.ru_stime
    r["client_rss_mb"] = usage.ru_maxrss / 1024
    return r


def proc_usage(pid):
    """CPU seconds and peak RSS (MB) of a running process, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    peak_kb = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak_kb = int(line.split()[1])
    return cpu, peak_kb / 1024


def cpu_of(pids):
    return sum(proc_usage(p)[0] for p in pids)


# Where our servers' logs go (krpc's default level: kafka_rpc at info): a run that stalls can
# be read afterwards. Printed at the end of the run.
SERVER_LOGS = tempfile.mkdtemp(prefix="krpc-bench-servers-")


def start(cmd, env=None, log=None):
    err = open(log, "w") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    finally:
        if log:
            err.close()


def stop(proc):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measured(args, run, servers=()):
    """Runs `run` (returning one result dict with "calls" and, if the client measures itself,
    "cpu_s"), and adds the CPU of the broker and of the `servers` (processes living across
    runs) during it: totals (*_cpu_s) and per answered call (*_us_per_call)."""
    broker = [args.broker_pid] if args.broker_pid else []
    b0, s0 = cpu_of(broker), cpu_of([p.pid for p in servers])
    r = run()
    b1, s1 = cpu_of(broker), cpu_of([p.pid for p in servers])
    calls = max(r.get("calls") or 0, 1)
    client = r.get("cpu_s")
    if client is None:
        client = r.get("client_process_cpu_s")
    if broker:
        r["broker_cpu_s"] = b1 - b0
        r["broker_us_per_call"] = (b1 - b0) * 1e6 / calls
    if servers:
        r["server_cpu_s"] = s1 - s0
        r["server_us_per_call"] = (s1 - s0) * 1e6 / calls
    if client is not None:
        r["client_us_per_call"] = client * 1e6 / calls
    return r


def ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "n/a"


def csv_numbers(text, kind=float):
    return [kind(x) for x in text.split(",") if x.strip()]


def fresh(name):
    return "%s-%s" % (name, uuid.uuid4().hex[:8])


@contextlib.contextmanager
def config_file(text):
    """The path of a `krpc` config file (TOML) holding `text`, removed on leaving."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        yield f.name
    finally:
        os.unlink(f.name)


def py_server(args, name):
    """The Python package's server of topics `name` (krpc_seed.py), started."""
    return start([PY, SEED, "server", args.bootstrap, name, "--fetch-wait-ms", str(args.fetch_wait_ms)])


def py_client(args, name):
    """The Python package's client command for topics `name`; the mode flags go after it."""
    return [PY, SEED, "client", args.bootstrap, name, "--seconds", str(args.seconds),
            "--fetch-wait-ms", str(args.fetch_wait_ms)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--bin", required=True, help="directory of the release krpc and wire-bench")
    ap.add_argument("--seconds", type=float, default=10, help="length of each timed RPC run: sync, async, each fixed rate, each scaling run")
    ap.add_argument("--fetch-wait-ms", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--broker-pid", type=int, default=0, help="to report the broker's CPU time per run")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 3)),
                    help="runs of the Kafka-layer benchmark (default 3, or BENCH_RUNS)")
    ap.add_argument("--records", type=int, default=200_000, help="records per Kafka-layer run")
    ap.add_argument("--rates", default=os.environ.get("BENCH_RATES", "100,500,2000"),
                    help="fixed rates (calls/s) of the latency table, comma-separated; the "
                         "highest rate the Python package sustained in its threads run is added")
    ap.add_argument("--scaling-servers", default="1,2,4")
    ap.add_argument("--scaling-partitions", default="16,64,256")
    ap.add_argument("--scaling-in-flight", default="10,1000,10000")
    ap.add_argument("--scaling-sleep-ms", type=int, default=2000,
                    help="handler time of the memory runs (calls pile up in the server)")
    ap.add_argument("--skip", default=os.environ.get("BENCH_SKIP", ""),
                    help="sections to leave out: kafka,python,rust,echo,rates,scaling")
    args = ap.parse_args()
    skip = set(x.strip() for x in args.skip.split(",") if x.strip())
    unknown = skip - {"kafka", "python", "rust", "echo", "rates", "scaling"}
    if unknown:
        raise SystemExit("unknown --skip sections: %s" % ", ".join(sorted(unknown)))
    args.skip = skip
    addr, secs, fw = args.bootstrap, args.seconds, args.fetch_wait_ms
    r = {}

    print("== raw librdkafka latency", file=sys.stderr)
    r["rd_latency"] = one_json([PY, RAW, "latency", addr, "--count", "200", "--fetch-wait-ms", str(fw)], 300)
    # Back to back, like our sync bench: the consumer's fetch is always already waiting.
    r["rd_latency_b2b"] = one_json([PY, RAW, "latency", addr, "--count", "200", "--fetch-wait-ms", str(fw), "--no-jitter"], 300)

    # A section that fails is said, and the tables of the others are still printed.
    r["failed"] = []
    for name, run, wanted in (
        ("kafka", kafka_layer, "kafka" not in skip),
        ("python", python_rpc, "python" not in skip),
        ("rust", rust_rpc, "rust" not in skip or "echo" not in skip),
        ("rates", fixed_rates, "rates" not in skip and not {"python", "rust"} <= skip),
        ("scaling", scaling, "scaling" not in skip),
    ):
        if not wanted:
            continue
        try:
            run(args, r)
        except SystemExit as e:
            print("== section %s FAILED: %s" % (name, e), file=sys.stderr)
            r["failed"].append("%s: %s" % (name, str(e).splitlines()[0] if str(e) else "?"))
    report(r, args)
    for failure in r["failed"]:
        print("FAILED section %s" % failure)


def kafka_layer(args, r):
    """--runs runs, each client on fresh topics. The two Rust clients run in one wire-bench
    process, in turns (see its doc: the broker's speed drifts); librdkafka (another process)
    goes before them in runs 1, 3, ... and after them in runs 2, 4, ..., and the Rust client
    that starts the first turn alternates too."""
    addr, n = args.bootstrap, str(args.records)
    wire = os.path.join(args.bin, "wire-bench")
    runs = []
    for i in range(args.runs):
        rust = ["krpc-kafka", "rskafka"] if i % 2 == 0 else ["rskafka", "krpc-kafka"]
        order = ["librdkafka", "+".join(rust)] if i % 2 == 0 else ["+".join(rust), "librdkafka"]
        print("== the Kafka layer, run %d of %d: %s" % (i + 1, args.runs, ", ".join(order)), file=sys.stderr)
        run = {"order": order}
        for c in order:
            if c == "librdkafka":
                run[c] = one_json([PY, RAW, "throughput", addr, "--records", n, "--size", "64", "--batch", "1000"], 600)
            else:
                out, _ = run_json([wire, addr, n, "--run", str(i)] + [a for c in rust for a in ("--client", c)], 900)
                got = {x["system"]: x for x in out}
                missing = set(rust) - set(got)
                if missing:
                    raise SystemExit("wire-bench printed no result for %s" % ", ".join(sorted(missing)))
                run.update(got)
        # The round trip, the Rust clients interleaved in one process (see wire-bench's doc).
        out, _ = run_json([wire, "roundtrip", addr, "--count", "600", "--run", str(i)], 600)
        run["roundtrip"] = {x["system"]: x for x in out}
        runs.append(run)
    r["wire_runs"] = runs
    r["rd_roundtrip"] = one_json([PY, RAW, "roundtrip", addr, "--count", "200"], 300)


def python_rpc(args, r):
    conc = args.concurrency
    print("== Python kafka-rpc 1.0.8 (the seed's Sum.add)", file=sys.stderr)
    name = fresh("Sum")
    server = py_server(args, name)
    client = py_client(args, name)
    try:
        r["py_seq"] = measured(args, lambda: one_json(client + ["--mode", "sequential"], 600), [server])
        r["py_threads"] = measured(args, lambda: one_json(client + ["--mode", "threads", "--threads", str(conc)], 600), [server])
        r["py_server_rss_mb"] = proc_usage(server.pid)[1]
    finally:
        stop(server)


def krpc_serve(args, service, concurrency=None, config=None):
    krpc = os.path.join(args.bin, "krpc")
    cmd = [krpc, "serve", "--bootstrap", args.bootstrap, "--service", service,
           "--concurrency", str(concurrency or args.concurrency),
           "--fetch-max-wait", "%dms" % args.fetch_wait_ms]
    if config:
        cmd += ["--config-file", config]
    log = tempfile.NamedTemporaryFile(dir=SERVER_LOGS, prefix=service + "-", suffix=".log", delete=False).name
    # `krpc` logs kafka_rpc at info by default (KRPC_LOG overrides it).
    return start(cmd, log=log)


def warm_up(args, service, *extra, config=None):
    """A few calls that wait for the server, tried again until its request topic exists (a
    server creates it when it starts; a call before that is refused as an unknown service, exit
    2), for 60 s at most."""
    deadline = time.time() + 60
    while True:
        try:
            return one_json(krpc_bench(args, service, *extra, config=config), 300)
        except SystemExit:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def krpc_bench(args, service, *extra, config=None):
    krpc = os.path.join(args.bin, "krpc")
    cmd = [krpc, "bench", "--bootstrap", args.bootstrap, "--service", service, "--payload", "16",
           "--json", "--fetch-max-wait", "%dms" % args.fetch_wait_ms] + list(extra)
    if config:
        cmd += ["--config-file", config]
    return cmd


def rust_rpc(args, r):
    secs, conc = args.seconds, args.concurrency
    wire = os.path.join(args.bin, "wire-bench")
    print("== kafka-rpc (Rust)", file=sys.stderr)
    # The same fetch wait as the Python side: the library default (fetch.max.wait.ms 500 ms) is
    # for Apache Kafka, which answers a waiting fetch at once; the test broker does not.
    service = fresh("Bench")
    dur = ["--duration", str(secs)]
    server = krpc_serve(args, service)
    try:
        # A few calls first: they wait for the server, and leave records whose sizes the raw
        # echo copies.
        warm_up(args, service, "--calls", "50", "--mode", "async", "--concurrency", "10")
        sizes = {}
        for kind, topic in (("request", "krpc.%s.requests" % service), ("reply", "krpc.replies")):
            out, _ = run_json([wire, "sizes", args.bootstrap, topic, "--records", "50"], 120)
            sizes[kind] = max(8, round(out[0]["mean_bytes"])) if out and out[0]["records"] else 64
        r["record_sizes"] = sizes
        if "rust" not in args.skip:
            r["ours_sync"] = measured(args, lambda: one_json(krpc_bench(args, service, "--mode", "sync", *dur), 600), [server])
            # Before and after coalesced completions, in the same run: first a server writing one
            # completion record per call (coalesce_completions = false, fresh topics), then ours
            # as shipped; the broker slows as its partitions fill, so the order favours the former.
            r["ours_async_uncoalesced"] = uncoalesced_async(args, dur)
            r["ours_async"] = measured(args, lambda: one_json(krpc_bench(args, service, "--mode", "async", "--concurrency", str(conc), *dur), 600), [server])
            r["ours_async"]["completions"] = completion_counts(args, service)
            r["ours_server_rss_mb"] = proc_usage(server.pid)[1]
    finally:
        stop(server)
    if "echo" not in args.skip:
        raw_echo(args, r)


def fixed_rates(args, r):
    """Latency at fixed rates, both systems at each rate in turn (the first alternating from one
    rate to the next), each run on fresh topics with a server of its own: the test broker's
    fetch costs more the more batches a partition holds, and it slows as it ages, so a rate
    measured on the topics of a system's throughput runs was slowed by how much that system
    had just done, and one system's rates all after the other's met an older broker."""
    r["py_rates"], r["ours_rates"] = {}, {}
    dur = ["--duration", str(args.seconds)]
    for i, rate in enumerate(rates_of(args, r)):
        runs = [("python", "py_rates", python_rate), ("rust", "ours_rates", rust_rate)]
        for system, key, run in runs if i % 2 == 0 else runs[::-1]:
            if system in args.skip:
                continue
            # One failed run is said and the others still run: the table shows "-" for it.
            try:
                r[key]["%g" % rate] = run(args, rate, dur)
            except SystemExit as e:
                first = (str(e).splitlines() or ["?"])[0]
                print("== rates: %s at %g calls/s FAILED: %s" % (system, rate, first), file=sys.stderr)
                r["failed"].append("rates: %s at %g calls/s: %s" % (system, rate, first))


def rates_of(args, r):
    """The fixed rates: --rates plus the calls/s the Python package reached in its threads run."""
    rates = csv_numbers(args.rates)
    if "py_threads" in r:
        rates.append(float(round(r["py_threads"]["calls_per_s"])))
    return sorted(set(x for x in rates if x > 0))


def python_rate(args, rate, dur):
    """One fixed-rate run of the Python package on fresh topics (see fixed_rates). kafka-rpc
    1.0.8's client gives up when its server has not created the topics within its 30 s
    handshake (seen once on a slow broker: "Subscribed topic not available"); a run that failed
    before its measurement could have begun (within `STARTUP_FAILURE_S`) is tried once more,
    with a new server on new topics, and the retry is recorded (`retried_after`)."""
    print("== Python kafka-rpc 1.0.8 at %g calls/s (fresh topics)" % rate, file=sys.stderr)
    retried_after = None
    for attempt in (1, 2):
        name = fresh("SumRate")
        server = py_server(args, name)
        client = py_client(args, name)
        began = time.time()
        try:
            res = measured(args, lambda: one_json(client + ["--mode", "rate", "--rate", str(rate)], 600), [server])
            if retried_after:
                res["retried_after"] = retried_after
            return res
        except SystemExit as e:
            if attempt == 2 or time.time() - began > STARTUP_FAILURE_S:
                raise
            retried_after = (str(e).splitlines() or ["?"])[0]
            print("== the Python client did not start (%s); once more on new topics" % retried_after,
                  file=sys.stderr)
        finally:
            stop(server)


# kafka-rpc 1.0.8's client handshake (30 s at most) and then the seed client's wait for a
# first answer (`--ready-timeout`, 60 s) come before any measuring, one after the other: a rate
# run failing within both, and a margin for starting Python, failed before measuring anything.
STARTUP_FAILURE_S = 30 + 60 + 15


def rust_rate(args, rate, dur):
    """One fixed-rate run of ours on fresh topics (see fixed_rates): a new service (request and
    completion topics) with a server of its own, and a reply topic of its own (client config
    `reply_topic`)."""
    print("== kafka-rpc (Rust) at %g calls/s (fresh topics)" % rate, file=sys.stderr)
    service = fresh("BenchRate")
    with config_file('[client]\nreply_topic = "%s"\n' % fresh("krpc.replies.rate")) as config:
        server = krpc_serve(args, service)
        try:
            warm_up(args, service, "--calls", "50", "--mode", "async", "--concurrency", "10", config=config)
            return measured(args, lambda: one_json(krpc_bench(args, service, "--rate", str(rate), *dur,
                                                              config=config), 600), [server])
        finally:
            stop(server)


def uncoalesced_async(args, dur):
    """The async run against a server that writes one completion record per call."""
    print("== kafka-rpc (Rust), one completion record per call", file=sys.stderr)
    service = fresh("BenchOnePer")
    with config_file("[server]\ncoalesce_completions = false\n") as config:
        server = krpc_serve(args, service, config=config)
        try:
            warm_up(args, service, "--calls", "50", "--mode", "async", "--concurrency", "10")
            res = measured(args, lambda: one_json(krpc_bench(args, service, "--mode", "async", "--concurrency",
                                                             str(args.concurrency), *dur), 600), [server])
            res["completions"] = completion_counts(args, service)
            return res
        finally:
            stop(server)


def completion_counts(args, service):
    """Completion records and requests completed in the last minute (`krpc status`)."""
    krpc = os.path.join(args.bin, "krpc")
    cmd = [krpc, "status", "--bootstrap", args.bootstrap, "--service", service, "-o", "json"]
    try:
        s = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout)
    except (subprocess.SubprocessError, ValueError) as e:
        print("krpc status failed: %s" % e, file=sys.stderr)
        s = {}
    return {"records": s.get("completion_records_last_minute"), "requests": s.get("completions_last_minute")}


def raw_echo(args, r):
    """The limit: a request record, a fetch, a reply record, a fetch; no RPC logic."""
    addr, sizes = args.bootstrap, r["record_sizes"]
    wire = os.path.join(args.bin, "wire-bench")
    r["echo"] = {}
    for system, echo_cmd in (("krpc-kafka", [wire, "echo"]), ("librdkafka", [PY, RAW, "echo"])):
        print("== raw echo with %s (%d in flight, %d-byte requests, %d-byte replies)"
              % (system, args.concurrency, sizes["request"], sizes["reply"]), file=sys.stderr)
        topics = ["--requests", fresh("raw-echo-req"), "--replies", fresh("raw-echo-rep"),
                  "--partitions", "16", "--reply-size", str(sizes["reply"]),
                  "--fetch-wait-ms", str(args.fetch_wait_ms)]
        echo = start(echo_cmd + [addr] + topics)
        caller = echo_cmd[:-1] + ["echo-caller", addr] + topics + [
            "--in-flight", str(args.concurrency), "--seconds", str(args.seconds),
            "--request-size", str(sizes["request"])]
        try:
            r["echo"][system] = measured(args, lambda: one_json(caller, 600), [echo])
        finally:
            stop(echo)


def scaling(args, r):
    secs, conc = args.seconds, args.concurrency
    r["scaling"] = {"servers": {}, "partitions": {}, "memory": {}}
    async_run = ["--mode", "async", "--concurrency", str(conc), "--duration", str(secs)]
    for n in csv_numbers(args.scaling_servers, int):
        print("== scaling: %d server processes" % n, file=sys.stderr)
        service = fresh("Scale%d" % n)
        servers = [krpc_serve(args, service) for _ in range(n)]
        try:
            # Let every server join the group and get its partitions: a warm-up run as long as
            # the measured one (joins trigger rebalances).
            warm_up(args, service, *async_run)
            res = measured(args, lambda: one_json(krpc_bench(args, service, *async_run), 600), servers)
            res["server_rss_mb"] = max(proc_usage(p.pid)[1] for p in servers)
            r["scaling"]["servers"][str(n)] = res
        finally:
            for s in servers:
                stop(s)
    for parts in csv_numbers(args.scaling_partitions, int):
        print("== scaling: %d request partitions" % parts, file=sys.stderr)
        service = fresh("Parts%d" % parts)
        with config_file("[topics]\nrequest_partitions = %d\n" % parts) as config:
            server = krpc_serve(args, service, config=config)
            try:
                warm_up(args, service, "--calls", "50", config=config)
                res = measured(args, lambda: one_json(krpc_bench(args, service, *async_run, config=config), 600),
                               [server])
                res["server_rss_mb"] = proc_usage(server.pid)[1]
                r["scaling"]["partitions"][str(parts)] = res
            finally:
                stop(server)
    sleep_ms = args.scaling_sleep_ms
    for n in csv_numbers(args.scaling_in_flight, int):
        print("== scaling: %d calls in flight (sleep(%d ms) handler)" % (n, sleep_ms), file=sys.stderr)
        service = fresh("Mem%d" % n)
        server = krpc_serve(args, service, concurrency=n)
        try:
            warm_up(args, service, "--calls", "5")
            rss0 = proc_usage(server.pid)[1]
            run = ["--mode", "async", "--concurrency", str(n), "--sleep-ms", str(sleep_ms),
                   "--timeout", "120s", "--duration", str(max(secs, 2 * sleep_ms / 1e3))]
            res = measured(args, lambda: one_json(krpc_bench(args, service, *run), 900), [server])
            res["server_rss_idle_mb"] = rss0
            res["server_rss_mb"] = proc_usage(server.pid)[1]
            r["scaling"]["memory"][str(n)] = res
        finally:
            stop(server)


def f(x, fmt="%.1f"):
    return fmt % x if isinstance(x, (int, float)) else "n/a"


def report(r, args):
    fw = args.fetch_wait_ms
    print()
    print("Machine: %s, %d cores, %s; broker nisshi 0.8.1 (memory storage) on loopback; fetch wait %d ms everywhere"
          % (platform.machine(), os.cpu_count(), platform.platform(), fw))
    if "py_threads" in r or "ours_async" in r:
        rpc_table(r, args)
    if "echo" in r:
        echo_table(r, args)
    if "py_rates" in r or "ours_rates" in r:
        rates_table(r, args)
    if "wire_runs" in r:
        kafka_table(r, args)
    if "scaling" in r:
        scaling_tables(r, args)
    print()
    print("Our servers' logs (info): %s" % SERVER_LOGS)
    print("JSON: " + json.dumps(r))


def rpc_table(r, args):
    print()
    print("RPC: %g s per run, payload 16 bytes (Rust echo) / Sum.add(1, 2) (Python); CPU in µs per answered call"
          % args.seconds)
    rows = [
        ("Python kafka-rpc 1.0.8, sequential", r.get("py_seq"), r.get("py_seq")),
        ("Python kafka-rpc 1.0.8, %d threads" % args.concurrency, r.get("py_threads"), r.get("py_threads")),
        ("kafka-rpc (Rust), sync x1", r.get("ours_sync"), r.get("py_seq")),
        ("kafka-rpc (Rust), async x%d, 1 compl/call" % args.concurrency, r.get("ours_async_uncoalesced"),
         r.get("py_threads")),
        ("kafka-rpc (Rust), async x%d" % args.concurrency, r.get("ours_async"), r.get("py_threads")),
    ]
    print("%-38s %9s %7s %8s %8s %9s %12s %12s %12s" % (
        "system", "calls/s", "errors", "p50 ms", "p99 ms", "vs Python", "broker µs", "server µs", "client µs"))
    for name, x, base in rows:
        if not x:
            continue
        print("%-38s %9.0f %7d %8s %8s %9s %12s %12s %12s" % (
            name, x["calls_per_s"], x.get("errors", 0), f(x.get("p50_ms"), "%.2f"), f(x.get("p99_ms"), "%.2f"),
            ratio(x["calls_per_s"], base and base["calls_per_s"]), f(x.get("broker_us_per_call")),
            f(x.get("server_us_per_call")), f(x.get("client_us_per_call"))))
    hop, b2b = r["rd_latency"]["p50_ms"], r["rd_latency_b2b"]["p50_ms"]
    print()
    print("Latency against raw librdkafka, one produce-to-consume hop p50: %.2f ms with random pauses"
          " between records, %.2f ms back to back (two hops: %.2f / %.2f ms)" % (hop, b2b, 2 * hop, 2 * b2b))
    ours_sync, ours_async, py = r.get("ours_sync"), r.get("ours_async"), r.get("py_threads")
    if ours_sync:
        print("  Rust sync p50 %.2f ms = %s of two paused hops, %s of two back-to-back hops (target: at most 1.20x)"
              % (ours_sync["p50_ms"], ratio(ours_sync["p50_ms"], 2 * hop), ratio(ours_sync["p50_ms"], 2 * b2b)))
    if ours_async and py:
        print("  Rust async calls/s = %s of Python's %d threads (target: at least 30x)"
              % (ratio(ours_async["calls_per_s"], py["calls_per_s"]), args.concurrency))
        print("  Broker CPU per call, Rust async / Python threads = %s (target: at most 0.17x)"
              % ratio(ours_async.get("broker_us_per_call"), py.get("broker_us_per_call")))
    before = r.get("ours_async_uncoalesced")
    if ours_async and before:
        def per(x):
            c = x.get("completions") or {}
            return "%s records for %s completions" % (c.get("records"), c.get("requests"))
        print("  Coalesced completions (async x%d): broker CPU per call %s -> %s µs (%s), server %s -> %s µs;"
              " completions topic, last minute: %s -> %s"
              % (args.concurrency, f(before.get("broker_us_per_call")), f(ours_async.get("broker_us_per_call")),
                 ratio(ours_async.get("broker_us_per_call"), before.get("broker_us_per_call")),
                 f(before.get("server_us_per_call")), f(ours_async.get("server_us_per_call")),
                 per(before), per(ours_async)))
    rss = ["%s %.1f MB" % (n, r[k]) for n, k in (("ours", "ours_server_rss_mb"), ("Python", "py_server_rss_mb")) if k in r]
    if rss:
        print("  Server peak RSS: " + ", ".join(rss))


def echo_table(r, args):
    e, sizes = r["echo"], r["record_sizes"]
    print()
    print("The limit, raw echo: %d in flight, %d-byte request and %d-byte reply records (the sizes of the"
          " RPC run's), 16 request partitions; CPU in µs per echo"
          % (args.concurrency, sizes["request"], sizes["reply"]))
    print("%-38s %9s %8s %8s %12s %12s %12s" % ("system", "calls/s", "p50 ms", "p99 ms", "broker µs", "echo µs", "caller µs"))
    for system, x in e.items():
        print("%-38s %9.0f %8.2f %8.2f %12s %12s %12s" % (
            "raw echo, " + system, x["calls_per_s"], x["p50_ms"], x["p99_ms"], f(x.get("broker_us_per_call")),
            f(x.get("server_us_per_call")), f(x.get("client_us_per_call"))))
    best_system = max(e, key=lambda s: e[s]["calls_per_s"])
    best = e[best_system]["calls_per_s"]
    if "ours_async" in r:
        print("Headline: our async RPC = %.0f%% of the limit (%.0f of %.0f calls/s, the %s raw echo; target: at least 90%%)"
              % (100 * r["ours_async"]["calls_per_s"] / best, r["ours_async"]["calls_per_s"], best, best_system))


def rates_table(r, args):
    print()
    print("Latency at fixed rates (open loop, latency from each call's scheduled start; %g s per rate;"
          " each rate of each system on fresh topics with a server of its own, the two systems in turn,"
          " the first alternating from one rate to the next);"
          " * = achieved rate below 95%% of the target" % args.seconds)
    print("%10s | %9s %8s %8s %8s | %9s %8s %8s %8s" % (
        "calls/s", "ours got", "p50 ms", "p99 ms", "p99.9", "Py got", "p50 ms", "p99 ms", "p99.9"))
    ours, py = r.get("ours_rates", {}), r.get("py_rates", {})
    for rate in sorted(set(ours) | set(py), key=float):
        cells = []
        for x in (ours.get(rate), py.get(rate)):
            if not x:
                cells.append("%9s %8s %8s %8s" % ("-", "-", "-", "-"))
                continue
            got = x.get("achieved_rate") or 0
            mark = "*" if got < 0.95 * float(rate) else " "
            cells.append("%8.0f%s %8s %8s %8s" % (got, mark, f(x.get("p50_ms"), "%.2f"),
                                                 f(x.get("p99_ms"), "%.2f"), f(x.get("p999_ms"), "%.2f")))
        print("%10s | %s | %s" % (rate, cells[0], cells[1]))
    for rate, x in sorted(py.items(), key=lambda kv: float(kv[0])):
        if x.get("retried_after"):
            print("  Python at %s calls/s: measured on a second server, the first client having given up (%s)"
                  % (rate, x["retried_after"]))


def spread(values):
    values = sorted(values)
    return "%s / %s / %s" % (f(values[0], "%.0f"), f(statistics.median(values), "%.0f"), f(values[-1], "%.0f"))


def spread2(values):
    values = sorted(values)
    return "%.2f / %.2f / %.2f" % (values[0], statistics.median(values), values[-1])


def fetch_half(rt):
    """The fetch half's p50: measured (since 2026-12-01 14:20), else the round trip's p50 less
    the produce half's."""
    return rt.get("fetch_p50_ms", rt["p50_ms"] - rt["produce_p50_ms"])


def kafka_table(r, args):
    runs = r["wire_runs"]
    print()
    print("Kafka layer: %d records of 64 bytes in batches of 1,000; %d run(s), each client on fresh topics, the"
          " two Rust clients in turns in one process (10 batches, one fetch per turn),"
          " librdkafka's process before them in runs 1, 3, ... and after them in runs 2, 4, ...; min / median / max"
          " over the runs; CPU per record is the median of the runs (process CPU during the client's"
          " turns)" % (args.records, len(runs)))
    print("krpc-kafka with idempotence off, as rskafka (which has none) and librdkafka (off by default);"
          " rt = produce one record, await the ack, fetch it back: 600 per Rust client per run, interleaved"
          " in blocks of 20 in one process; librdkafka's 200, once")
    print("%-23s %26s %28s %20s %11s %11s %9s" % (
        "client", "produce rec/s", "fetch rec/s", "rt p50 ms", "prod CPU µs", "fetch CPU µs", "rt CPU µs"))
    for c in ("krpc-kafka", "krpc-kafka idempotent", "krpc-kafka no sessions", "rskafka",
              "rskafka two connections", "librdkafka"):
        rts = [run["roundtrip"][c] for run in runs if c in run.get("roundtrip", {})]
        if c == "librdkafka":
            rt = "%.2f (one run)" % r["rd_roundtrip"]["p50_ms"]
        else:
            rt = spread2([x["p50_ms"] for x in rts])
        rt_cpu = "%9.1f" % statistics.median(x["cpu_us_per_roundtrip"] for x in rts) if rts else "%9s" % "-"
        if c in ("krpc-kafka idempotent", "krpc-kafka no sessions", "rskafka two connections"):
            # Only the round trip: the throughput rows are like for like.
            print("%-23s %26s %28s %20s %11s %11s %s" % (c, "-", "-", rt, "-", "-", rt_cpu))
            continue
        xs = [run[c] for run in runs]
        print("%-23s %26s %28s %20s %11.3f %11.3f %s" % (
            c, spread([x["produce_per_s"] for x in xs]), spread([x["fetch_per_s"] for x in xs]), rt,
            statistics.median(x["produce_cpu_us_per_record"] for x in xs),
            statistics.median(x["fetch_cpu_us_per_record"] for x in xs), rt_cpu))
    print("krpc-kafka / rskafka per run (produce, fetch: higher is better; round trip p50 and its halves,"
          " CPU per round trip: lower is better; the produce half is send to acknowledgement, the fetch"
          " half the rest; \"no sessions\": krpc-kafka's round trip with KIP-227 fetch sessions off;"
          " \"two connections\": against rskafka producing and fetching on a connection each, as"
          " krpc-kafka's producer and fetcher do):")
    for i, run in enumerate(runs):
        kw, rs = run["krpc-kafka"], run["rskafka"]
        kr, rr = run["roundtrip"]["krpc-kafka"], run["roundtrip"]["rskafka"]
        ns = run["roundtrip"].get("krpc-kafka no sessions")
        two = run["roundtrip"].get("rskafka two connections")
        print("  run %d (%s): produce %s, fetch %s, round trip p50 %s (produce half %s, fetch half %s%s%s),"
              " CPU per round trip %s%s" % (
                  i + 1, " > ".join(run["order"]), ratio(kw["produce_per_s"], rs["produce_per_s"]),
                  ratio(kw["fetch_per_s"], rs["fetch_per_s"]), ratio(kr["p50_ms"], rr["p50_ms"]),
                  ratio(kr["produce_p50_ms"], rr["produce_p50_ms"]),
                  ratio(fetch_half(kr), fetch_half(rr)),
                  ", no sessions %s" % ratio(ns["p50_ms"], rr["p50_ms"]) if ns else "",
                  ", against two connections %s" % ratio(kr["p50_ms"], two["p50_ms"]) if two else "",
                  ratio(kr["cpu_us_per_roundtrip"], rr["cpu_us_per_roundtrip"]),
                  " (against two connections %s)" % ratio(kr["cpu_us_per_roundtrip"], two["cpu_us_per_roundtrip"])
                  if two else ""))
        # The test broker now and then answers an acknowledged record's first fetch with no
        # record; wire-bench polls again and counts it (the time stays in the round trip).
        empties = {c: x.get("empty_fetches", 0) for c, x in run["roundtrip"].items() if x.get("empty_fetches")}
        if empties:
            print("    fetches (polls) that returned no record and were repeated: %s" % ", ".join(
                "%s %d" % (c, n) for c, n in sorted(empties.items())))


def scaling_tables(r, args):
    s = r["scaling"]
    print()
    print("Scaling (async x%d, %g s per run; CPU in µs per call; server CPU summed over the servers)"
          % (args.concurrency, args.seconds))
    print("%-28s %9s %8s %8s %12s %12s %11s" % ("setup", "calls/s", "p50 ms", "p99 ms", "broker µs", "server µs", "server RSS"))
    for one, many, group in (("server process", "server processes", s["servers"]),
                             ("request partition", "request partitions", s["partitions"])):
        for n, x in group.items():
            rss = x.get("server_rss_mb")
            print("%-28s %9.0f %8.2f %8.2f %12s %12s %11s" % (
                "%s %s" % (n, one if str(n) == "1" else many), x["calls_per_s"], x["p50_ms"], x["p99_ms"], f(x.get("broker_us_per_call")),
                f(x.get("server_us_per_call")), f(rss) + " MB" if rss else "n/a"))
    print("Server memory with calls piling up (sleep(%d ms) handler, server concurrency = calls in flight;"
          " target: under 50 MB at 10,000)" % args.scaling_sleep_ms)
    print("%-28s %9s %14s %14s %14s" % ("calls in flight", "calls/s", "server RSS MB", "idle RSS MB", "client RSS MB"))
    for n, x in s["memory"].items():
        print("%-28s %9.0f %14.1f %14.1f %14.1f" % (n, x["calls_per_s"], x["server_rss_mb"], x["server_rss_idle_mb"],
                                                 x.get("client_rss_mb", 0)))


if __name__ == "__main__":
    main()
