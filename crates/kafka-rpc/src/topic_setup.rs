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
/// use kafka_rpc::TopicOptions;
///
/// // Reply topics created with `retention.ms` = 600000 and 32 partitions per request topic.
/// let topics = TopicOptions::default()
///     .with_request_partitions(32)
///     .with_reply_retention(Duration::from_secs(600));
/// assert_eq!(topics.reply_retention, Some(Duration::from_secs(600)));
/// topics.validate().expect("valid");
/// assert!(TopicOptions::default().with_request_partitions(0).validate().is_err());
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
#[non_exhaustive]
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

impl TopicOptions {
    /// Checks the settings, as [`Server::new`](crate::Server::new) and
    /// [`RpcClient::connect`](crate::RpcClient::connect) do before creating anything: at least
    /// one partition per topic, a replication factor of at least 1 (or -1, the broker's
    /// default), and no retention of zero.
    ///
    /// # Errors
    ///
    /// [`RpcError::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<(), RpcError> {
        use crate::client::check;
        for (name, value) in [
            ("request_partitions", self.request_partitions),
            ("reply_partitions", self.reply_partitions),
        ] {
            check(value >= 1, || {
                format!("TopicOptions::{name} must be >= 1, got {value}")
            })?;
        }
        check(
            self.replication_factor >= 1 || self.replication_factor == -1,
            || {
                format!(
                    "TopicOptions::replication_factor must be >= 1 (or -1: the broker's \
                     default), got {}",
                    self.replication_factor
                )
            },
        )?;
        for (name, value) in [
            ("request_retention", self.request_retention),
            ("reply_retention", self.reply_retention),
            ("completion_retention", self.completion_retention),
            ("dead_letter_retention", self.dead_letter_retention),
        ] {
            check(value.is_none_or(|d| !d.is_zero()), || {
                format!("TopicOptions::{name} (retention.ms) must be > 0 when set, got 0s")
            })?;
        }
        Ok(())
    }
}

crate::client::with_setters! { TopicOptions {
    /// Sets [`request_partitions`](Self::request_partitions) (`kafka-topics.sh --partitions`).
    with_request_partitions(request_partitions: i32);
    /// Sets [`reply_partitions`](Self::reply_partitions) (`kafka-topics.sh --partitions`).
    with_reply_partitions(reply_partitions: i32);
    /// Sets [`replication_factor`](Self::replication_factor) (`kafka-topics.sh --replication-factor`).
    with_replication_factor(replication_factor: i16);
    /// Sets [`request_retention`](Self::request_retention) (topic config `retention.ms`).
    with_request_retention(request_retention: some Duration);
    /// Sets [`reply_retention`](Self::reply_retention) (topic config `retention.ms`).
    with_reply_retention(reply_retention: some Duration);
    /// Sets [`completion_retention`](Self::completion_retention) (topic config `retention.ms`).
    with_completion_retention(completion_retention: some Duration);
    /// Sets [`dead_letter_retention`](Self::dead_letter_retention) (topic config `retention.ms`).
    with_dead_letter_retention(dead_letter_retention: some Duration);
}}

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
        let new = NewTopic::new(topic, partitions)
            .with_replication_factor(replication_factor)
            .with_configs(configs.to_vec());
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
