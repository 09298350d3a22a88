//! Creating the topics kafka-rpc needs on first use.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use krpc_kafka::{KafkaClient, NewTopic};

use crate::error::RpcError;

/// Partitions, replication and retention of the topics kafka-rpc creates. They apply when a
/// topic is created; a topic that exists keeps its settings (change them with
/// `kafka-configs.sh --alter`).
///
/// Retention is each topic's `retention.ms` topic config (None: the broker's
/// `log.retention.ms`, 7 days on Apache Kafka). Every kind of topic gets what its records are
/// for: requests wait for a server; replies are read within a call's timeout; completions
/// rebuild the dedup window, which looks back `ServerOptions::dedup_max_age` (a server refuses
/// to start with a shorter completion retention); dead letters wait for a person.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use kafka_rpc::{topic_setup::TopicKind, TopicOptions};
///
/// let topics = TopicOptions {
///     reply_retention: Some(Duration::from_secs(600)),
///     ..TopicOptions::default()
/// };
/// assert_eq!(
///     topics.configs(TopicKind::Replies),
///     vec![("retention.ms".to_string(), "600000".to_string())]
/// );
/// assert!(topics.configs(TopicKind::Requests).is_empty());
/// ```
///
/// With the `serde` feature it reads from a config file: keys are the field names, each
/// optional (a missing one keeps its [`Default`]), unknown keys refused, retentions humantime
/// strings (`"1h"`, `"30days"`). A retention whose default is set cannot be unset to the
/// broker's default from a file (TOML has no null): give a long one instead.
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct TopicOptions {
    /// Partitions of each service's request topic (the most servers that can share its load;
    /// `kafka-topics.sh --partitions`). Default 16.
    pub request_partitions: i32,
    /// Partitions of the shared reply topic (client slots). Default 16.
    pub reply_partitions: i32,
    /// Replication factor (-1: the broker's `default.replication.factor`;
    /// `kafka-topics.sh --replication-factor`). Default -1.
    pub replication_factor: i16,
    /// `retention.ms` of request topics. Default `None`: the broker's default, as for any
    /// topic holding work (one-way jobs may wait for servers that long).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub request_retention: Option<Duration>,
    /// `retention.ms` of reply topics. Default 1 hour: a reply is read within its call's
    /// timeout (30 s by default) or never.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub reply_retention: Option<Duration>,
    /// `retention.ms` of completion topics. Default 24 hours; at least the servers'
    /// `dedup_max_age` (10 minutes by default). Servers also trim it to their dedup window
    /// (DeleteRecords), so it stays small whatever this says.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub completion_retention: Option<Duration>,
    /// `retention.ms` of dead-letter topics. Default 30 days: long enough for a person to look.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub dead_letter_retention: Option<Duration>,
}

impl Default for TopicOptions {
    fn default() -> Self {
        Self {
            request_partitions: 16,
            reply_partitions: 16,
            replication_factor: -1,
            request_retention: None,
            reply_retention: Some(Duration::from_secs(3600)),
            completion_retention: Some(Duration::from_secs(24 * 3600)),
            dead_letter_retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// The kinds of topic kafka-rpc creates (wire/WIRE.md, "Topics").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) enum TopicKind {
    /// A service's request topic.
    Requests,
    /// A reply topic.
    Replies,
    /// A service's completion topic.
    Completions,
    /// A service's dead-letter topic.
    DeadLetters,
}

impl TopicOptions {
    /// The retention of `kind` (see the fields).
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) fn retention(&self, kind: TopicKind) -> Option<Duration> {
        match kind {
            TopicKind::Requests => self.request_retention,
            TopicKind::Replies => self.reply_retention,
            TopicKind::Completions => self.completion_retention,
            TopicKind::DeadLetters => self.dead_letter_retention,
        }
    }

    /// The topic configs a topic of `kind` is created with (`retention.ms`, when set).
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) fn configs(&self, kind: TopicKind) -> Vec<(String, String)> {
        self.retention(kind)
            .map(|r| ("retention.ms".to_string(), r.as_millis().to_string()))
            .into_iter()
            .collect()
    }
}

/// Remembers which topics exist so each is created at most once per process.
#[derive(Default)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) struct TopicCache {
    known: Mutex<HashSet<String>>,
}

impl TopicCache {
    /// Creates `topic` with `partitions` unless it exists (or we made sure of it before).
    pub async fn ensure(
        &self,
        client: &KafkaClient,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<(), RpcError> {
        if self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        let mut new = NewTopic::new(topic, partitions).replication_factor(replication_factor);
        new.configs = configs.to_vec();
        client
            .create_topics(&[new], true)
            .await
            .map_err(|e| RpcError::kafka(format!("creating topic {topic}"), e))?;
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string());
        Ok(())
    }

    /// Whether `topic` is known to exist.
    pub fn known(&self, topic: &str) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
    }

    /// Records that `topic` exists.
    pub fn remember(&self, topic: &str) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string());
    }

    /// [`ensure`](Self::ensure)s `topic`, then returns how many partitions it has (it may
    /// have existed with another count).
    pub async fn ensure_counted(
        &self,
        client: &KafkaClient,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<i32, RpcError> {
        self.ensure(client, topic, partitions, replication_factor, configs)
            .await?;
        client
            .partition_count(topic)
            .await
            .map_err(|e| RpcError::kafka(format!("reading the partitions of {topic}"), e))
    }
}
