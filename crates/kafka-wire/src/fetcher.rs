//! Long-poll fetching of assigned partitions from their leaders.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, Lane};
use crate::error::{check_code, Error, Result};
use crate::offsets::OffsetSpec;
use crate::records::{decode_fetched, ConsumerRecord, ReadCommitted, RecordsError};

/// What to do when the fetch position is outside the stored range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Jump to the earliest stored offset.
    Earliest,
    /// Jump to the end.
    #[default]
    Latest,
    /// Fail the poll with the broker's error.
    Error,
}

/// Which records a fetch returns (KIP-98); mirrors the Java consumer's `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every data record, aborted transactions included, up to the high watermark
    /// (`read_uncommitted`, Java's default).
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions and non-transactional ones, up to the last stable
    /// offset (`read_committed`): the broker sends the aborted transactions of each partition
    /// and the decoder drops their data batches. Needs Fetch v4+ (Kafka 0.11+).
    ReadCommitted,
}

impl IsolationLevel {
    /// The Fetch request's `isolation_level` field.
    pub fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Fetch settings.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// How long the broker may hold a fetch waiting for `min_bytes`.
    pub max_wait: Duration,
    /// Bytes the broker waits for before answering early.
    pub min_bytes: i32,
    /// Upper bound on the bytes of one response.
    pub max_bytes: i32,
    /// Upper bound on the bytes returned per partition.
    pub partition_max_bytes: i32,
    /// Largest size one batch may inflate to when decompressed.
    pub max_inflated_bytes: usize,
    /// What to do on OFFSET_OUT_OF_RANGE.
    pub offset_reset: OffsetReset,
    /// Step over a batch that cannot be decoded (unsupported codec, corrupt content), logging
    /// and counting it ([`Fetcher::skipped_batches`]), instead of failing every poll on it.
    pub skip_undecodable: bool,
    /// When a fetch shows a hole in the offsets (a later batch without the earlier one), stop
    /// before the hole and fetch it again for up to this long before accepting it as a real
    /// hole. Apache Kafka never shows a later batch first; some Kafka-compatible brokers do
    /// (measured on nisshi 0.8.1 under concurrent producers), and a consumer that jumps the
    /// hole loses those records. Holes are legitimate on compacted topics, so `None` (accept at
    /// once) is the default; the RPC layer sets it for its own, never compacted, topics.
    pub hole_wait: Option<Duration>,
    /// Which records to return; mirrors the Java consumer's `isolation.level` (default
    /// `read_uncommitted`). See [`IsolationLevel`].
    pub isolation_level: IsolationLevel,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            max_inflated_bytes: 64 * 1024 * 1024,
            offset_reset: OffsetReset::Latest,
            skip_undecodable: false,
            hole_wait: None,
            isolation_level: IsolationLevel::ReadUncommitted,
        }
    }
}

/// A batch stepped over because it could not be decoded (with `skip_undecodable`), kept with
/// its raw bytes so the caller can store it somewhere (a dead-letter topic) instead of losing it.
#[derive(Debug, Clone)]
pub struct SkippedBatch {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// First offset of the batch (for an old-format message: its offset).
    pub base_offset: i64,
    /// The offset after it (exclusive).
    pub next_offset: i64,
    /// Why it could not be decoded.
    pub reason: String,
    /// The batch exactly as the broker sent it (base offset and length fields included).
    pub raw: bytes::Bytes,
}

/// Skipped batches kept for [`Fetcher::take_skipped`] at most, and their total raw bytes;
/// beyond, they are only counted and logged.
const MAX_KEPT_SKIPPED: usize = 1024;
const MAX_KEPT_SKIPPED_BYTES: usize = 16 << 20;

/// Fetches records of a set of assigned partitions, tracking each one's position.
pub struct Fetcher {
    client: Client,
    config: FetchConfig,
    /// Next offset to fetch, per topic and partition.
    positions: HashMap<Arc<str>, HashMap<i32, i64>>,
    /// This fetcher's own connections.
    lane: Lane,
    /// Undecodable batches stepped over.
    skipped: std::sync::atomic::AtomicU64,
    /// Per partition, a hole being waited for: its first offset and when it was first seen.
    holes: HashMap<(Arc<str>, i32), (i64, std::time::Instant)>,
    /// Undecodable batches stepped over and not yet taken by [`Fetcher::take_skipped`].
    kept_skipped: Vec<SkippedBatch>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.client.close_lane(self.lane);
    }
}

impl Fetcher {
    /// A fetcher with nothing assigned.
    pub fn new(client: Client, config: FetchConfig) -> Self {
        Self {
            client,
            config,
            positions: HashMap::new(),
            lane: Lane::Fetch(Lane::unique_id()),
            skipped: Default::default(),
            holes: HashMap::new(),
            kept_skipped: Vec::new(),
        }
    }

    /// Starts fetching `topic`/`partition` at `offset`.
    pub fn assign(&mut self, topic: &str, partition: i32, offset: i64) {
        self.positions
            .entry(Arc::from(topic))
            .or_default()
            .insert(partition, offset);
    }

    /// Starts fetching `topic`/`partition` at the offset `spec` names.
    pub async fn assign_at(
        &mut self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64> {
        let offset = self.client.list_offset(topic, partition, spec).await?;
        self.assign(topic, partition, offset);
        Ok(offset)
    }

    /// Stops fetching `topic`/`partition`.
    pub fn unassign(&mut self, topic: &str, partition: i32) {
        if let Some(parts) = self.positions.get_mut(topic) {
            parts.remove(&partition);
        }
    }

    /// The next offset that will be fetched for `topic`/`partition`.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(topic)?.get(&partition).copied()
    }

    /// Undecodable batches stepped over so far (with `skip_undecodable`).
    pub fn skipped_batches(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The undecodable batches stepped over since the last call (with `skip_undecodable`),
    /// each once, in the order met; at most 1024 batches and 16 MiB are kept between calls (the
    /// rest are only counted in [`Fetcher::skipped_batches`] and logged).
    pub fn take_skipped(&mut self) -> Vec<SkippedBatch> {
        std::mem::take(&mut self.kept_skipped)
    }

    /// Whether [`Fetcher::take_skipped`] has batches to hand out.
    pub fn has_skipped(&self) -> bool {
        !self.kept_skipped.is_empty()
    }

    /// The settings of this fetcher.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// One long-poll fetch round over every assigned partition (leaders asked concurrently).
    /// Returns the records in offset order per partition and advances the positions.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        let mut by_leader: HashMap<String, Vec<(Arc<str>, i32, i64)>> = HashMap::new();
        for (topic, parts) in &self.positions {
            for (&partition, &offset) in parts {
                match self.client.leader_addr(topic, partition).await {
                    Ok(addr) => {
                        by_leader
                            .entry(addr)
                            .or_default()
                            .push((topic.clone(), partition, offset))
                    }
                    Err(e) if e.is_retriable() => self.client.invalidate_topic(topic),
                    Err(e) => return Err(e),
                }
            }
        }
        if by_leader.is_empty() {
            tokio::time::sleep(self.config.max_wait.min(Duration::from_millis(100))).await;
            return Ok(Vec::new());
        }
        let rounds = by_leader
            .into_iter()
            .map(|(addr, parts)| self.fetch_from(addr, parts));
        let results = futures::future::join_all(rounds).await;
        let mut records = Vec::new();
        for result in results {
            for outcome in result? {
                match outcome {
                    PartitionOutcome::Records {
                        topic,
                        partition,
                        mut next,
                        mut batch,
                        hole,
                        skipped,
                    } => {
                        if let Some(at) = hole {
                            if self.wait_for_hole(&topic, partition, at) {
                                batch.retain(|r| r.offset < at);
                                next = at;
                            }
                        } else {
                            self.holes.remove(&(topic.clone(), partition));
                        }
                        // Batches past a hole being waited for come again with the next fetch.
                        for bad in skipped.into_iter().filter(|b| b.base_offset < next) {
                            self.skipped
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(%topic, partition, from = bad.base_offset, to = bad.next_offset, error = %bad.reason, "undecodable batch skipped");
                            let kept: usize = self.kept_skipped.iter().map(|b| b.raw.len()).sum();
                            if self.kept_skipped.len() < MAX_KEPT_SKIPPED
                                && kept + bad.raw.len() <= MAX_KEPT_SKIPPED_BYTES
                            {
                                self.kept_skipped.push(bad);
                            } else {
                                tracing::warn!(%topic, partition, from = bad.base_offset, "undecodable batch not kept: take_skipped is not keeping up");
                            }
                        }
                        self.positions
                            .entry(topic)
                            .or_default()
                            .insert(partition, next);
                        records.append(&mut batch);
                    }
                    PartitionOutcome::Reset {
                        topic,
                        partition,
                        spec,
                    } => {
                        let offset = self.client.list_offset(&topic, partition, spec).await?;
                        tracing::warn!(%topic, partition, offset, "fetch position out of range, reset");
                        self.positions
                            .entry(topic)
                            .or_default()
                            .insert(partition, offset);
                    }
                    PartitionOutcome::Stale { topic } => self.client.invalidate_topic(&topic),
                }
            }
        }
        Ok(records)
    }

    /// Whether to stop before the hole at `at` (true) or accept it (false) under `hole_wait`.
    fn wait_for_hole(&mut self, topic: &Arc<str>, partition: i32, at: i64) -> bool {
        let Some(wait) = self.config.hole_wait else {
            return false;
        };
        let key = (topic.clone(), partition);
        let now = std::time::Instant::now();
        let since = match self.holes.get(&key) {
            Some(&(offset, since)) if offset == at => since,
            _ => {
                self.holes.insert(key.clone(), (at, now));
                now
            }
        };
        if now.duration_since(since) < wait {
            return true;
        }
        self.holes.remove(&key);
        tracing::warn!(%topic, partition, offset = at, "offsets missing for {wait:?}; accepted as a hole in the log");
        false
    }

    async fn fetch_from(
        &self,
        addr: String,
        parts: Vec<(Arc<str>, i32, i64)>,
    ) -> Result<Vec<PartitionOutcome>> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (topic, partition, offset) in &parts {
            let fp = FetchPartition::default()
                .with_partition(*partition)
                .with_fetch_offset(*offset)
                .with_current_leader_epoch(-1)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(self.config.partition_max_bytes);
            match topics.iter_mut().find(|t| t.topic.0.as_str() == &**topic) {
                Some(t) => t.partitions.push(fp),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(vec![fp]),
                ),
            }
        }
        let req = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.config.max_wait.as_millis().min(i32::MAX as u128) as i32)
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.max_bytes)
            .with_isolation_level(self.config.isolation_level.wire())
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        let conn = match self.client.connection(&addr, self.lane).await {
            Ok(c) => c,
            Err(e) if e.is_retriable() => return Ok(stale_all(&parts)),
            Err(e) => return Err(e),
        };
        if self.config.isolation_level == IsolationLevel::ReadCommitted
            && conn.version::<FetchRequest>()? < 4
        {
            // Fetch v0-3 has no isolation level: the broker would hand out aborted records.
            return Err(Error::InvalidArgument(format!(
                "read_committed needs Fetch v4+ (Kafka 0.11+); broker {addr} offers less"
            )));
        }
        let timeout = self.client.config().request_timeout + self.config.max_wait;
        let resp = match conn.send_timeout(&req, timeout).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => {
                tracing::debug!(broker = %addr, error = %e, "fetch failed; will retry");
                return Ok(stale_all(&parts));
            }
            Err(e) => return Err(e),
        };
        check_code(resp.error_code, &addr, ApiKey::Fetch, String::new)?;
        self.outcomes(&addr, &parts, resp)
    }

    fn outcomes(
        &self,
        addr: &str,
        parts: &[(Arc<str>, i32, i64)],
        resp: FetchResponse,
    ) -> Result<Vec<PartitionOutcome>> {
        let mut out = Vec::new();
        for t in resp.responses {
            for p in t.partitions {
                let Some((topic, partition, offset)) = parts
                    .iter()
                    .find(|(topic, partition, _)| {
                        &**topic == t.topic.0.as_str() && *partition == p.partition_index
                    })
                    .cloned()
                else {
                    continue; // a partition we did not ask for
                };
                let context = || format!(" {topic}/{partition} at offset {offset}");
                if let Err(e) = check_code(p.error_code, addr, ApiKey::Fetch, context) {
                    match e.kafka_error() {
                        Some(ResponseError::OffsetOutOfRange) => match self.config.offset_reset {
                            OffsetReset::Earliest => out.push(PartitionOutcome::Reset {
                                topic,
                                partition,
                                spec: OffsetSpec::Earliest,
                            }),
                            OffsetReset::Latest => out.push(PartitionOutcome::Reset {
                                topic,
                                partition,
                                spec: OffsetSpec::Latest,
                            }),
                            OffsetReset::Error => return Err(e),
                        },
                        _ if e.is_retriable() || e.invalidates_metadata() => {
                            out.push(PartitionOutcome::Stale { topic })
                        }
                        _ => return Err(e),
                    }
                    continue;
                }
                let committed = read_committed_view(self.config.isolation_level, &p);
                let data = p.records.unwrap_or_default();
                let to_error = |e: &RecordsError| match e {
                    RecordsError::UnsupportedCodec(codec) => Error::UnsupportedCompression {
                        topic: topic.to_string(),
                        partition,
                        codec,
                    },
                    RecordsError::Malformed { .. } => Error::Malformed {
                        broker: addr.to_string(),
                        what: format!("record batch of {topic}/{partition}"),
                        reason: e.to_string(),
                    },
                };

                let decoded = decode_fetched(
                    &data,
                    &topic,
                    partition,
                    offset,
                    self.config.max_inflated_bytes,
                    committed.as_ref(),
                )
                .map_err(|e| to_error(&e))?;
                if decoded.aborted_batches > 0 {
                    tracing::debug!(%topic, partition, batches = decoded.aborted_batches, "aborted transactional batches dropped (read_committed)");
                }
                if let Some(bad) = decoded.undecodable.first() {
                    if !self.config.skip_undecodable {
                        return Err(to_error(&bad.error));
                    }
                }
                let skipped = decoded
                    .undecodable
                    .into_iter()
                    .map(|bad| SkippedBatch {
                        topic: topic.clone(),
                        partition,
                        base_offset: bad.base_offset,
                        next_offset: bad.next_offset,
                        reason: bad.error.to_string(),
                        raw: bad.raw,
                    })
                    .collect();
                let next = decoded.next_offset.map_or(offset, |n| n.max(offset));
                out.push(PartitionOutcome::Records {
                    topic,
                    partition,
                    next,
                    batch: decoded.records,
                    hole: decoded.first_gap,
                    skipped,
                });
            }
        }
        Ok(out)
    }
}

/// What the decoder needs from a partition of a Fetch response to read it committed; `None`
/// for read_uncommitted.
fn read_committed_view(
    level: IsolationLevel,
    p: &kafka_protocol::messages::fetch_response::PartitionData,
) -> Option<ReadCommitted> {
    (level == IsolationLevel::ReadCommitted).then(|| ReadCommitted {
        aborted: p
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect(),
        last_stable_offset: p.last_stable_offset,
    })
}

enum PartitionOutcome {
    Records {
        topic: Arc<str>,
        partition: i32,
        next: i64,
        batch: Vec<ConsumerRecord>,
        /// The first missing offset, if the response skipped some.
        hole: Option<i64>,
        /// Undecodable batches stepped over (with `skip_undecodable`).
        skipped: Vec<SkippedBatch>,
    },
    Reset {
        topic: Arc<str>,
        partition: i32,
        spec: OffsetSpec,
    },
    Stale {
        topic: Arc<str>,
    },
}

fn stale_all(parts: &[(Arc<str>, i32, i64)]) -> Vec<PartitionOutcome> {
    parts
        .iter()
        .map(|(topic, _, _)| PartitionOutcome::Stale {
            topic: topic.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::ProducerId;
    use kafka_protocol::protocol::{Decodable, Encodable};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// One batch at `offset` of producer `pid` (-1: not idempotent), as Apache Kafka stores a
    /// plain, transactional or control (abort marker) batch.
    fn batch(offset: i64, value: &str, pid: i64, transactional: bool, control: bool) -> Bytes {
        let record = Record {
            transactional,
            control,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: if pid < 0 { -1 } else { 0 },
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: if pid < 0 { -1 } else { 0 },
            timestamp: 1000,
            key: control.then(|| Bytes::from_static(&[0, 0, 0, 0])), // v0 ABORT
            value: Some(if control {
                Bytes::from_static(&[0, 0, 0, 0, 0, 0])
            } else {
                Bytes::copy_from_slice(value.as_bytes())
            }),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
        buf.freeze()
    }

    /// The Fetch response (v11, through its wire encoding) Apache Kafka sends a read_committed
    /// consumer after "produce c1; begin, produce a1, abort; produce c2".
    fn aborted_response() -> FetchResponse {
        let records: Bytes = [
            batch(0, "c1", -1, false, false),
            batch(1, "a1", 7, true, false),
            batch(2, "", 7, true, true),
            batch(3, "c2", -1, false, false),
        ]
        .concat()
        .into();
        let partition = PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(4)
            .with_last_stable_offset(4)
            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                .with_producer_id(ProducerId(7))
                .with_first_offset(1)]))
            .with_records(Some(records));
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![partition])]);
        let mut wire = BytesMut::new();
        resp.encode(&mut wire, 11).unwrap();
        FetchResponse::decode(&mut wire.freeze(), 11).unwrap()
    }

    fn values(level: IsolationLevel) -> Vec<String> {
        let resp = aborted_response();
        let p = &resp.responses[0].partitions[0];
        let committed = read_committed_view(level, p);
        let data = p.records.clone().unwrap();
        decode_fetched(&data, &Arc::from("t"), 0, 0, 1 << 20, committed.as_ref())
            .unwrap()
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
            .collect()
    }

    #[test]
    fn a_read_committed_fetch_drops_the_aborted_transaction_of_the_response() {
        assert_eq!(values(IsolationLevel::ReadCommitted), ["c1", "c2"]);
        assert_eq!(values(IsolationLevel::ReadUncommitted), ["c1", "a1", "c2"]);
    }

    #[test]
    fn the_isolation_level_is_the_fetch_field() {
        assert_eq!(IsolationLevel::default(), IsolationLevel::ReadUncommitted);
        assert_eq!(IsolationLevel::ReadUncommitted.wire(), 0);
        assert_eq!(IsolationLevel::ReadCommitted.wire(), 1);
    }
}
