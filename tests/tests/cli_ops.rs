//! The operations commands of `krpc` (`status`, `groups`, `dlq`, `topics create --config`),
//! run as real processes against the real broker.

use std::process::Output;
use std::time::Duration;

use kafka_rpc::NotifyOptions;
use krpc_tests::{rpc, wait, Broker};
use serde_json::Value;

fn krpc(addr: &str, args: &[&str]) -> Output {
    krpc_tests::tuning::krpc_command()
        .env("KAFKA_BOOTSTRAP", addr)
        .args(args)
        .output()
        .expect("run krpc")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "krpc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn service(prefix: &str) -> String {
    krpc_tests::unique_topic(prefix).replace('.', "-")
}

/// Creates the service's request topic with the servers' default 16 partitions, as a server
/// would (so the jobs can wait in Kafka before any server ever ran).
async fn create_request_topic(addr: &str, svc: &str) {
    let kafka = krpc_tests::kafka::client(addr).await;
    kafka
        .create_topics(
            &[krpc_kafka::NewTopic::new(
                kafka_rpc::naming::request_topic(svc),
                16,
            )],
            true,
        )
        .await
        .expect("create the request topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_backlog_of_queued_jobs_and_zero_once_a_server_drained_them() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("status");
    create_request_topic(&addr, &svc).await;
    let client = rpc::client(&addr).await;
    for i in 0..100u64 {
        client
            .notify(&svc, "add", &(i, 1), NotifyOptions::default())
            .await
            .expect("queue a job");
    }
    let before = json(&krpc(&addr, &["status", "-s", &svc, "-o", "json"]));
    assert_eq!(before["backlog"], 100, "{before:#}");
    assert_eq!(before["members"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        before["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["backlog"].as_i64().unwrap())
            .sum::<i64>(),
        100
    );
    let table = krpc(&addr, &["status", "-s", &svc]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success() && text.contains("backlog 100"),
        "{text}"
    );

    let mut server = rpc::serve_process(&addr, &svc, "status-server", 8);
    let after = wait::until("the backlog drained", Duration::from_secs(90), || {
        let addr = addr.clone();
        let svc = svc.clone();
        async move {
            let s = json(&krpc(&addr, &["status", "-s", &svc, "-o", "json"]));
            (s["backlog"] == 0).then_some(s)
        }
    })
    .await;
    // Requests completed, read from the completion records (a record may carry several).
    assert_eq!(after["completions_last_minute"], 100, "{after:#}");
    let records = after["completion_records_last_minute"].as_i64().unwrap();
    assert!((1..=100).contains(&records), "{after:#}");
    assert_eq!(after["group_state"], "Stable", "{after:#}");
    server.signal(libc::SIGTERM);
    assert!(server.close_and_wait(Duration::from_secs(60)).success());

    let missing = krpc(&addr, &["status", "-s", &service("nothing")]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("has no request topic"),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_lists_a_poison_record_with_its_reason_and_replay_runs_it_again() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("dlq");
    let mut server = rpc::serve_process(&addr, &svc, "dlq-server", 8);
    rpc::wait_for_servers(&[&server], 16, Duration::from_secs(60)).await;
    let client = rpc::client(&addr).await;
    // A record that is not a request at all, and a request whose handler panics.
    let kafka = krpc_tests::kafka::client(&addr).await;
    let producer = krpc_kafka::Producer::new(kafka, krpc_kafka::ProducerConfig::default())
        .expect("valid producer options");
    producer
        .produce(
            &kafka_rpc::naming::request_topic(&svc),
            krpc_kafka::ProducerRecord::value(b"garbage".to_vec()),
        )
        .await
        .expect("produce the poison record");
    let crash_id = client
        .notify(&svc, "crash", &("boom",), NotifyOptions::default())
        .await
        .expect("queue the crashing job");

    let letters = wait::until("two dead letters", Duration::from_secs(60), || {
        let (addr, svc) = (addr.clone(), svc.clone());
        async move {
            let v = json(&krpc(&addr, &["dlq", "list", "-s", &svc, "-o", "json"]));
            (v.as_array().map(Vec::len) == Some(2)).then_some(v)
        }
    })
    .await;
    let letters = letters.as_array().unwrap();
    let poison = letters
        .iter()
        .find(|l| l["method"].is_null())
        .expect("the poison record");
    assert!(
        !poison["reason"].as_str().unwrap_or_default().is_empty(),
        "the reason is there: {poison:#}"
    );
    assert_eq!(
        poison["source_topic"],
        kafka_rpc::naming::request_topic(&svc)
    );
    let crashed = letters
        .iter()
        .find(|l| l["method"] == "crash")
        .expect("the crashed request");
    assert_eq!(crashed["request_id"], crash_id.to_string());
    assert!(
        crashed["reason"].as_str().unwrap().contains("panicked"),
        "{crashed:#}"
    );
    let at = |l: &Value| format!("{}:{}", l["partition"], l["offset"]);

    let shown = json(&krpc(
        &addr,
        &["dlq", "show", "-s", &svc, &at(crashed), "-o", "json"],
    ));
    assert_eq!(
        shown["value_msgpack"],
        serde_json::json!(["boom"]),
        "{shown:#}"
    );

    // The poison record cannot be replayed; the command says so and fails.
    let refused = krpc(&addr, &["dlq", "replay", "-s", &svc, &at(poison)]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a kafka-rpc request"));
    // The crashed request is sent again with a new id, and runs (and panics) again.
    let replayed = krpc(&addr, &["dlq", "replay", "-s", &svc, &at(crashed)]);
    assert!(replayed.status.success(), "{replayed:?}");
    let out = String::from_utf8_lossy(&replayed.stdout).to_string();
    let new_id = out
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .expect("the new request id")
        .to_string();
    assert_ne!(new_id, crash_id.to_string());
    assert!(out.contains("1 replayed, 0 refused"), "{out}");
    wait::until("the replayed request ran", Duration::from_secs(60), || {
        let (addr, svc, new_id) = (addr.clone(), svc.clone(), new_id.clone());
        async move {
            let v = json(&krpc(&addr, &["dlq", "list", "-s", &svc, "-o", "json"]));
            v.as_array()
                .unwrap()
                .iter()
                .any(|l| l["request_id"] == new_id.as_str())
                .then_some(())
        }
    })
    .await;
    server.signal(libc::SIGTERM);
    assert!(server.close_and_wait(Duration::from_secs(60)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_their_configs_and_groups_are_listed() {
    let addr = Broker::shared().addr().to_string();
    let topic = krpc_tests::unique_topic("configs");
    let out = krpc(
        &addr,
        &[
            "topics",
            "create",
            &topic,
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // Read back through DescribeConfigs by krpc-kafka, and by librdkafka's admin client.
    let kafka = krpc_tests::kafka::client(&addr).await;
    let configs = kafka
        .describe_topic_configs(&topic)
        .await
        .expect("describe");
    let retention = &configs["retention.ms"];
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert!(!retention.is_default);
    let described = krpc(&addr, &["topics", "describe", &topic]);
    assert!(String::from_utf8_lossy(&described.stdout).contains("config retention.ms=3600000"));
    let bad = krpc(
        &addr,
        &["topics", "create", &topic, "--config", "retention.ms"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KEY=VALUE"));

    let svc = service("groups");
    let mut server = rpc::serve_process(&addr, &svc, "groups-server", 8);
    rpc::wait_for_servers(&[&server], 16, Duration::from_secs(60)).await;
    let group = kafka_rpc::naming::server_group(&svc);
    let groups = json(&krpc(&addr, &["groups", "list", "-o", "json"]));
    let listed = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == group.as_str())
        .unwrap_or_else(|| panic!("{group} listed: {groups:#}"));
    assert_eq!(listed["protocol_type"], "consumer");
    let described = json(&krpc(&addr, &["groups", "describe", &group, "-o", "json"]));
    assert_eq!(described["state"], "Stable", "{described:#}");
    assert_eq!(described["members"].as_array().map(Vec::len), Some(1));
    server.signal(libc::SIGTERM);
    assert!(server.close_and_wait(Duration::from_secs(60)).success());
}
