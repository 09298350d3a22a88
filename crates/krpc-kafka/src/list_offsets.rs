//! ListOffsets: the earliest, latest, or first-at-a-time offset of partitions, read
//! uncommitted (the high watermark) or read committed (the last stable offset, ListOffsets v2+,
//! KIP-98).

use std::collections::HashMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{KafkaClient, Lane};
use crate::error::{check_code, Error, Result};
use crate::fetcher::IsolationLevel;

/// Which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset still stored.
    Earliest,
    /// The offset the next record will get (the high watermark); asked with
    /// [`IsolationLevel::ReadCommitted`], the last stable offset (the first offset of a
    /// transaction still open, else the high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn as_timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

impl KafkaClient {
    /// The offset `spec` names for one partition (-1 when a timestamp is past every record).
    pub async fn list_offset(&self, topic: &str, partition: i32, spec: OffsetSpec) -> Result<i64> {
        let map = self.list_offsets(topic, &[partition], spec).await?;
        Ok(map.get(&partition).copied().unwrap_or(-1))
    }

    /// The offsets `spec` names for `partitions` of `topic`, asked of each leader, with retries
    /// on leadership changes; a response that leaves out a partition asked for is an error.
    /// Read uncommitted: [`OffsetSpec::Latest`] is the high watermark (see
    /// [`KafkaClient::list_offsets_isolated`]).
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<HashMap<i32, i64>> {
        self.list_offsets_isolated(topic, partitions, spec, IsolationLevel::ReadUncommitted)
            .await
    }

    /// As [`KafkaClient::list_offsets`], with ListOffsets' `isolation_level` (v2+, KIP-98; the Java
    /// admin client's `ListOffsetsOptions(IsolationLevel)`, the consumer's `endOffsets` under
    /// `isolation.level`): with [`IsolationLevel::ReadCommitted`], [`OffsetSpec::Latest`] is
    /// the last stable offset, where a read-committed fetch stops while a transaction is open.
    ///
    /// # Errors
    /// As [`KafkaClient::list_offsets`]; [`Error::NoVersionMatch`] naming the broker when it speaks
    /// only ListOffsets v0-v1, which cannot ask read committed.
    pub async fn list_offsets_isolated(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
        isolation: IsolationLevel,
    ) -> Result<HashMap<i32, i64>> {
        let mut backoff = self.backoff();
        loop {
            match self
                .list_offsets_once(topic, partitions, spec, isolation)
                .await
            {
                Err(e) if e.is_retriable() => {
                    if e.invalidates_metadata() {
                        self.invalidate_topic(topic);
                    }
                    if !backoff.wait().await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    async fn list_offsets_once(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
        isolation: IsolationLevel,
    ) -> Result<HashMap<i32, i64>> {
        let mut by_leader: HashMap<String, Vec<i32>> = HashMap::new();
        for &p in partitions {
            by_leader
                .entry(self.leader_addr(topic, p).await?)
                .or_default()
                .push(p);
        }
        let mut out = HashMap::new();
        for (addr, parts) in by_leader {
            let req = ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_isolation_level(isolation.wire())
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(spec.as_timestamp())
                            })
                            .collect(),
                    )]);
            let conn = self.connection(&addr, Lane::Default).await?;
            let version = conn.version::<ListOffsetsRequest>()?;
            if isolation == IsolationLevel::ReadCommitted && version < 2 {
                // A broker limit, not a bad argument: read committed needs ListOffsets v2+.
                // The version picked is the broker's highest (ours is higher).
                return Err(Error::NoVersionMatch {
                    broker: addr.clone(),
                    api: crate::ApiKey::LIST_OFFSETS,
                    broker_min: 0,
                    broker_max: version,
                    ours_min: 2,
                    ours_max: crate::versions::our_max::<ListOffsetsRequest>(),
                });
            }
            let resp = conn.send(&req).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check_code(p.error_code, &addr, ApiKey::ListOffsets, || {
                        format!(" {topic}/{}", p.partition_index)
                    })?;
                    out.insert(p.partition_index, p.offset);
                }
            }
            if let Some(missing) = parts.iter().find(|p| !out.contains_key(p)) {
                return Err(Error::Malformed {
                    broker: addr,
                    what: "ListOffsets response".into(),
                    reason: format!("no offset for {topic}/{missing}, which was asked for"),
                });
            }
        }
        Ok(out)
    }
}
