//! Issue 11 at the RPC level, against the real broker: a batch of the request topic that no
//! client can decode goes raw to the dead-letter topic with its topic, partition and offset
//! range, while calls keep being served.

use std::time::Duration;

use kafka_rpc::server::dead_letter;
use kafka_rpc::{CallOptions, HandlerError, Server};
use krpc_tests::{kafka, rpc, wait, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_request_batch_goes_raw_to_the_dead_letter_topic() {
    let addr = Broker::shared().addr().to_string();
    let svc = krpc_tests::unique_topic("undecodable").replace('.', "-");
    let client_kafka = kafka::client(&addr).await;
    let server = Server::new(
        client_kafka.clone(),
        krpc_tests::tuning::server_options(&svc),
    )
    .expect("valid server options")
    .method("add", |(a, b): (i64, i64)| async move {
        Ok::<_, HandlerError>(a + b)
    });
    let counters = server.counters();
    let (stop, task) = rpc::run_in_background(server);
    let client = rpc::client(&addr).await;
    let call = |n: i64| {
        let client = &client;
        let svc = &svc;
        async move {
            client
                .call::<_, i64>(
                    svc,
                    "add",
                    &(n, 1),
                    CallOptions::default().with_timeout(Duration::from_secs(30)),
                )
                .await
                .expect("a valid call")
                .value
        }
    };
    assert_eq!(call(1).await, 2);

    // A batch no client can decode, in partition 0: the first of these the broker stores
    // (the test broker checks batches on produce, so it refuses some of them).
    let topic = kafka_rpc::naming::request_topic(&svc);
    let gzip = |raw: &[u8]| {
        let mut out = bytes::BytesMut::new();
        kafka_rpc::krpc_kafka::compression::compress(
            kafka_protocol::records::Compression::Gzip,
            raw,
            &mut out,
        )
        .unwrap();
        out
    };
    let bomb = kafka_rpc::krpc_kafka::records::encode_batch(
        &[kafka_rpc::krpc_kafka::ProducerRecord::value(vec![
            0u8;
            65 << 20
        ])],
        kafka_rpc::krpc_kafka::Codec::Gzip,
        1_700_000_000_000,
    )
    .unwrap();
    let candidates = [
        (
            "codec bits 5 (no such codec)",
            kafka::batch_with_codec(5, b"records nobody can read"),
        ),
        (
            "gzip of bytes that are no records",
            kafka::batch_with_codec(1, &gzip(&[0xff; 64])),
        ),
        (
            "gzip inflating past the 64 MiB limit",
            kafka::batch_with_codec(1, &gzip(&vec![0; 65 << 20])),
        ),
        (
            "a valid gzip batch of one 65 MiB record (past the 64 MiB limit)",
            bomb,
        ),
    ];
    let mut refused = Vec::new();
    let mut bad = None;
    for (what, batch) in candidates {
        match kafka::produce_raw(&client_kafka, &topic, 0, batch.clone()).await {
            Ok(0) => {
                bad = Some((what, batch));
                break;
            }
            other => refused.push(format!("{what}: {other:?}")),
        }
    }
    eprintln!("refused by the broker: {refused:?}");
    let (what, bad) = bad.expect("the broker stores one of the undecodable batches");
    eprintln!("stored: {what}");
    let stored = kafka::raw_batches(&client_kafka, &topic, 0).await;
    let at = stored.iter().last().expect("stored as written").base_offset;

    wait::until(
        "the batch dead-lettered",
        Duration::from_secs(30),
        || async { (counters.snapshot().dead_lettered >= 1).then_some(()) },
    )
    .await;
    let dlq = kafka_rpc::naming::dead_letter_topic(&svc);
    let letters = kafka::read(&client_kafka, &dlq, 0, 0, 1, Duration::from_secs(30)).await;
    let letter = &letters[0];
    let header = |k: &str| letter.header(k).cloned().unwrap_or_default();
    assert_eq!(&header(dead_letter::SOURCE_TOPIC)[..], topic.as_bytes());
    assert_eq!(
        &header(dead_letter::SOURCE_PARTITION)[..],
        &0i32.to_be_bytes()
    );
    assert_eq!(&header(dead_letter::SOURCE_OFFSET)[..], &at.to_be_bytes());
    assert_eq!(
        &header(dead_letter::SOURCE_OFFSET_END)[..],
        &(at + 1).to_be_bytes()
    );
    let reason = String::from_utf8_lossy(&header(dead_letter::REASON)).into_owned();
    assert!(reason.contains("undecodable"), "{reason}");
    let value = letter.value.clone().expect("the raw batch");
    assert_eq!(
        &value[17..],
        &bad[17..],
        "the batch's bytes from its CRC on, as written (the broker sets offset and epoch)"
    );

    // Calls keep being served, in every partition (round robin).
    for n in 0..20 {
        assert_eq!(call(n).await, n + 1);
    }
    stop.send(()).unwrap();
    let stats = task.await.unwrap();
    assert_eq!(stats.dead_letter_failures, 0, "{stats}");
}
