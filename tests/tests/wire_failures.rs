//! Failures against a real broker: unreachable bootstrap, a broker killed mid-request and
//! restarted, a record over the size limit, a committed offset below a log start that
//! DeleteRecords moved.

use std::time::{Duration, Instant};

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{DeleteRecordsRequest, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use krpc_kafka::{
    ClientConfig, Error, GroupConsumer, GroupEvent, KafkaClient, Lane, OffsetSpec, Producer,
    ProducerConfig, ProducerRecord,
};
use krpc_tests::{kafka, wait, Broker, Storage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bootstrap_fails_within_the_timeout_naming_the_address() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let err = KafkaClient::connect(
        ClientConfig::new(&addr).with_connect_timeout(Duration::from_millis(800)),
    )
    .await
    .expect_err("nothing listens there");
    let spent = started.elapsed();
    assert!(matches!(err, Error::BootstrapUnreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&addr),
        "the error names the address: {err}"
    );
    assert!(
        spent >= Duration::from_millis(700),
        "gave up before the timeout: {spent:?}"
    );
    assert!(
        spent < Duration::from_secs(3),
        "took far longer than the timeout: {spent:?}"
    );
}

fn long_poll(topic: &str, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(10_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_request_fails_pending_calls_and_the_client_recovers() {
    let mut broker = Broker::start(Storage::Sqlite);
    if !broker.is_owned() {
        eprintln!("skipped: KAFKA_BOOTSTRAP names an external broker this test cannot kill");
        return;
    }
    let client = kafka::client(broker.addr()).await;
    let topic = kafka::topic(&client, "killed", 1).await;
    let conn = client
        .leader(&topic, 0, Lane::Fetch(Lane::unique_id()))
        .await
        .unwrap();

    // Three long polls in flight on one connection, then kill -9.
    let pending: Vec<_> = (0..3)
        .map(|_| {
            let conn = conn.clone();
            let req = long_poll(&topic, 0);
            tokio::spawn(async move { conn.send_timeout(&req, Duration::from_secs(30)).await })
        })
        .collect();
    wait::until(
        "three requests in flight",
        Duration::from_secs(5),
        || async { (conn.in_flight() == 3).then_some(()) },
    )
    .await;
    let killed_at = Instant::now();
    broker.kill();
    for p in pending {
        let err = p.await.unwrap().expect_err("the broker died");
        assert!(
            matches!(err, Error::ConnectionBroken { .. }),
            "typed error, got {err:?}"
        );
        assert!(
            err.to_string().contains(broker.addr()),
            "names the broker: {err}"
        );
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "pending calls failed promptly"
    );
    assert!(conn.is_broken());
    let after = conn
        .send_timeout(&long_poll(&topic, 0), Duration::from_secs(1))
        .await;
    assert!(
        matches!(after, Err(Error::ConnectionBroken { .. })),
        "a broken connection stays broken"
    );

    broker.restart();
    let producer =
        Producer::new(client.clone(), ProducerConfig::default()).expect("valid producer options");
    let md = producer
        .produce(&topic, ProducerRecord::value("after restart"))
        .await
        .expect("recovers");
    assert_eq!(md.offset, 0);
    let got = kafka::read(&client, &topic, 0, 0, 1, Duration::from_secs(20)).await;
    assert_eq!(got[0].value.as_deref(), Some(&b"after restart"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_limit_is_refused_before_it_is_sent() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "too-large", 1).await;
    let cfg = ProducerConfig::default().with_max_record_bytes(1000);
    let producer = Producer::new(client.clone(), cfg).expect("valid producer options");
    let err = producer
        .send_to(&topic, 0, ProducerRecord::value(vec![7u8; 2000]))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, Error::RecordTooLarge { max: 1000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&topic));
    producer
        .produce(&topic, ProducerRecord::value(vec![7u8; 500]))
        .await
        .unwrap();
    let end = wait::until("the small record", Duration::from_secs(10), || async {
        let end = client
            .list_offset(&topic, 0, OffsetSpec::Latest)
            .await
            .unwrap();
        (end > 0).then_some(end)
    })
    .await;
    assert_eq!(end, 1, "only the small record was written");
}

/// Fault 3 on the real broker: a kafka-rpc server's group (built by
/// `ServerOptions::group_config`, as `krpc serve` builds it) committed offset 100 of a
/// 200-record partition; DeleteRecords then moves the log start to 150. The next member
/// resumes at 150 (its reset policy, earliest, also governs out-of-range positions; the old
/// code's fetcher used its own default, latest, and jumped to 200, skipping fifty queued
/// requests), reads the fifty retained records, and counts the fifty deleted offsets it
/// jumped over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_group_resumes_at_the_log_start_after_delete_records() {
    let client = kafka::client(Broker::shared().addr()).await;
    let service = krpc_tests::unique_topic("resets");
    let cfg = krpc_tests::tuning::server_options(&service)
        .group_config()
        .unwrap();
    let topic = cfg.topics[0].clone();
    client
        .create_topics(&[krpc_kafka::NewTopic::new(&topic, 1)], false)
        .await
        .unwrap();
    let producer =
        Producer::new(client.clone(), ProducerConfig::default()).expect("valid producer options");
    let mut deliveries = Vec::new();
    for i in 0..200 {
        let record = ProducerRecord::value(format!("r{i}"));
        deliveries.push(producer.send_to(&topic, 0, record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }

    // A first member commits 100 and leaves.
    let mut first = GroupConsumer::new(client.clone(), cfg.clone()).unwrap();
    assigned(&mut first).await;
    let mut commit = krpc_kafka::group::Offsets::new();
    commit.entry(topic.clone()).or_default().insert(0, 100);
    first.commit(&commit).await.unwrap();
    first.close().await.unwrap();

    // Retention moves the log start to 150.
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(150)])]);
    let conn = client.leader(&topic, 0, Lane::Default).await.unwrap();
    let resp = conn.send(&req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 150), "DeleteRecords");
    assert_eq!(
        client
            .list_offset(&topic, 0, OffsetSpec::Earliest)
            .await
            .unwrap(),
        150
    );

    let mut second = GroupConsumer::new(client.clone(), cfg).unwrap();
    assigned(&mut second).await;
    let mut offsets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while offsets.len() < 50 {
        assert!(
            Instant::now() < deadline,
            "read {} of the 50 retained records: {offsets:?}",
            offsets.len()
        );
        if let Ok(event) = tokio::time::timeout(Duration::from_secs(5), second.poll()).await {
            if let GroupEvent::Records(records) = event.unwrap() {
                offsets.extend(records.iter().map(|r| r.offset));
            }
        }
    }
    assert_eq!(offsets, (150..200).collect::<Vec<i64>>());
    assert_eq!(second.offset_resets(), 1);
    assert_eq!(second.reset_skipped_offsets(), 50, "the jump is counted");
    second.close().await.unwrap();
}

/// Polls `consumer` until its first assignment (bounded).
async fn assigned(consumer: &mut GroupConsumer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no assignment within 30 s");
        if let Ok(event) = tokio::time::timeout(Duration::from_secs(5), consumer.poll()).await {
            if let GroupEvent::Assigned(_) = event.unwrap() {
                return;
            }
        }
    }
}
