//! Metrics (issue 14): `krpc serve --metrics-addr` serves the server's counters, histograms and
//! gauges for Prometheus, a client in this process records its own through the `metrics`
//! facade, and the fetcher reports the lag those gauges are made of. Against the real broker.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kafka_rpc::{CallOptions, RpcError, StatusCode};
use krpc_kafka::{FetchConfig, Fetcher, Producer, ProducerConfig, ProducerRecord};
use krpc_tests::process::LineProcess;
use krpc_tests::{kafka, rpc, wait, Broker};

/// One sample of the Prometheus text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format (comments skipped).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("labels end with }");
                let labels = rest
                    .split("\",")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once("=\"").expect("k=\"v\"");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The value of the series `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v)
}

/// GET http://`addr`/metrics, bounded by short timeouts; `Err` while nothing listens yet.
fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {response:?}")))?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Ok(body.to_string())
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_of_krpc_serve_answers_with_counters_and_histograms() {
    // The client side of this process records into a Prometheus recorder too (no listener:
    // rendered in place).
    let client_metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(kafka_rpc::metrics::DURATION_BUCKETS)
        .unwrap()
        .install_recorder()
        .expect("the only recorder of this test binary");

    let addr = Broker::shared().addr().to_string();
    let svc = krpc_tests::unique_topic("metrics").replace('.', "-");
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = krpc_tests::tuning::krpc_command();
    cmd.args(["serve", "-b", &addr, "-s", &svc, "--server-id", "metrics-1"])
        .env("KRPC_METRICS_ADDR", metrics_addr.to_string())
        .env("KRPC_LOG", "warn,kafka_rpc=info");
    let mut server = LineProcess::spawn_merged("krpc serve", cmd);
    rpc::wait_for_servers(&[&server], 16, Duration::from_secs(60)).await;

    let client = rpc::client(&addr).await;
    let opts = || CallOptions::default();
    for i in 0..3 {
        let r = client
            .call::<_, i64>(&svc, "add", &(i, 1), opts())
            .await
            .expect("add");
        assert_eq!(r.value, i + 1);
    }
    let failed = client
        .call::<_, ()>(&svc, "fail", &("boom",), opts())
        .await
        .unwrap_err();
    assert_eq!(failed.code(), StatusCode::Unknown, "{failed}");
    let unknown = client
        .call::<_, ()>(&svc, "nope", &(), opts())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), StatusCode::Unimplemented, "{unknown}");
    // Failures of the client's own: a result that does not decode (after the server's OK), and
    // a one-way call refused before it is sent (a malformed service name).
    let undecodable = client
        .call::<_, String>(&svc, "add", &(1, 2), opts())
        .await
        .unwrap_err();
    assert_eq!(
        undecodable.code(),
        StatusCode::InvalidArgument,
        "{undecodable}"
    );
    let refused = client
        .notify(
            "bad service!",
            "m",
            &(),
            kafka_rpc::NotifyOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), StatusCode::InvalidArgument, "{refused}");
    // Times out at the client; the server cancels it at the deadline and answers
    // DEADLINE_EXCEEDED, which reaches the client as a stray reply.
    let late = client
        .call::<_, u64>(
            &svc,
            "sleep",
            &(20_000u64,),
            CallOptions::default().with_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap_err();
    assert!(matches!(late, RpcError::Timeout { .. }), "{late}");

    // The server's endpoint, once it has counted all seven requests.
    let service = ("service", svc.as_str());
    let (text, samples) = wait::until(
        "the server's metrics to count every request",
        Duration::from_secs(30),
        || async {
            let text = tokio::task::spawn_blocking(move || scrape(metrics_addr))
                .await
                .unwrap()
                .ok()?;
            let samples = parse(&text);
            let total =
                |name: &str| value(&samples, &format!("krpc_server_{name}_total"), &[service]);
            (total("ok") == Some(4.0)
                && total("handler_errors") == Some(1.0)
                && total("unknown_method") == Some(1.0)
                && total("deadline_exceeded") == Some(1.0)
                && value(&samples, "krpc_server_requests_in_flight", &[service]) == Some(0.0))
            .then_some((text, samples))
        },
    )
    .await;
    let total = |name: &str| value(&samples, &format!("krpc_server_{name}_total"), &[service]);
    assert_eq!(total("received"), Some(7.0), "{text}");
    assert_eq!(total("panics"), Some(0.0), "{text}");
    assert!(
        text.contains("# HELP krpc_server_received_total Records taken from the request topic."),
        "{text}"
    );
    let add_ok = [service, ("method", "add"), ("status", "OK")];
    assert_eq!(
        value(
            &samples,
            "krpc_server_handler_duration_seconds_count",
            &add_ok
        ),
        Some(4.0),
        "{text}"
    );
    let mut add_ok_inf = add_ok.to_vec();
    add_ok_inf.push(("le", "+Inf"));
    assert_eq!(
        value(
            &samples,
            "krpc_server_handler_duration_seconds_bucket",
            &add_ok_inf
        ),
        Some(4.0),
        "histogram buckets, not a summary: {text}"
    );
    for (method, status) in [
        ("fail", "UNKNOWN"),
        ("_unknown", "UNIMPLEMENTED"),
        ("sleep", "DEADLINE_EXCEEDED"),
    ] {
        assert_eq!(
            value(
                &samples,
                "krpc_server_handler_duration_seconds_count",
                &[service, ("method", method), ("status", status)]
            ),
            Some(1.0),
            "{method} {status}: {text}"
        );
    }
    // The cancelled sleep ran for about its 2 s deadline.
    let slept = value(
        &samples,
        "krpc_server_handler_duration_seconds_sum",
        &[
            service,
            ("method", "sleep"),
            ("status", "DEADLINE_EXCEEDED"),
        ],
    )
    .unwrap();
    assert!((1.5..20.0).contains(&slept), "{slept}");
    assert_eq!(
        value(
            &samples,
            "krpc_server_queue_wait_seconds_count",
            &[service, ("method", "add")]
        ),
        Some(4.0),
        "{text}"
    );
    assert!(
        value(
            &samples,
            "krpc_server_queue_wait_seconds_bucket",
            &[service, ("method", "add"), ("le", "+Inf")]
        ) == Some(4.0),
        "{text}"
    );
    // A lag gauge per request partition, each caught up once the requests are fetched.
    let lags: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| n == "krpc_server_consumer_lag" && l.get("service") == Some(&svc))
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(lags.len(), 16, "{text}");
    assert!(lags.iter().all(|l| *l == 0.0), "{lags:?}");

    // The client's own metrics (this process).
    let (client_text, client_samples) = wait::until(
        "the stray reply of the timed-out call",
        Duration::from_secs(30),
        || async {
            let text = client_metrics.render();
            let samples = parse(&text);
            (value(&samples, "krpc_client_stray_replies_total", &[]) == Some(1.0))
                .then_some((text, samples))
        },
    )
    .await;
    let c = |name: &str, labels: &[(&str, &str)]| value(&client_samples, name, labels);
    assert_eq!(
        c("krpc_client_calls_total", &[service, ("method", "add")]),
        Some(4.0),
        "{client_text}"
    );
    assert_eq!(
        c("krpc_client_calls_total", &[service, ("method", "sleep")]),
        Some(1.0)
    );
    for (method, status) in [
        ("fail", "UNKNOWN"),
        ("nope", "UNIMPLEMENTED"),
        ("sleep", "DEADLINE_EXCEEDED"),
        ("add", "INVALID_ARGUMENT"),
    ] {
        assert_eq!(
            c(
                "krpc_client_errors_total",
                &[service, ("method", method), ("status", status)]
            ),
            Some(1.0),
            "{method} {status}: {client_text}"
        );
    }
    assert_eq!(
        c(
            "krpc_client_timeouts_total",
            &[service, ("method", "sleep")]
        ),
        Some(1.0)
    );
    assert_eq!(
        c(
            "krpc_client_call_duration_seconds_count",
            &[service, ("method", "add"), ("status", "OK")]
        ),
        Some(3.0),
        "{client_text}"
    );
    assert_eq!(c("krpc_client_calls_in_flight", &[service]), Some(0.0));
    assert_eq!(
        c(
            "krpc_client_errors_total",
            &[
                ("service", "bad service!"),
                ("method", "m"),
                ("status", "INVALID_ARGUMENT")
            ]
        ),
        Some(1.0),
        "a one-way call refused before the send: {client_text}"
    );

    server.signal(libc::SIGTERM);
    assert!(server.close_and_wait(Duration::from_secs(30)).success());
}

/// A metrics address that cannot be bound stops `krpc serve` at once, naming it (not a server
/// silently without its metrics).
#[test]
fn krpc_serve_refuses_a_metrics_address_it_cannot_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap().to_string();
    let out = krpc_tests::tuning::krpc_command()
        .args([
            "serve",
            "-b",
            "127.0.0.1:1",
            "-s",
            "Nobody",
            "--metrics-addr",
            &at,
        ])
        .output()
        .expect("run krpc serve");
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics on {at}")),
        "{stderr}"
    );
}

/// The lag behind the consumer-lag gauge: after a fetch, high watermark minus position, as
/// the broker reported it with that fetch (KIP-695's `currentLag`); unknown before any fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetcher_reports_the_lag_of_its_last_fetch() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "lag", 1).await;
    let producer =
        Producer::new(client.clone(), ProducerConfig::default()).expect("valid producer options");
    // Ten batches of one record each.
    for i in 0..10 {
        producer
            .send_to(&topic, 0, ProducerRecord::value(format!("r{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A limit below one batch: Apache Kafka then answers the first batch alone (KIP-74), a
    // lag of 9; nisshi answers all ten (lag 0): the next test shows a lag left by a fetch.
    let mut fetcher = Fetcher::new(
        client.clone(),
        kafka::quick_fetch().with_partition_max_bytes(1),
    )
    .expect("valid fetcher options");
    fetcher.assign(&topic, 0, 0);
    assert_eq!(fetcher.current_lag(&topic, 0), None, "no fetch yet");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(Instant::now() < deadline, "no record within 30 s");
        got = fetcher.poll().await.unwrap();
    }
    let position = fetcher.position(&topic, 0).unwrap();
    assert_eq!(position, got.last().unwrap().offset + 1);
    assert_eq!(
        fetcher.current_lag(&topic, 0),
        Some(10 - position),
        "high watermark 10 minus the position {position}"
    );
    eprintln!("first fetch: {} records, lag {}", got.len(), 10 - position);
    let mut read = got.len();
    while read < 10 {
        assert!(
            Instant::now() < deadline,
            "read {read} of 10 records within 30 s"
        );
        read += fetcher.poll().await.unwrap().len();
    }
    assert_eq!(fetcher.current_lag(&topic, 0), Some(0));
    assert_eq!(fetcher.current_lag(&topic, 1), None, "not assigned");
}

/// What nisshi cannot show (it answers a fetch with everything up to the high watermark,
/// whatever the byte limit: the test above always sees lag 0): a fetch that stops below the
/// high watermark leaves the lag the broker reported, and a fetch that answers no high
/// watermark (-1) or fails keeps the last known one. In-process fake broker.
#[tokio::test]
async fn a_fetch_below_the_high_watermark_leaves_a_lag() {
    use krpc_tests::fake_broker::{batch, FakeBroker, FetchAnswer};
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let round = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let round = round.clone();
        broker.on_fetch(move |asks| {
            let n = round.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            asks.iter()
                .map(|a| match n {
                    // Records 0..3 of a partition whose high watermark is 10.
                    0 => FetchAnswer {
                        high_watermark: 10,
                        ..FetchAnswer::records(batch(a.offset, 3))
                    },
                    // Nothing, and no high watermark known.
                    1 => FetchAnswer {
                        high_watermark: -1,
                        ..FetchAnswer::default()
                    },
                    // A retriable error (NOT_LEADER_OR_FOLLOWER).
                    2 => FetchAnswer::error(6),
                    _ => FetchAnswer {
                        high_watermark: 12,
                        ..FetchAnswer::default()
                    },
                })
                .collect()
        });
    }
    let client = krpc_kafka::KafkaClient::connect(krpc_kafka::ClientConfig::new(broker.addr()))
        .await
        .expect("connect to the fake broker");
    let mut fetcher = Fetcher::new(
        client,
        FetchConfig::default().with_max_wait(Duration::from_millis(10)),
    )
    .expect("valid fetcher options");
    fetcher.assign("t", 0, 0);
    assert_eq!(fetcher.poll().await.unwrap().len(), 3);
    assert_eq!(fetcher.current_lag("t", 0), Some(7), "10 - 3");
    fetcher.poll().await.unwrap();
    assert_eq!(
        fetcher.current_lag("t", 0),
        Some(7),
        "-1 is not a high watermark"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while round.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "the fetcher did not fetch again");
        fetcher.poll().await.unwrap();
        if round.load(std::sync::atomic::Ordering::SeqCst) == 3 {
            assert_eq!(
                fetcher.current_lag("t", 0),
                Some(7),
                "a failed fetch keeps it"
            );
        }
    }
    assert_eq!(fetcher.current_lag("t", 0), Some(9), "12 - 3");
    fetcher.assign("t", 0, 0);
    assert_eq!(
        fetcher.current_lag("t", 0),
        None,
        "re-assigned: unknown again"
    );
}
