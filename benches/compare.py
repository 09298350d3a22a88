"""Runs every benchmark against one broker and prints the comparison tables (see benches/compare).

Each system runs in processes of its own; their results come back as JSON lines. CPU time and
peak RSS of our client come from wait4(2); our server's from /proc just before it is stopped.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


def run_json(cmd, timeout):
    """Runs cmd, returns (list of JSON objects it printed, rusage)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    deadline = time.time() + timeout
    out = []
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
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out, usage


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


def start(cmd, ready_check=None, timeout=60):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if ready_check:
        deadline = time.time() + timeout
        while not ready_check():
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise SystemExit("could not start: %s" % " ".join(cmd))
            time.sleep(0.2)
    return proc


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def timed(args, run):
    """Runs `run`, adding the broker's CPU seconds during it to its result (dict or tuple[0][0])."""
    before = proc_usage(args.broker_pid)[0] if args.broker_pid else None
    result = run()
    if before is not None:
        cpu = proc_usage(args.broker_pid)[0] - before
        target = result if isinstance(result, dict) else result[0][0]
        target["broker_cpu_s"] = cpu
    return result


def ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "n/a"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--bin", required=True, help="directory of the release krpc and wire-bench")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--fetch-wait-ms", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--broker-pid", type=int, default=0, help="to report the broker's CPU time per run")
    args = ap.parse_args()
    addr, secs, fw, conc = args.bootstrap, args.seconds, args.fetch_wait_ms, args.concurrency
    krpc = os.path.join(args.bin, "krpc")
    results = {}

    print("== raw librdkafka", file=sys.stderr)
    raw = os.path.join(HERE, "python", "rdkafka_raw.py")
    results["rd_latency"] = run_json([PY, raw, "latency", addr, "--count", "200", "--fetch-wait-ms", str(fw)], 300)[0][0]
    # Back to back, like our sync bench: the consumer's fetch is always already waiting.
    results["rd_latency_b2b"] = run_json([PY, raw, "latency", addr, "--count", "200", "--fetch-wait-ms", str(fw), "--no-jitter"], 300)[0][0]
    results["rd_roundtrip"] = run_json([PY, raw, "roundtrip", addr, "--count", "200"], 300)[0][0]
    results["rd_throughput"] = run_json([PY, raw, "throughput", addr, "--records", "200000", "--size", "64", "--batch", "1000"], 600)[0][0]

    print("== the Kafka layer: krpc-kafka and rskafka", file=sys.stderr)
    wire, _ = run_json([os.path.join(args.bin, "wire-bench"), addr, "200000"], 600)
    results["wire"] = {w["system"]: w for w in wire}

    print("== Python kafka-rpc 1.0.8 (the seed's Sum.add)", file=sys.stderr)
    seed = os.path.join(HERE, "python", "krpc_seed.py")
    server = start([PY, seed, "server", addr, "Sum", "--fetch-wait-ms", str(fw)])
    try:
        results["py_seq"] = timed(args, lambda: run_json([PY, seed, "client", addr, "Sum", "--mode", "sequential", "--seconds", str(secs), "--fetch-wait-ms", str(fw)], 600)[0][0])
        results["py_threads"] = timed(args, lambda: run_json([PY, seed, "client", addr, "Sum", "--mode", "threads", "--threads", str(conc), "--seconds", str(secs), "--fetch-wait-ms", str(fw)], 600)[0][0])
    finally:
        stop(server)

    print("== kafka-rpc (Rust)", file=sys.stderr)
    # The same fetch wait as the Python side: the library default (fetch.max.wait.ms 500 ms) is
    # for Apache Kafka, which answers a waiting fetch at once; the test broker does not.
    wait = ["--fetch-max-wait", "%dms" % fw]
    server = start([krpc, "serve", "--bootstrap", addr, "--service", "Bench", "--concurrency", str(conc)] + wait)
    try:
        bench = [krpc, "bench", "--bootstrap", addr, "--service", "Bench", "--duration", str(secs), "--payload", "16", "--json"] + wait
        (sync,), sync_usage = timed(args, lambda: run_json(bench + ["--mode", "sync"], 600))
        (asyn,), async_usage = timed(args, lambda: run_json(bench + ["--mode", "async", "--concurrency", str(conc)], 600))
        server_cpu, server_rss = proc_usage(server.pid)
    finally:
        stop(server)
    results["ours_sync"], results["ours_async"] = sync, asyn
    results["ours_usage"] = {
        "client_sync_cpu_s": sync_usage.ru_utime + sync_usage.ru_stime,
        "client_sync_rss_mb": sync_usage.ru_maxrss / 1024,
        "client_async_cpu_s": async_usage.ru_utime + async_usage.ru_stime,
        "client_async_rss_mb": async_usage.ru_maxrss / 1024,
        "server_cpu_s": server_cpu,
        "server_rss_mb": server_rss,
    }
    report(results, args)


def report(r, args):
    fw = args.fetch_wait_ms
    print()
    print("Machine: %s, %d cores, %s; broker nisshi 0.8.1 (memory storage) on loopback; fetch wait %d ms everywhere"
          % (platform.machine(), os.cpu_count(), platform.platform(), fw))
    print()
    print("RPC: %d s per run, payload 16 bytes (Rust echo) / Sum.add(1, 2) (Python)" % args.seconds)
    rows = [
        ("Python kafka-rpc 1.0.8, sequential", r["py_seq"]),
        ("Python kafka-rpc 1.0.8, %d threads" % args.concurrency, r["py_threads"]),
        ("kafka-rpc (Rust), sync x1", r["ours_sync"]),
        ("kafka-rpc (Rust), async x%d" % args.concurrency, r["ours_async"]),
    ]
    print("%-40s %10s %8s %10s %9s %9s %11s" % ("system", "calls/s", "errors", "p50 ms", "p99 ms", "vs Python", "broker CPU"))
    base = {0: r["py_seq"]["calls_per_s"], 1: r["py_threads"]["calls_per_s"]}
    for i, (name, x) in enumerate(rows):
        vs = ratio(x["calls_per_s"], base[i % 2])
        broker = "%.1f s" % x["broker_cpu_s"] if "broker_cpu_s" in x else "n/a"
        print("%-40s %10.0f %8d %10.2f %9.2f %9s %11s" % (name, x["calls_per_s"], x.get("errors", 0), x["p50_ms"], x["p99_ms"], vs, broker))
    hop, b2b = r["rd_latency"]["p50_ms"], r["rd_latency_b2b"]["p50_ms"]
    print()
    print("Latency against raw librdkafka, one produce-to-consume hop p50: %.2f ms with random pauses"
          " between records, %.2f ms back to back (two hops: %.2f / %.2f ms)" % (hop, b2b, 2 * hop, 2 * b2b))
    print("  Rust sync p50 %.2f ms = %s of two paused hops, %s of two back-to-back hops (target: at most 1.20x)"
          % (r["ours_sync"]["p50_ms"], ratio(r["ours_sync"]["p50_ms"], 2 * hop), ratio(r["ours_sync"]["p50_ms"], 2 * b2b)))
    print("  Rust async calls/s = %s of Python's %d threads (target: at least 30x)"
          % (ratio(r["ours_async"]["calls_per_s"], r["py_threads"]["calls_per_s"]), args.concurrency))
    u = r["ours_usage"]
    print()
    print("Resources: server %.1f CPU s, peak RSS %.1f MB (target < 50 MB); client sync %.1f CPU s, %.1f MB; client async %.1f CPU s, %.1f MB"
          % (u["server_cpu_s"], u["server_rss_mb"], u["client_sync_cpu_s"], u["client_sync_rss_mb"], u["client_async_cpu_s"], u["client_async_rss_mb"]))
    print()
    print("Kafka layer: 200,000 records of 64 bytes in batches of 1,000; produce-then-fetch of one record")
    print("%-14s %14s %14s %12s %12s" % ("client", "produce rec/s", "fetch rec/s", "rt p50 ms", "rt p99 ms"))
    wire = r["wire"]
    rd = r["rd_throughput"]
    rows = [
        ("krpc-kafka", wire["krpc-kafka"]["produce_per_s"], wire["krpc-kafka"]["fetch_per_s"], wire["krpc-kafka"]["roundtrip_p50_ms"], wire["krpc-kafka"]["roundtrip_p99_ms"]),
        ("rskafka", wire["rskafka"]["produce_per_s"], wire["rskafka"]["fetch_per_s"], wire["rskafka"]["roundtrip_p50_ms"], wire["rskafka"]["roundtrip_p99_ms"]),
        ("librdkafka", rd["produce_per_s"], rd["fetch_per_s"], r["rd_roundtrip"]["p50_ms"], r["rd_roundtrip"]["p99_ms"]),
    ]
    for name, p, f, p50, p99 in rows:
        print("%-14s %14.0f %14.0f %12.2f %12.2f" % (name, p, f, p50, p99))
    kw, rs = wire["krpc-kafka"], wire["rskafka"]
    print("krpc-kafka / rskafka: produce %s, fetch %s, round trip p50 %s (lower is better)"
          % (ratio(kw["produce_per_s"], rs["produce_per_s"]), ratio(kw["fetch_per_s"], rs["fetch_per_s"]),
             ratio(kw["roundtrip_p50_ms"], rs["roundtrip_p50_ms"])))
    print()
    print("JSON: " + json.dumps(r))


if __name__ == "__main__":
    main()
