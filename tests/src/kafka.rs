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

/// The header of one batch (or old-format message) as the broker stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawBatch {
    /// First offset (an old-format message's own offset).
    pub base_offset: i64,
    /// Message format: 0, 1 (old message sets) or 2 (record batches).
    pub magic: i8,
    /// The attributes (v2: 16 bits; v0/v1: 8 bits), codec in bits 0-2.
    pub attributes: i16,
    /// v2: the producer id (-1 when not idempotent); v0/v1: -1.
    pub producer_id: i64,
    /// v2: the base sequence; v0/v1: -1.
    pub base_sequence: i32,
}

impl RawBatch {
    /// The codec bits: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn codec(&self) -> i16 {
        self.attributes & 7
    }
}

/// The batches of `topic`/`partition` from offset 0, read with one raw Fetch (read_uncommitted)
/// so tests can see what a peer really wrote (format, codec, producer id).
pub async fn raw_batches(client: &Client, topic: &str, partition: i32) -> Vec<RawBatch> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let conn = client
        .leader(topic, partition, kafka_wire::Lane::Default)
        .await
        .expect("leader");
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(10)
        .with_min_bytes(1)
        .with_max_bytes(16 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(16 << 20)])]);
    let resp = conn.send(&req).await.expect("raw fetch");
    let data = resp.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 17 <= data.len() {
        let i64_at = |i: usize| i64::from_be_bytes(data[i..i + 8].try_into().unwrap());
        let i32_at = |i: usize| i32::from_be_bytes(data[i..i + 4].try_into().unwrap());
        let size = i32_at(at + 8) as usize;
        if at + 12 + size > data.len() {
            break;
        }
        let magic = data[at + 16] as i8;
        out.push(if magic == 2 {
            RawBatch {
                base_offset: i64_at(at),
                magic,
                attributes: i16::from_be_bytes([data[at + 21], data[at + 22]]),
                producer_id: i64_at(at + 43),
                base_sequence: i32_at(at + 53),
            }
        } else {
            RawBatch {
                base_offset: i64_at(at),
                magic,
                attributes: data[at + 17] as i16,
                producer_id: -1,
                base_sequence: -1,
            }
        });
        at += 12 + size;
    }
    out
}
