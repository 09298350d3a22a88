//! OffsetCommit and OffsetFetch for a group.

use std::collections::HashMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::connection::Connection;
use crate::error::{check_code, Result};

/// Offsets per topic and partition.
pub type Offsets = HashMap<String, HashMap<i32, i64>>;

/// Who commits: a member of a generation, or (generation -1, empty member) a standalone client.
#[derive(Debug, Clone, Default)]
pub struct Committer {
    /// Group id.
    pub group: String,
    /// Generation, or -1.
    pub generation: i32,
    /// Member id, or empty.
    pub member_id: String,
    /// Static member id.
    pub instance_id: Option<String>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Commits `offsets` (the next offset to read, per partition) on the coordinator `conn`.
pub async fn commit(conn: &Connection, who: &Committer, offsets: &Offsets) -> Result<()> {
    let topics = offsets
        .iter()
        .map(|(t, parts)| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(t)))
                .with_partitions(
                    parts
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_leader_epoch(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(&who.group)))
        .with_generation_id_or_member_epoch(who.generation)
        .with_member_id(s(&who.member_id))
        .with_group_instance_id(who.instance_id.as_deref().map(s))
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let resp = conn.send(&req).await?;
    for t in &resp.topics {
        for p in &t.partitions {
            check_code(p.error_code, conn.broker(), ApiKey::OffsetCommit, || {
                format!(
                    " group {} {}/{}",
                    who.group,
                    t.name.0.as_str(),
                    p.partition_index
                )
            })?;
        }
    }
    Ok(())
}

/// The committed offsets of `group` for `topics` (-1 where nothing is committed).
pub async fn fetch_committed(
    conn: &Connection,
    group: &str,
    topics: &HashMap<String, Vec<i32>>,
) -> Result<Offsets> {
    let version = conn.version::<OffsetFetchRequest>()?;
    // v8+ carries a batch of groups; earlier versions one.
    let req = if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_member_epoch(-1)
            .with_topics(Some(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s(t)))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect(),
            ))])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect(),
            ))
    };
    let resp = conn.send(&req).await?;
    let ctx = || format!(" group {group}");
    let mut out = Offsets::new();
    if version >= 8 {
        for g in &resp.groups {
            check_code(g.error_code, conn.broker(), ApiKey::OffsetFetch, ctx)?;
            for t in &g.topics {
                for p in &t.partitions {
                    check_code(p.error_code, conn.broker(), ApiKey::OffsetFetch, || {
                        format!(" group {group} {}/{}", t.name.0.as_str(), p.partition_index)
                    })?;
                    out.entry(t.name.0.to_string())
                        .or_default()
                        .insert(p.partition_index, p.committed_offset);
                }
            }
        }
    } else {
        if version >= 2 {
            check_code(resp.error_code, conn.broker(), ApiKey::OffsetFetch, ctx)?;
        }
        for t in &resp.topics {
            for p in &t.partitions {
                check_code(p.error_code, conn.broker(), ApiKey::OffsetFetch, || {
                    format!(" group {group} {}/{}", t.name.0.as_str(), p.partition_index)
                })?;
                out.entry(t.name.0.to_string())
                    .or_default()
                    .insert(p.partition_index, p.committed_offset);
            }
        }
    }
    Ok(out)
}
