//! The topics kafka-rpc creates, against the real broker: their retention configs (read back
//! with DescribeConfigs) and the trimming of the completion topic to the dedup window.

use std::time::Duration;

use kafka_rpc::naming::{completions_topic, dead_letter_topic, request_topic};
use kafka_rpc::{CallOptions, HandlerError, RpcError, Server};
use krpc_kafka::OffsetSpec;
use krpc_tests::{kafka, rpc, tuning, wait, Broker};

fn retention_of(
    configs: &std::collections::BTreeMap<String, krpc_kafka::TopicConfigEntry>,
) -> Option<String> {
    configs
        .get("retention.ms")
        .filter(|c| !c.is_default)
        .and_then(|c| c.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_carry_their_retention_and_the_completion_topic_is_trimmed_to_the_dedup_window() {
    let addr = Broker::shared().addr().to_string();
    let svc = krpc_tests::unique_topic("retention").replace('.', "-");
    let kafka = kafka::client(&addr).await;
    let mut options = tuning::server_options(&svc);
    options.dedup_window = 20;
    options.completion_trim_interval = Some(Duration::from_millis(200));
    let server = Server::new(kafka.clone(), options)
        .expect("valid server options")
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, HandlerError>(a + b)
        });
    let (stop, task) = rpc::run_in_background(server);
    let client = rpc::client(&addr).await;

    // One routing key: every call lands on one request partition, and its completions on the
    // same partition of the completion topic.
    for i in 0..100i64 {
        let opts = CallOptions::default()
            .with_timeout(Duration::from_secs(30))
            .with_routing_key(&b"one-key"[..]);
        let r = client
            .call::<_, i64>(&svc, "add", &(i, 1), opts)
            .await
            .expect("call");
        assert_eq!(r.value, i + 1);
    }
    let partitions = kafka.partition_count(&request_topic(&svc)).await.unwrap();
    let p = krpc_kafka::producer::partitioner::partition_for_key(b"one-key", partitions);

    let completions = completions_topic(&svc);
    let (start, end) = wait::until(
        "the completion topic trimmed to the last 20",
        Duration::from_secs(30),
        || {
            let (kafka, completions) = (kafka.clone(), completions.clone());
            async move {
                let end = kafka
                    .list_offset(&completions, p, OffsetSpec::Latest)
                    .await
                    .ok()?;
                let start = kafka
                    .list_offset(&completions, p, OffsetSpec::Earliest)
                    .await
                    .ok()?;
                (end == 100 && start == 80).then_some((start, end))
            }
        },
    )
    .await;
    assert_eq!((start, end), (80, 100));

    // Each kind of topic carries the retention TopicOptions gives it.
    let defaults = kafka_rpc::TopicOptions::default();
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis().to_string());
    for (topic, want) in [
        (request_topic(&svc), ms(defaults.request_retention)),
        (completions.clone(), ms(defaults.completion_retention)),
        (dead_letter_topic(&svc), ms(defaults.dead_letter_retention)),
    ] {
        let configs = kafka
            .describe_topic_configs(&topic)
            .await
            .expect("describe configs");
        assert_eq!(retention_of(&configs), want, "{topic}");
    }
    let replies = kafka
        .describe_topic_configs(&tuning::client_options().reply_topic)
        .await
        .expect("describe the reply topic");
    assert_eq!(retention_of(&replies), ms(defaults.reply_retention));

    let _ = stop.send(());
    let stats = task.await.expect("server task");
    assert!(stats.completions_trimmed >= 80, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_retention_shorter_than_the_dedup_age_is_refused_at_start() {
    let addr = Broker::shared().addr().to_string();
    let kafka = kafka::client(&addr).await;
    let mut options = tuning::server_options("retention-refused");
    options.topics.completion_retention = Some(options.dedup_max_age / 2);
    // Refused when the server is built (it used to be at `run`).
    let err = Server::new(kafka.clone(), options)
        .err()
        .expect("refused by Server::new");
    assert!(matches!(err, RpcError::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("dedup_max_age"), "{err}");
}
