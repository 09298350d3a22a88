//! Failures against a real broker: unreachable bootstrap, a broker killed mid-request and
//! restarted, a record over the size limit.

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_wire::{
    Client, ClientConfig, Error, Lane, OffsetSpec, Producer, ProducerConfig, ProducerRecord,
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
    let err = Client::connect(ClientConfig::new(&addr).connect_timeout(Duration::from_millis(800)))
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
    let producer = Producer::new(client.clone(), ProducerConfig::default());
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
    let cfg = ProducerConfig {
        max_record_bytes: 1000,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client.clone(), cfg);
    let err = producer
        .send_to(&topic, 0, ProducerRecord::value(vec![7u8; 2000]))
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
