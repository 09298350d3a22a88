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
///
/// `#[non_exhaustive]`: start from [`GroupConfig::new`] and chain the `with_*` setters.
/// [`GroupConsumer::new`] checks it ([`GroupConfig::validate`]).
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default = "GroupConfig::serde_default", deny_unknown_fields)
)]
#[non_exhaustive]
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

    /// Checks every setting, as [`GroupConsumer::new`] does: a group id (the Java consumer
    /// refuses to subscribe without `group.id`), at least one topic and one assignor (Java:
    /// `partition.assignment.strategy` must not be empty), a heartbeat interval below the
    /// session timeout (as the Java consumer requires), non-zero session and rebalance
    /// timeouts, and valid [`fetch`](Self::fetch) settings.
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::config::check;
        check(!self.group_id.is_empty(), || {
            "GroupConfig::group_id (group.id) must not be empty, got \"\"".into()
        })?;
        check(!self.topics.is_empty(), || {
            "GroupConfig::topics must name at least one topic (a group consumer needs one), got none"
                .into()
        })?;
        check(!self.assignors.is_empty(), || {
            "GroupConfig::assignors (partition.assignment.strategy) must not be empty, got none"
                .into()
        })?;
        check(!self.session_timeout.is_zero(), || {
            "GroupConfig::session_timeout (session.timeout.ms) must be > 0, got 0s".into()
        })?;
        check(!self.rebalance_timeout.is_zero(), || {
            "GroupConfig::rebalance_timeout (max.poll.interval.ms) must be > 0, got 0s".into()
        })?;
        check(self.heartbeat_interval < self.session_timeout, || {
            format!(
                "GroupConfig::heartbeat_interval (heartbeat.interval.ms) must be below the \
                 session timeout {:?}, got {:?}",
                self.session_timeout, self.heartbeat_interval
            )
        })?;
        crate::config::check_durations(
            "GroupConfig",
            &[
                ("session_timeout", Some(self.session_timeout), false),
                ("rebalance_timeout", Some(self.rebalance_timeout), false),
                // Zero would heartbeat in a loop, flooding the coordinator.
                ("heartbeat_interval", Some(self.heartbeat_interval), false),
                ("auto_commit", self.auto_commit, false),
                ("metadata_max_age", Some(self.metadata_max_age), true),
            ],
        )?;
        self.fetch.validate()
    }
}

crate::config::with_setters! { GroupConfig {
    /// Sets [`group_id`](Self::group_id) (Java `group.id`).
    with_group_id(group_id: into String);
    /// Sets [`topics`](Self::topics) (Java `subscribe(topics)`).
    with_topics(topics: Vec<String>);
    /// Sets [`session_timeout`](Self::session_timeout) (Java `session.timeout.ms`).
    with_session_timeout(session_timeout: Duration);
    /// Sets [`rebalance_timeout`](Self::rebalance_timeout) (Java `max.poll.interval.ms`).
    with_rebalance_timeout(rebalance_timeout: Duration);
    /// Sets [`heartbeat_interval`](Self::heartbeat_interval) (Java `heartbeat.interval.ms`).
    with_heartbeat_interval(heartbeat_interval: Duration);
    /// Sets [`instance_id`](Self::instance_id) (Java `group.instance.id`).
    with_instance_id(instance_id: some String);
    /// Sets [`assignors`](Self::assignors) (Java `partition.assignment.strategy`).
    with_assignors(assignors: Vec<Assignor>);
    /// Sets [`auto_commit`](Self::auto_commit) to `Some` (Java `enable.auto.commit` with `auto.commit.interval.ms`).
    with_auto_commit(auto_commit: some Duration);
    /// Sets [`metadata_max_age`](Self::metadata_max_age) (Java `metadata.max.age.ms`).
    with_metadata_max_age(metadata_max_age: Duration);
    /// Sets [`fetch`](Self::fetch) (the Java consumer's fetch settings).
    with_fetch(fetch: FetchConfig);
}}
