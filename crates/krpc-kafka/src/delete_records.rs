//! Moving a partition's log start offset forward (DeleteRecords, API 21; KIP-107), as the
//! Java `Admin::deleteRecords` and `kafka-delete-records.sh` do: records below the offset
//! become unreadable and the broker frees them.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{KafkaClient, Lane};
use crate::error::{check_code, Result};

impl KafkaClient {
    /// Deletes the records of `topic` below `before` in each partition of `before`
    /// (partition → offset), sending one DeleteRecords request per partition leader.
    /// Returns each partition's new log start offset (the response's low watermark).
    ///
    /// An offset above the high watermark is the broker's OFFSET_OUT_OF_RANGE; -1 means "up to
    /// the high watermark". Deleting below the current log start changes nothing.
    ///
    /// # Errors
    /// No leader for a partition, or the broker's error with topic and partition named; the
    /// partitions of other leaders handled before the failing one stay trimmed.
    pub async fn delete_records(
        &self,
        topic: &str,
        before: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut by_leader: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        for (&partition, &offset) in before {
            let leader = self.leader_addr(topic, partition).await?;
            by_leader
                .entry(leader)
                .or_default()
                .push((partition, offset));
        }
        let timeout = self.config().request_timeout;
        let mut low_watermarks = BTreeMap::new();
        for (leader, partitions) in by_leader {
            let conn = self.connection(&leader, Lane::Default).await?;
            let req = DeleteRecordsRequest::default()
                .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&(p, o)| {
                                DeleteRecordsPartition::default()
                                    .with_partition_index(p)
                                    .with_offset(o)
                            })
                            .collect(),
                    )]);
            let resp = conn.send(&req).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check_code(p.error_code, conn.broker(), ApiKey::DeleteRecords, || {
                        format!(
                            " {topic}/{} (delete before {:?})",
                            p.partition_index,
                            before.get(&p.partition_index)
                        )
                    })?;
                    low_watermarks.insert(p.partition_index, p.low_watermark);
                }
            }
        }
        Ok(low_watermarks)
    }
}
