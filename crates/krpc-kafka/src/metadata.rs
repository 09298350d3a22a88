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
    /// The request path's view of the same facts (see [`LeaderIndex`]).
    leaders: LeaderIndex,
}

impl Default for ClusterMetadata {
    fn default() -> Self {
        Self {
            brokers: HashMap::new(),
            controller: None,
            topics: HashMap::new(),
            updated: Instant::now(),
            leaders: LeaderIndex::default(),
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
        self.leaders = LeaderIndex::of(&self.brokers, &self.topics);
        self.updated = Instant::now();
    }

    /// Forgets `topic` (its partitions and their leaders), so the next lookup asks the
    /// cluster.
    pub(crate) fn forget_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
        if self.leaders.0.contains_key(topic) {
            Arc::make_mut(&mut self.leaders.0).remove(topic);
        }
    }

    /// The leader's address of `topic`/`partition`, if known and the partition has one: what
    /// [`ClusterMetadata::leader_addr`] says, from the request path's index (one cheap hash,
    /// no copy).
    pub(crate) fn leader(&self, topic: &str, partition: i32) -> Option<&Arc<str>> {
        self.leaders.0.get(topic)?.leader(partition)
    }

    /// The number of partitions of `topic` (as `topics[topic].partitions.len()`), if known.
    pub(crate) fn partition_count(&self, topic: &str) -> Option<usize> {
        self.leaders.0.get(topic).map(|t| t.count)
    }

    /// Whether `topic` is known (from the request path's index).
    pub(crate) fn knows_topic(&self, topic: &str) -> bool {
        self.leaders.0.contains_key(topic)
    }

    /// Address of the leader of `topic`/`partition`, if known.
    pub fn leader_addr(&self, topic: &str, partition: i32) -> Option<&str> {
        let info = self.topics.get(topic)?;
        let p = info.partitions.iter().find(|p| p.id == partition)?;
        self.brokers.get(&p.leader).map(String::as_str)
    }
}

/// The request path's view of the cached metadata: per topic, each partition's leader
/// address, shared (`Arc<str>`) rather than copied, in a foldhash map. Rebuilt whole by
/// [`ClusterMetadata::merge`] (brokers may have moved for every topic) and shared by the
/// snapshots ([`Arc`]). The public maps keep std's hasher, so their types name no other
/// crate; SipHash on a 64-character topic name cost about 565 instructions a lookup, three
/// lookups and an address copy per produce-then-fetch round trip (callgrind, 2026-12-01).
#[derive(Clone, Default)]
struct LeaderIndex(Arc<FastMap<String, TopicLeaders>>);

impl std::fmt::Debug for LeaderIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The same facts as the public maps, which `Debug` shows already.
        write!(f, "LeaderIndex({} topics)", self.0.len())
    }
}

/// One topic's partitions in the [`LeaderIndex`].
#[derive(Clone)]
struct TopicLeaders {
    /// Each partition listed, sorted by id, the first of a duplicated id only (as
    /// [`ClusterMetadata::leader_addr`] finds it), with its leader's address (`None`: no
    /// leader, or one not among the brokers). As long as the answer's list: never sized by
    /// an id off the network.
    partitions: Vec<(i32, Option<Arc<str>>)>,
    /// The partitions listed (duplicates included), as `TopicInfo::partitions.len()`.
    count: usize,
}

impl TopicLeaders {
    fn leader(&self, partition: i32) -> Option<&Arc<str>> {
        // Kafka's ids are 0..n: the id is the position. Anything else is searched for.
        let at = usize::try_from(partition)
            .ok()
            .filter(|&i| {
                self.partitions
                    .get(i)
                    .is_some_and(|(id, _)| *id == partition)
            })
            .or_else(|| {
                self.partitions
                    .binary_search_by_key(&partition, |(id, _)| *id)
                    .ok()
            })?;
        self.partitions[at].1.as_ref()
    }
}

impl LeaderIndex {
    fn of(brokers: &HashMap<i32, String>, topics: &HashMap<String, TopicInfo>) -> Self {
        let addrs: HashMap<i32, Arc<str>> = brokers
            .iter()
            .map(|(id, addr)| (*id, Arc::from(addr.as_str())))
            .collect();
        let index = topics
            .iter()
            .map(|(name, info)| {
                // `info.partitions` is sorted by id (stably: duplicates in answer order).
                let mut partitions: Vec<(i32, Option<Arc<str>>)> = info
                    .partitions
                    .iter()
                    .map(|p| (p.id, addrs.get(&p.leader).cloned()))
                    .collect();
                partitions.dedup_by_key(|(id, _)| *id);
                let count = info.partitions.len();
                (name.clone(), TopicLeaders { partitions, count })
            })
            .collect();
        Self(Arc::new(index))
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

    /// The partitions asked about: -1, 0..4 and the largest id.
    const PROBES: [i32; 6] = [-1, 0, 1, 2, 3, i32::MAX];

    /// What the request path's index says of each of [`PROBES`] of `topic`.
    fn indexed(md: &ClusterMetadata, topic: &str) -> Vec<Option<String>> {
        PROBES
            .iter()
            .map(|&p| md.leader(topic, p).map(|a| a.to_string()))
            .collect()
    }

    /// What the public maps say of the same partitions.
    fn public(md: &ClusterMetadata, topic: &str) -> Vec<Option<String>> {
        PROBES
            .iter()
            .map(|&p| md.leader_addr(topic, p).map(str::to_string))
            .collect()
    }

    /// The request path's leader index says what the public maps say, through a leader move,
    /// a partition without a leader, partitions listed out of order, a topic answered with an
    /// error (removed), partition ids no Kafka broker sends (i32::MAX, which the first version
    /// of the index sized itself by, negative, duplicated) and a topic forgotten.
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
            vec![None, b("b0:9092"), b("b1:9092"), None, None, None]
        );
        assert_eq!(indexed(&md, "t"), public(&md, "t"));
        assert!(md.knows_topic("t") && md.knows_topic("u") && !md.knows_topic("v"));
        assert_eq!(md.partition_count("t"), Some(3));

        // The leader of t/0 moves to broker 1; u answered with an error is removed.
        md.merge(&answer(&[
            ("t", 0, &[(0, 1), (1, 1), (2, 0)]),
            ("u", 3, &[]),
        ]));
        assert_eq!(
            indexed(&md, "t"),
            vec![None, b("b1:9092"), b("b1:9092"), b("b0:9092"), None, None]
        );
        assert_eq!(indexed(&md, "t"), public(&md, "t"));
        assert_eq!(indexed(&md, "u"), public(&md, "u"));
        assert!(!md.knows_topic("u"));
        assert_eq!(md.partition_count("u"), None);

        // Ids no Kafka broker sends (off the network all the same): the largest id, a
        // negative one, one listed twice. Nothing sized by an id, no panic, and the index
        // still says what the public maps say (the first of a duplicated id).
        md.merge(&answer(&[(
            "w",
            0,
            &[(i32::MAX, 0), (-1, 1), (1, 1), (1, 0), (0, 0)],
        )]));
        assert_eq!(
            indexed(&md, "w"),
            vec![
                b("b1:9092"),
                b("b0:9092"),
                b("b1:9092"),
                None,
                None,
                b("b0:9092")
            ]
        );
        assert_eq!(indexed(&md, "w"), public(&md, "w"));
        assert_eq!(md.partition_count("w"), Some(5));

        md.forget_topic("t");
        assert!(!md.knows_topic("t"));
        assert_eq!(indexed(&md, "t"), vec![None; 6]);
        assert_eq!(indexed(&md, "t"), public(&md, "t"));
    }
}
