//! The cluster's shape as last seen: brokers, controller, topics and partition leaders.

use std::collections::HashMap;
use std::time::Instant;

use kafka_protocol::messages::MetadataResponse;

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
}

impl Default for ClusterMetadata {
    fn default() -> Self {
        Self {
            brokers: HashMap::new(),
            controller: None,
            topics: HashMap::new(),
            updated: Instant::now(),
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
        self.updated = Instant::now();
    }

    /// Address of the leader of `topic`/`partition`, if known.
    pub fn leader_addr(&self, topic: &str, partition: i32) -> Option<&str> {
        let info = self.topics.get(topic)?;
        let p = info.partitions.iter().find(|p| p.id == partition)?;
        self.brokers.get(&p.leader).map(String::as_str)
    }
}
