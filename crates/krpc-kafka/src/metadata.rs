//! The cluster's shape as last seen: brokers, controller, topics and partition leaders.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::MetadataResponse;

use crate::fast_map::FastMap;

/// One partition's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionInfo {
    /// Partition id.
    pub id: i32,
    /// Leader broker id, or -1 when there is none.
    pub leader: i32,
}

/// One topic's partitions, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Partitions sorted by id.
    pub partitions: Vec<PartitionInfo>,
}

/// A snapshot of cluster metadata.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterMetadata {
    /// Broker id to `host:port`.
    pub brokers: HashMap<i32, String>,
    /// Controller broker id, if announced.
    pub controller: Option<i32>,
    /// Known topics by name.
    pub topics: HashMap<String, TopicInfo>,
    /// When this snapshot was last updated.
    pub updated: Instant,
    /// The request path's view of the same facts: per topic, each partition's leader address
    /// (indexed by partition id; `None` without a leader), shared rather than copied. Kept by
    /// [`ClusterMetadata::merge`] and [`ClusterMetadata::forget_topic`]; the public maps above
    /// keep std's hasher, so their types name no other crate, and SipHash on a topic name
    /// cost about 565 instructions a lookup, several lookups a round trip (callgrind,
    /// 2026-12-01).
    leaders: FastMap<String, Vec<Option<Arc<str>>>>,
}

impl Default for ClusterMetadata {
    fn default() -> Self {
        Self {
            brokers: HashMap::new(),
            controller: None,
            topics: HashMap::new(),
            updated: Instant::now(),
            leaders: FastMap::default(),
        }
    }
}

impl ClusterMetadata {
    /// Merges a Metadata response: brokers replaced, listed topics replaced or (on error) removed.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) fn merge(&mut self, resp: &MetadataResponse) {
        self.brokers = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        self.controller = Some(resp.controller_id.0).filter(|id| *id >= 0);
        for t in &resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 || t.partitions.is_empty() {
                self.topics.remove(&name);
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    id: p.partition_index,
                    leader: if p.error_code == 0 || p.leader_id.0 >= 0 {
                        p.leader_id.0
                    } else {
                        -1
                    },
                })
                .collect();
            partitions.sort_by_key(|p| p.id);
            self.topics
                .insert(name.clone(), TopicInfo { name, partitions });
        }
        // Brokers may have moved for every topic: the index is rebuilt whole (a metadata
        // answer comes at most every `metadata.max.age.ms` or after an error).
        let addrs: HashMap<i32, Arc<str>> = self
            .brokers
            .iter()
            .map(|(id, addr)| (*id, Arc::from(addr.as_str())))
            .collect();
        self.leaders = self
            .topics
            .iter()
            .map(|(name, info)| {
                let len = info.partitions.iter().map(|p| p.id + 1).max().unwrap_or(0);
                let mut leaders = vec![None; len.max(0) as usize];
                for p in info.partitions.iter().filter(|p| p.id >= 0) {
                    leaders[p.id as usize] = addrs.get(&p.leader).cloned();
                }
                (name.clone(), leaders)
            })
            .collect();
        self.updated = Instant::now();
    }

    /// Forgets `topic` (its partitions and their leaders), so the next lookup asks the
    /// cluster.
    pub(crate) fn forget_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
        self.leaders.remove(topic);
    }

    /// The leader's address of `topic`/`partition`, if known and the partition has one: what
    /// [`ClusterMetadata::leader_addr`] says, from the request path's index (one cheap hash,
    /// no copy).
    pub(crate) fn leader(&self, topic: &str, partition: i32) -> Option<&Arc<str>> {
        let leaders = self.leaders.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| leaders.get(i))?
            .as_ref()
    }

    /// Whether `topic` is known (from the request path's index).
    pub(crate) fn knows_topic(&self, topic: &str) -> bool {
        self.leaders.contains_key(topic)
    }

    /// Address of the leader of `topic`/`partition`, if known.
    pub fn leader_addr(&self, topic: &str, partition: i32) -> Option<&str> {
        let info = self.topics.get(topic)?;
        let p = info.partitions.iter().find(|p| p.id == partition)?;
        self.brokers.get(&p.leader).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    /// A topic in a Metadata answer: its name, error code and each partition's (id, leader id).
    type Topic<'a> = (&'a str, i16, &'a [(i32, i32)]);

    /// A Metadata answer: brokers 0 and 1 (`b0:9092`, `b1:9092`) and `topics`.
    fn answer(topics: &[Topic]) -> MetadataResponse {
        let brokers = (0..2)
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(id.into())
                    .with_host(StrBytes::from_string(format!("b{id}")))
                    .with_port(9092)
            })
            .collect();
        let topics = topics
            .iter()
            .map(|(name, error, parts)| {
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                    .with_error_code(*error)
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(id, leader)| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(*id)
                                    .with_leader_id((*leader).into())
                            })
                            .collect(),
                    )
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(topics)
    }

    /// What the request path's index says of every partition 0..4 of `topic`.
    fn indexed(md: &ClusterMetadata, topic: &str) -> Vec<Option<String>> {
        (-1..4)
            .map(|p| md.leader(topic, p).map(|a| a.to_string()))
            .collect()
    }

    /// What the public maps say of the same partitions.
    fn public(md: &ClusterMetadata, topic: &str) -> Vec<Option<String>> {
        (-1..4)
            .map(|p| md.leader_addr(topic, p).map(str::to_string))
            .collect()
    }

    /// The request path's leader index says what the public maps say, through a leader move,
    /// a partition without a leader, partitions listed out of order, a topic answered with an
    /// error (removed) and a topic forgotten.
    #[test]
    fn the_leader_index_follows_every_metadata_change() {
        let mut md = ClusterMetadata::default();
        md.merge(&answer(&[
            ("t", 0, &[(1, 1), (0, 0), (2, -1)]),
            ("u", 0, &[(0, 1)]),
        ]));
        let b = |s: &str| Some(s.to_string());
        assert_eq!(
            indexed(&md, "t"),
            vec![None, b("b0:9092"), b("b1:9092"), None, None]
        );
        assert_eq!(indexed(&md, "t"), public(&md, "t"));
        assert!(md.knows_topic("t") && md.knows_topic("u") && !md.knows_topic("v"));

        // The leader of t/0 moves to broker 1; u answered with an error is removed.
        md.merge(&answer(&[
            ("t", 0, &[(0, 1), (1, 1), (2, 0)]),
            ("u", 3, &[]),
        ]));
        assert_eq!(
            indexed(&md, "t"),
            vec![None, b("b1:9092"), b("b1:9092"), b("b0:9092"), None]
        );
        assert_eq!(indexed(&md, "t"), public(&md, "t"));
        assert_eq!(indexed(&md, "u"), public(&md, "u"));
        assert!(!md.knows_topic("u"));

        md.forget_topic("t");
        assert!(!md.knows_topic("t"));
        assert_eq!(indexed(&md, "t"), vec![None; 5]);
        assert_eq!(indexed(&md, "t"), public(&md, "t"));
    }
}
