//! `krpc consume`, `krpc produce` and the `--config` file, run as real processes against the
//! real broker, with librdkafka (the interop venv) as the independent client on the other side.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use krpc_tests::process::LineProcess;
use krpc_tests::{kafka, python, rpc, wait, Broker};
use serde_json::{json, Value};

/// Bound of every python peer run.
const T: Duration = Duration::from_secs(90);

/// Runs `krpc ARGS` with `KAFKA_BOOTSTRAP=addr` and `input` on stdin.
fn krpc_in(addr: &str, args: &[&str], input: impl AsRef<[u8]>) -> Output {
    let mut child = krpc_tests::tuning::krpc_command()
        .env("KAFKA_BOOTSTRAP", addr)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run krpc");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_ref()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("krpc output")
}

fn krpc(addr: &str, args: &[&str]) -> Output {
    krpc_in(addr, args, "")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "krpc failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// The JSON lines of a successful run.
fn json_lines(out: &Output) -> Vec<Value> {
    ok(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `krpc consume TOPIC ARGS -o json`, run to success: its records as JSON values.
fn consume_json(addr: &str, topic: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["consume", topic];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    json_lines(&krpc(addr, &all))
}

fn hexs(text: impl AsRef<[u8]>) -> String {
    text.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn values(lines: &[Value]) -> Vec<Value> {
    lines.iter().map(|l| l["value"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_consume_keys_headers_offsets_and_formats_and_librdkafka_agrees() {
    let addr = Broker::shared().addr().to_string();
    let client = kafka::client(&addr).await;
    let topic = kafka::topic(&client, "cli-records", 2).await;

    // Ten stdin lines to partition 0 with a key and two headers; one JSON line per record.
    let input: String = (0..10).map(|i| format!("v{i}\n")).collect();
    let written = json_lines(&krpc_in(
        &addr,
        &[
            "produce",
            &topic,
            "-p",
            "0",
            "-k",
            "user-1",
            "-H",
            "source=cli",
            "-H",
            "n=1",
            "-o",
            "json",
        ],
        &input,
    ));
    assert_eq!(written.len(), 10);
    for (i, w) in written.iter().enumerate() {
        assert_eq!(w, &json!({"topic": topic, "partition": 0, "offset": i}));
    }
    // kcat -K: keys split off each line (a line without the delimiter has no key); the
    // summary table otherwise.
    let out = krpc_in(
        &addr,
        &["produce", &topic, "-p", "1", "--key-delimiter", ":"],
        "k1:a\nk2:b:c\nno key\n",
    );
    let summary = ok(&out);
    assert!(summary.contains("PARTITION"), "{summary}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 records written"),
        "{out:?}"
    );
    // Values that are not UTF-8: raw bytes on stdin, and given in hex.
    ok(&krpc_in(
        &addr,
        &["produce", &topic, "-p", "1"],
        b"\xff\xfe\x00raw\n",
    ));
    ok(&krpc(
        &addr,
        &[
            "produce",
            &topic,
            "-p",
            "1",
            "--value-format",
            "hex",
            "fffe00",
        ],
    ));

    // Everything, bounded by the end offsets at start: 15 records, as JSON lines.
    let all = consume_json(&addr, &topic, &[]);
    assert_eq!(all.len(), 15, "{all:#?}");
    let p0: Vec<&Value> = all.iter().filter(|r| r["partition"] == 0).collect();
    assert_eq!(p0.len(), 10);
    for (i, r) in p0.iter().enumerate() {
        assert_eq!(r["offset"], i, "{r}");
        assert_eq!(r["key"], "user-1");
        assert_eq!(r["value"], format!("v{i}"));
        assert_eq!(
            r["headers"],
            json!([{"key": "source", "value": "cli"}, {"key": "n", "value": "1"}])
        );
        assert_eq!(r["timestamp_type"], "create_time");
        assert!(r["timestamp"].as_i64().unwrap() > 1_600_000_000_000, "{r}");
    }
    let p1: Vec<&Value> = all.iter().filter(|r| r["partition"] == 1).collect();
    assert_eq!(
        p1.iter().map(|r| r["key"].clone()).collect::<Vec<_>>(),
        [
            json!("k1"),
            json!("k2"),
            Value::Null,
            Value::Null,
            Value::Null
        ]
    );
    assert_eq!(
        p1.iter().map(|r| r["value"].clone()).collect::<Vec<_>>(),
        [
            json!("a"),
            json!("b:c"),
            json!("no key"),
            json!("fffe00726177"),
            json!("fffe00")
        ]
    );
    assert_eq!(
        p1[3]["value_encoding"], "hex",
        "non-UTF-8 values are marked"
    );
    assert_eq!(p1[4]["value_encoding"], "hex");
    assert!(p1[2].get("value_encoding").is_none());

    // Offsets: -N from the end, an offset with a count, the end (nothing, at once).
    let last3 = consume_json(&addr, &topic, &["-p", "0", "--offset", "-3"]);
    assert_eq!(values(&last3), [json!("v7"), json!("v8"), json!("v9")]);
    let two = consume_json(&addr, &topic, &["-p", "0", "--offset", "5", "-c", "2"]);
    assert_eq!(values(&two), [json!("v5"), json!("v6")]);
    let beginning = consume_json(
        &addr,
        &topic,
        &["-p", "1", "--offset", "beginning", "-c", "1"],
    );
    assert_eq!(values(&beginning), [json!("a")]);
    assert!(consume_json(&addr, &topic, &["--offset", "end"]).is_empty());
    // Formats: hex asked for is not marked; the table marks the fallback.
    let hex = consume_json(
        &addr,
        &topic,
        &[
            "-p",
            "1",
            "--offset",
            "4",
            "--value-format",
            "hex",
            "--key-format",
            "hex",
        ],
    );
    assert_eq!(hex.len(), 1);
    assert_eq!(hex[0]["value"], "fffe00");
    assert!(hex[0].get("value_encoding").is_none(), "{}", hex[0]);
    let table = ok(&krpc(&addr, &["consume", &topic, "-p", "1"]));
    assert!(table.contains("[hex] fffe00\n"), "{table}");
    assert!(table.contains("[hex] fffe00726177"), "{table}");
    assert!(table.contains("OFFSET") && table.contains("b:c"), "{table}");

    // --follow: records written after the start are printed; --count ends it.
    let mut follow = LineProcess::spawn("krpc consume --follow", {
        let mut cmd = krpc_tests::tuning::krpc_command();
        cmd.env("KAFKA_BOOTSTRAP", &addr).args([
            "consume", &topic, "-p", "0", "--offset", "end", "--follow", "-c", "2", "-o", "json",
        ]);
        cmd
    });
    // Written until the consumer (which starts at the end it sees) has printed two.
    wait::until(
        "the follower prints new records",
        Duration::from_secs(60),
        || {
            let (addr, topic) = (addr.clone(), topic.clone());
            let printed = follow.lines().len();
            async move {
                if printed >= 2 {
                    return Some(());
                }
                ok(&krpc(&addr, &["produce", &topic, "-p", "0", "late"]));
                tokio::time::sleep(Duration::from_millis(200)).await;
                None
            }
        },
    )
    .await;
    assert!(follow.close_and_wait(Duration::from_secs(30)).success());
    for line in follow.lines() {
        let r: Value = serde_json::from_str(&line).expect("JSON line");
        assert_eq!(r["value"], "late");
        assert!(r["offset"].as_i64().unwrap() >= 10);
    }

    // The independent client reads what krpc produced: key, headers, values.
    let theirs = python::run(
        "peers.py",
        &["consume", "confluent", &addr, &topic, "10"],
        T,
    );
    let theirs: Vec<Value> = theirs
        .lines()
        .map(|l| serde_json::from_str(l).expect("peer JSON"))
        .collect();
    assert_eq!(theirs.len(), 10);
    for (i, r) in theirs.iter().enumerate() {
        assert_eq!(r["offset"], i);
        assert_eq!(r["key"], hexs("user-1"));
        assert_eq!(r["value"], hexs(format!("v{i}")));
        assert_eq!(
            r["headers"],
            json!([["source", hexs("cli")], ["n", hexs("1")]])
        );
    }

    // And krpc reads what librdkafka produced: null keys, null values, a null header value, a
    // repeated header key, the producer's timestamps (peers.py's sample records).
    let topic2 = kafka::topic(&client, "cli-records-rdkafka", 1).await;
    python::run(
        "peers.py",
        &["produce", "confluent", &addr, &topic2, "none", "20"],
        T,
    );
    let read = consume_json(&addr, &topic2, &[]);
    assert_eq!(read.len(), 20);
    for (i, r) in read.iter().enumerate() {
        let key = (i % 5 != 4).then(|| format!("key-{i}"));
        let value = (i % 7 != 6).then(|| format!("value-{i}").repeat(i % 3 + 1));
        assert_eq!(r["key"], json!(key), "{r}");
        assert_eq!(r["value"], json!(value), "{r}");
        assert_eq!(
            r["headers"],
            json!([
                {"key": "h", "value": i.to_string()},
                {"key": "n", "value": null},
                {"key": "h", "value": "again"}
            ])
        );
        assert_eq!(r["timestamp"], 1_600_000_000_000i64 + i as i64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_or_partition_or_bad_input_fails_with_its_exit_code() {
    let addr = Broker::shared().addr().to_string();
    let client = kafka::client(&addr).await;
    let missing = krpc_tests::unique_topic("cli-missing");
    for args in [
        vec!["consume", missing.as_str()],
        vec!["produce", missing.as_str(), "x"],
    ] {
        let out = krpc(&addr, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("unknown topic {missing}")), "{err}");
    }
    assert!(
        matches!(
            client.topic(&missing).await,
            Err(krpc_kafka::Error::UnknownTopic { .. })
        ),
        "neither command created the topic"
    );
    let topic = kafka::topic(&client, "cli-exit", 1).await;
    for (args, input) in [
        (vec!["consume", topic.as_str(), "-p", "7"], ""),
        (vec!["produce", topic.as_str(), "-p", "7", "x"], ""),
        (
            vec!["produce", topic.as_str(), "--value-format", "hex", "xyz"],
            "",
        ),
        (
            vec!["produce", topic.as_str(), "--value-format", "base64"],
            "ok\n!!!\n",
        ),
        (vec!["consume", topic.as_str(), "--offset", "soon"], ""),
    ] {
        let out = krpc_in(&addr, &args, input);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    // A bad line stops the input, but the record before it is awaited and reported, and the
    // line after it is not sent.
    let partial = kafka::topic(&client, "cli-partial", 1).await;
    let out = krpc_in(
        &addr,
        &["produce", partial.as_str(), "--value-format", "hex"],
        "6869\nzz\n7878\n",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 record before it written"), "{err}");
    assert_eq!(
        client
            .list_offset(&partial, 0, krpc_kafka::OffsetSpec::Latest)
            .await
            .unwrap(),
        1,
        "the record before the bad line, and only it, was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_the_broker_and_server_options_under_flags_and_environment() {
    let addr = Broker::shared().addr().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("krpc.toml");
    std::fs::write(
        &file,
        format!(
            "[broker]\nbootstrap = \"{addr}\"\n\n[server]\nserver_id = \"from-file\"\n\
             concurrency = 3\n\n[client]\ndefault_timeout = \"20s\"\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap().to_string();
    let svc = krpc_tests::unique_topic("cli-config").replace('.', "-");

    // No -b, no KAFKA_BOOTSTRAP: the broker, the server id and the concurrency come from the
    // file, read through `--config` before the command.
    let mut cmd = krpc_tests::tuning::krpc_command();
    cmd.env_remove("KAFKA_BOOTSTRAP")
        .env("KRPC_LOG", "warn,kafka_rpc=info")
        .args(["--config", &file, "serve", "-s", &svc]);
    let mut server = LineProcess::spawn_merged("krpc serve --config", cmd);
    rpc::wait_for_servers(&[&server], 16, Duration::from_secs(60)).await;
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("as from-file (concurrency 3)")),
        "{:#?}",
        server.lines()
    );
    // A call through KRPC_CONFIG is answered by the server the file named.
    let out = krpc_tests::tuning::krpc_command()
        .env_remove("KAFKA_BOOTSTRAP")
        .env("KRPC_CONFIG", &file)
        .args(["call", "-s", &svc, "add", "[1, 2]", "-o", "json"])
        .output()
        .expect("run krpc call");
    let reply: Value = serde_json::from_str(&ok(&out)).expect("JSON");
    assert_eq!(reply["value"], 3);
    assert_eq!(reply["server_id"], "from-file");
    // Without --timeout a call waits the file's `[client] default_timeout`: 1s here, so a call
    // that sleeps 5s times out (exit 4); the flag's old fixed 30s let it finish.
    let short = dir.path().join("short.toml");
    std::fs::write(
        &short,
        format!("[broker]\nbootstrap = \"{addr}\"\n\n[client]\ndefault_timeout = \"1s\"\n"),
    )
    .unwrap();
    let out = krpc_tests::tuning::krpc_command()
        .env_remove("KAFKA_BOOTSTRAP")
        .env("KRPC_CONFIG", &short)
        .args(["call", "-s", &svc, "sleep", "[5000]"])
        .output()
        .expect("run krpc call");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    server.signal(libc::SIGTERM);
    assert!(server.close_and_wait(Duration::from_secs(60)).success());

    // Flags override the file.
    let mut cmd = krpc_tests::tuning::krpc_command();
    cmd.env_remove("KAFKA_BOOTSTRAP").args([
        "serve",
        "-s",
        &svc,
        "--config-file",
        &file,
        "--concurrency",
        "5",
        "--server-id",
        "from-flag",
    ]);
    let mut server = LineProcess::spawn_merged("krpc serve --concurrency", cmd);
    wait::until("the server starts", Duration::from_secs(30), || {
        let found = server
            .lines()
            .iter()
            .any(|l| l.contains("as from-flag (concurrency 5)"));
        async move { found.then_some(()) }
    })
    .await;
    // Killed: it prints that line before it handles SIGTERM (see `krpc serve`).
    server.kill9();

    // A file naming a dead broker with a short connect timeout: unreachable (3) at once; the
    // environment and then the flag put the live broker over it.
    let dead = dir.path().join("dead.toml");
    std::fs::write(
        &dead,
        "[broker]\nbootstrap = [\"127.0.0.1:1\"]\nconnect_timeout = \"300ms\"\n",
    )
    .unwrap();
    let dead = dead.to_str().unwrap();
    let run = |env: Option<&str>, args: &[&str]| {
        let mut cmd = krpc_tests::tuning::krpc_command();
        cmd.env_remove("KAFKA_BOOTSTRAP").env("KRPC_CONFIG", dead);
        if let Some(bootstrap) = env {
            cmd.env("KAFKA_BOOTSTRAP", bootstrap);
        }
        let started = std::time::Instant::now();
        let out = cmd.args(args).output().expect("run krpc");
        (out, started.elapsed())
    };
    let (out, took) = run(None, &["topics", "list"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(took < Duration::from_secs(5), "the file's 300ms: {took:?}");
    assert!(run(Some(&addr), &["topics", "list"]).0.status.success());
    assert!(run(None, &["-b", &addr, "topics", "list"])
        .0
        .status
        .success());

    // Unknown keys and malformed files are usage errors naming the file, the line and the key.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[server]\nconcurency = 3\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[broker\nbootstrap = 1\n").unwrap();
    for (path, wanted) in [(&typo, "concurency"), (&bad, "line 1")] {
        let out = krpc_tests::tuning::krpc_command()
            .args(["--config", path.to_str().unwrap(), "serve", "-s", &svc])
            .output()
            .expect("run krpc");
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(path.to_str().unwrap()),
            "names the file: {err}"
        );
        assert!(err.contains(wanted), "names {wanted}: {err}");
    }

    // Review S18: both file flags at once, and a service named in the file (it was silently
    // replaced by -s), are usage errors naming what to do; so is (S23) a client instance id.
    let service = dir.path().join("service.toml");
    std::fs::write(&service, "[server]\nservice = \"Other\"\n").unwrap();
    let service = service.to_str().unwrap();
    let instance = dir.path().join("instance.toml");
    std::fs::write(&instance, "[client]\ninstance_id = \"shared\"\n").unwrap();
    let instance = instance.to_str().unwrap();
    for (args, wanted) in [
        (
            vec![
                "--config",
                &file,
                "serve",
                "-s",
                &svc,
                "--config-file",
                dead,
            ],
            vec!["--config", "--config-file", dead],
        ),
        (
            vec!["--config", service, "serve", "-s", &svc],
            vec![service, "[server] service", "-s/--service"],
        ),
        // Review S23: a fixed instance id shared by every process reading the file.
        (
            vec!["--config", instance, "call", "-s", &svc, "add", "[1, 2]"],
            vec![instance, "[client] instance_id", "reply slot"],
        ),
    ] {
        let out = krpc_tests::tuning::krpc_command()
            .args(&args)
            .output()
            .expect("run krpc");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in wanted {
            assert!(err.contains(w), "{args:?}: names {w}: {err}");
        }
    }
}

/// A topic `txn` of one partition on a fake broker, holding records 0..3 committed and 3..5 of
/// a transaction still open: high watermark 5, last stable offset 3. Read uncommitted, a fetch
/// returns nothing past 3 either, as if the open transaction's records were not there yet. The
/// test broker cannot hold a transaction open (it refuses transactional producers; see
/// `wire_records`), hence the fake.
async fn open_transaction_broker() -> krpc_tests::fake_broker::FakeBroker {
    use krpc_tests::fake_broker::{batch, FakeBroker, FetchAnswer};
    let broker = FakeBroker::start().await;
    broker.topic("txn", 1);
    broker.on_list_offsets(|_, _, ts, isolation| match (ts, isolation) {
        (-2, _) => (0, 0),
        (_, 1) => (0, 3),
        _ => (0, 5),
    });
    broker.on_fetch(|asks| {
        asks.iter()
            .map(|a| FetchAnswer {
                high_watermark: 5,
                last_stable_offset: Some(3),
                ..if a.offset < 3 {
                    FetchAnswer::records(batch(a.offset, (3 - a.offset) as usize))
                } else {
                    FetchAnswer::default()
                }
            })
            .collect()
    });
    broker
}

/// Review S13: `krpc consume --isolation read_committed` with a transaction open ends at the
/// last stable offset (ListOffsets asked read committed). It waited for the high watermark,
/// which its fetches never pass, and failed after --timeout with "not read to the end".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_read_committed_ends_at_the_last_stable_offset_of_an_open_transaction() {
    let broker = open_transaction_broker().await;
    let started = std::time::Instant::now();
    let out = krpc(
        broker.addr(),
        &[
            "consume",
            "txn",
            "--isolation",
            "read_committed",
            "-o",
            "json",
            "--timeout",
            "60s",
        ],
    );
    let lines = json_lines(&out);
    assert_eq!(
        lines
            .iter()
            .map(|l| l["offset"].clone())
            .collect::<Vec<_>>(),
        [json!(0), json!(1), json!(2)]
    );
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "ended at the LSO, not after --timeout: {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Read uncommitted, the end is the high watermark, which this broker never reaches: the
    // records up to it, then the timeout naming where the read stopped.
    let out = krpc(
        broker.addr(),
        &["consume", "txn", "-o", "json", "--timeout", "1s"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("txn/0 at offset 3 of 5"), "{err}");
}

/// Review S12: without --follow, `-o table` printed nothing until the read ended (every row
/// held in memory). Now each fetch's rows are printed as they come: here the read cannot end
/// (the high watermark is never reached) for a minute, yet the rows show within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_prints_table_rows_as_they_come_without_follow() {
    let broker = open_transaction_broker().await;
    let mut cmd = krpc_tests::tuning::krpc_command();
    cmd.env("KAFKA_BOOTSTRAP", broker.addr())
        .args(["consume", "txn", "--timeout", "60s"]);
    let mut consume = LineProcess::spawn("krpc consume (table)", cmd);
    wait::until("the table rows", Duration::from_secs(20), || {
        let lines = consume.lines();
        async move { (lines.len() >= 4).then_some(()) }
    })
    .await;
    let lines = consume.lines();
    assert!(lines[0].starts_with("PARTITION  OFFSET"), "{lines:#?}");
    for (line, offset) in lines[1..].iter().zip(0..3) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[..2], ["0", &offset.to_string()[..]], "{lines:#?}");
    }
    consume.kill9();
}

/// `krpc consume --follow` tails on through a broker outage longer than its connect timeout
/// and prints what is written once the broker is back, as kcat does. It used to exit 3 with
/// "cannot reach any bootstrap broker" after the connect timeout (new-user trial): that error
/// was fatal; now the fetcher backs off the partition and tries again, as for any retriable
/// failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_follow_outlives_a_broker_outage() {
    let mut broker = Broker::start(krpc_tests::Storage::Sqlite);
    if !broker.is_owned() {
        eprintln!("skipped: KAFKA_BOOTSTRAP names an external broker this test cannot kill");
        return;
    }
    let addr = broker.addr().to_string();
    let topic = {
        let client = kafka::client(&addr).await;
        kafka::topic(&client, "cli-outage", 1).await
    };
    ok(&krpc(&addr, &["produce", &topic, "before"]));
    let mut follow = LineProcess::spawn("krpc consume --follow", {
        let mut cmd = krpc_tests::tuning::krpc_command();
        cmd.env("KAFKA_BOOTSTRAP", &addr).args([
            "consume",
            &topic,
            "--follow",
            "-c",
            "2",
            "-o",
            "json",
            "--connect-timeout",
            "2s",
        ]);
        cmd
    });
    wait::until(
        "the record before the outage",
        Duration::from_secs(60),
        || {
            let printed = follow.lines().len();
            async move { (printed >= 1).then_some(()) }
        },
    )
    .await;
    broker.kill();
    // Down for several connect timeouts; the follower must not exit meanwhile.
    let down = std::time::Instant::now();
    while down.elapsed() < Duration::from_secs(12) {
        assert!(
            follow.is_running(),
            "krpc consume --follow exited {:?} into the outage",
            down.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker.restart();
    ok(&krpc(&addr, &["produce", &topic, "after"]));
    assert!(
        follow.close_and_wait(Duration::from_secs(60)).success(),
        "the follower ends after its second record"
    );
    let values: Vec<String> = follow
        .lines()
        .iter()
        .map(|l| {
            let r: Value = serde_json::from_str(l).expect("JSON line");
            r["value"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(values, ["before", "after"]);
}
