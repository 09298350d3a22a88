//! Consumer groups: membership (join, sync, heartbeat, leave), assignors, committed offsets,
//! and [`GroupConsumer`], which subscribes to topics and yields records and rebalance events.

pub mod admin;
pub mod assignor;
mod consumer;
mod heartbeat;
mod join;
mod state;

crate::internal_mods! {
    coordinator;
    membership;
    offset_commit;
    payload;
}

use std::time::Duration;

pub use admin::{GroupDescription, GroupMemberDescription, ListedGroup};
pub use assignor::Assignor;
pub use consumer::{GroupCommitter, GroupConsumer, GroupEvent};
pub use offset_commit::Offsets;
pub use payload::Assignment;

use crate::fetcher::FetchConfig;

/// Settings of a group member.
///
/// With the `serde` feature it reads from a config file (see [`crate::config`]); `group_id` and
/// `topics` default to empty there.
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default = "GroupConfig::serde_default", deny_unknown_fields)
)]
pub struct GroupConfig {
    /// The group to join (Java: `group.id`).
    pub group_id: String,
    /// Topics to consume (Java: `subscribe(topics)`).
    pub topics: Vec<String>,
    /// A member not heard from for this long is removed by the coordinator (Java:
    /// `session.timeout.ms`). Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to rejoin during a rebalance (Java sends
    /// `max.poll.interval.ms`). Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub rebalance_timeout: Duration,
    /// Time between heartbeats, well under the session timeout (Java: `heartbeat.interval.ms`,
    /// 3 s). Default 3 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub heartbeat_interval: Duration,
    /// Static membership id (`group.instance.id`): a restart within the session timeout gets its
    /// partitions back without a rebalance.
    pub instance_id: Option<String>,
    /// Assignment strategies we offer, preferred first.
    pub assignors: Vec<Assignor>,
    /// Commit the consumed positions this often (and on revoke and close); `None`: commit
    /// manually (Java: `enable.auto.commit` with `auto.commit.interval.ms`).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub auto_commit: Option<Duration>,
    /// How often the member refreshes the metadata of its topics to notice partitions added,
    /// or topics deleted or created, while it runs (Java `metadata.max.age.ms`, default 5
    /// minutes). A change makes it rejoin, so the leader assigns the new partitions.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub metadata_max_age: Duration,
    /// Fetch settings. Its `offset_reset` (Java: `auto.offset.reset`) is the group's one reset
    /// policy: it says where to start in a partition with no committed offset AND where to go
    /// when a position is out of range (below the log start or above its end). With
    /// [`crate::OffsetReset::Error`] a partition without a committed offset fails the join
    /// with [`crate::Error::NoResetPolicy`].
    pub fetch: FetchConfig,
}

impl GroupConfig {
    /// Settings for `group_id` consuming `topics`, with the Java client's defaults where they fit.
    pub fn new(group_id: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            group_id: group_id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(3),
            instance_id: None,
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
            auto_commit: None,
            metadata_max_age: Duration::from_secs(300),
            fetch: FetchConfig::default(),
        }
    }

    /// The defaults a config file starts from: no group, no topics.
    #[cfg(feature = "serde")]
    fn serde_default() -> Self {
        Self::new("", &[])
    }
}
