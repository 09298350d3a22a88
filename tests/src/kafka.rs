//! Shortcuts over krpc-kafka for tests: a client, a fresh topic, reading N records back.

use std::time::{Duration, Instant};

use krpc_kafka::{ClientConfig, ConsumerRecord, FetchConfig, Fetcher, KafkaClient, NewTopic};

/// A client for `addr` with test-sized timeouts.
pub async fn client(addr: &str) -> KafkaClient {
    let config = ClientConfig::new(addr)
        .with_client_id("krpc-tests")
        .with_connect_timeout(Duration::from_secs(10))
        .with_request_timeout(Duration::from_secs(10));
    KafkaClient::connect(config)
        .await
        .expect("connect to the test broker")
}

/// Creates a topic with a unique name and `partitions` partitions; returns its name.
pub async fn topic(client: &KafkaClient, prefix: &str, partitions: i32) -> String {
    let name = crate::unique_topic(prefix);
    client
        .create_topics(&[NewTopic::new(&name, partitions)], false)
        .await
        .expect("create topic");
    name
}

/// Fetch settings with a short long-poll, since the test broker answers after about max_wait/2.
pub fn quick_fetch() -> FetchConfig {
    FetchConfig::default().with_max_wait(Duration::from_millis(20))
}

/// Reads `count` records of `topic`/`partition` from `offset`, failing after `timeout`.
pub async fn read(
    client: &KafkaClient,
    topic: &str,
    partition: i32,
    offset: i64,
    count: usize,
    timeout: Duration,
) -> Vec<ConsumerRecord> {
    let mut fetcher = Fetcher::new(client.clone(), quick_fetch()).expect("valid fetcher options");
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
pub async fn raw_batches(client: &KafkaClient, topic: &str, partition: i32) -> Vec<RawBatch> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let conn = client
        .leader(topic, partition, krpc_kafka::Lane::Default)
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

/// Produces `records` (an encoded record batch, written as given) to `topic`/`partition` with
/// one raw Produce request; returns the broker's error code for the partition (0: stored), or
/// the error of the request (a broker may close the connection on bytes it cannot parse).
pub async fn produce_raw(
    client: &KafkaClient,
    topic: &str,
    partition: i32,
    records: bytes::Bytes,
) -> krpc_kafka::Result<i16> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let conn = client
        .leader(topic, partition, krpc_kafka::Lane::Default)
        .await
        .expect("leader");
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let resp = conn.send(&req).await?;
    Ok(resp.responses[0].partition_responses[0].error_code)
}

/// A v2 record batch of one record whose codec bits say `codec` (5-7 do not exist) over
/// `body` as its (compressed) records, with a valid CRC: undecodable by any client, yet a
/// well-formed batch to a broker that stores batches as they come.
pub fn batch_with_codec(codec: i16, body: &[u8]) -> bytes::Bytes {
    use bytes::BufMut;
    let mut b = bytes::BytesMut::new();
    b.put_i64(0); // base offset
    b.put_i32((49 + body.len()) as i32); // length after this field
    b.put_i32(-1); // partition leader epoch
    b.put_i8(2); // magic
    b.put_u32(0); // CRC, set below
    b.put_i16(codec); // attributes
    b.put_i32(0); // last offset delta
    b.put_i64(1_700_000_000_000); // first timestamp
    b.put_i64(1_700_000_000_000); // max timestamp
    b.put_i64(-1); // producer id
    b.put_i16(-1); // producer epoch
    b.put_i32(-1); // base sequence
    b.put_i32(1); // record count
    b.put_slice(body);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// CRC-32C (Castagnoli), the v2 batch checksum (bitwise: tests only).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
