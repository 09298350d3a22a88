//! Shortcuts over kafka-wire for tests: a client, a fresh topic, reading N records back.

use std::time::{Duration, Instant};

use kafka_wire::{Client, ClientConfig, ConsumerRecord, FetchConfig, Fetcher, NewTopic};

/// A client for `addr` with test-sized timeouts.
pub async fn client(addr: &str) -> Client {
    let config = ClientConfig::new(addr)
        .client_id("krpc-tests")
        .connect_timeout(Duration::from_secs(10))
        .request_timeout(Duration::from_secs(10));
    Client::connect(config)
        .await
        .expect("connect to the test broker")
}

/// Creates a topic with a unique name and `partitions` partitions; returns its name.
pub async fn topic(client: &Client, prefix: &str, partitions: i32) -> String {
    let name = crate::unique_topic(prefix);
    client
        .create_topics(&[NewTopic::new(&name, partitions)], false)
        .await
        .expect("create topic");
    name
}

/// Fetch settings with a short long-poll, since the test broker answers after about max_wait/2.
pub fn quick_fetch() -> FetchConfig {
    FetchConfig {
        max_wait: Duration::from_millis(20),
        ..FetchConfig::default()
    }
}

/// Reads `count` records of `topic`/`partition` from `offset`, failing after `timeout`.
pub async fn read(
    client: &Client,
    topic: &str,
    partition: i32,
    offset: i64,
    count: usize,
    timeout: Duration,
) -> Vec<ConsumerRecord> {
    let mut fetcher = Fetcher::new(client.clone(), quick_fetch());
    fetcher.assign(topic, partition, offset);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "read only {} of {count} records of {topic}/{partition} within {timeout:?}",
            out.len()
        );
        out.extend(fetcher.poll().await.expect("fetch"));
    }
    out
}
