//! Creating topics and waiting until they can be used.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::KafkaClient;
use crate::error::{check_code, Error, Result};

/// A topic to create (Java: `NewTopic` of the admin client).
///
/// `#[non_exhaustive]`: start from [`NewTopic::new`] and chain the `with_*` setters.
/// [`KafkaClient::create_topics`] checks each ([`NewTopic::validate`]) before sending anything.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor (-1: the broker's default).
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...), sent with CreateTopics; a key
    /// not given keeps the broker's default. A config the broker does not know is its
    /// INVALID_CONFIG error.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the broker's default replication factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    /// Adds one topic config to [`configs`](Self::configs), e.g.
    /// `.with_config("retention.ms", "3600000")`.
    #[must_use]
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }

    /// Checks the topic as [`KafkaClient::create_topics`] does before sending: a name, at
    /// least one partition (or -1, the broker's `num.partitions`), a replication factor of at
    /// least 1 (or -1, the broker's `default.replication.factor`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check(!self.name.is_empty(), || {
            "NewTopic::name must not be empty, got \"\"".into()
        })?;
        check(self.partitions >= 1 || self.partitions == -1, || {
            format!(
                "NewTopic::partitions of {:?} must be >= 1 (or -1: the broker's default), got {}",
                self.name, self.partitions
            )
        })?;
        check(
            self.replication_factor >= 1 || self.replication_factor == -1,
            || {
                format!(
                    "NewTopic::replication_factor of {:?} must be >= 1 (or -1: the broker's \
                     default), got {}",
                    self.name, self.replication_factor
                )
            },
        )
    }
}

crate::config::with_setters! { NewTopic {
    /// Sets [`name`](Self::name).
    with_name(name: into String);
    /// Sets [`partitions`](Self::partitions) (`kafka-topics.sh --partitions`).
    with_partitions(partitions: i32);
    /// Sets [`replication_factor`](Self::replication_factor) (`kafka-topics.sh --replication-factor`).
    with_replication_factor(replication_factor: i16);
    /// Sets all of [`configs`](Self::configs) (`kafka-topics.sh --config`).
    with_configs(configs: Vec<(String, String)>);
}}

impl KafkaClient {
    /// Creates `topics` on the controller; a topic that already exists is fine when
    /// `if_not_exists`. Waits until every created topic has a leader for every partition.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] before anything is sent when a topic does not pass
    /// [`NewTopic::validate`]; the broker's errors otherwise.
    pub async fn create_topics(&self, topics: &[NewTopic], if_not_exists: bool) -> Result<()> {
        for topic in topics {
            topic.validate()?;
        }
        let timeout = self.config().request_timeout;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let conn = self.controller().await?;
        let resp = conn.send(&req).await?;
        for result in &resp.topics {
            let name = result.name.0.to_string();
            if if_not_exists && result.error_code == ResponseError::TopicAlreadyExists.code() {
                continue;
            }
            check_code(
                result.error_code,
                conn.broker(),
                ApiKey::CreateTopics,
                || {
                    let msg = result
                        .error_message
                        .as_ref()
                        .map(|m| format!(": {}", m.as_str()));
                    format!(" topic {name}{}", msg.unwrap_or_default())
                },
            )?;
        }
        for t in topics {
            self.wait_for_leaders(&t.name, timeout).await?;
        }
        Ok(())
    }

    /// Deletes `topics` (DeleteTopics) on the controller and forgets their cached metadata. A
    /// topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn delete_topics(&self, topics: &[&str]) -> Result<()> {
        let timeout = self.config().request_timeout;
        let conn = self.controller().await?;
        let version = conn.version::<DeleteTopicsRequest>()?;
        let names = || {
            topics
                .iter()
                .map(|t| TopicName(StrBytes::from_string(t.to_string())))
        };
        // v6+ names topics in `topics`; earlier versions in `topic_names`.
        let req = DeleteTopicsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
        let req = if version >= 6 {
            req.with_topics(
                names()
                    .map(|n| DeleteTopicState::default().with_name(Some(n)))
                    .collect(),
            )
        } else {
            req.with_topic_names(names().collect())
        };
        let resp = conn.send(&req).await?;
        for (i, result) in resp.responses.iter().enumerate() {
            let name = result
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .unwrap_or_else(|| topics.get(i).map(|t| t.to_string()).unwrap_or_default());
            check_code(
                result.error_code,
                conn.broker(),
                ApiKey::DeleteTopics,
                || format!(" topic {name}"),
            )?;
        }
        for t in topics {
            self.invalidate_topic(t);
        }
        Ok(())
    }

    /// Grows `topic` to `total` partitions (CreatePartitions, KIP-195; the broker places the
    /// new ones), then waits until every partition has a leader and the cached metadata shows
    /// the new count. Kafka never shrinks a topic: `total` below the current count is the
    /// broker's INVALID_PARTITIONS error; equal to it is a no-op here. A broker without the API
    /// (nisshi 0.8.1) gives [`Error::NoVersionMatch`].
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        self.refresh_metadata(&[topic]).await?;
        if self.partition_count(topic).await? == total {
            return Ok(());
        }
        let timeout = self.config().request_timeout;
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_count(total)
                .with_assignments(None)]);
        let conn = self.controller().await?;
        let resp = conn.send(&req).await?;
        for result in &resp.results {
            check_code(
                result.error_code,
                conn.broker(),
                ApiKey::CreatePartitions,
                || {
                    let msg = result
                        .error_message
                        .as_ref()
                        .map(|m| format!(": {}", m.as_str()));
                    format!(
                        " topic {topic} to {total} partitions{}",
                        msg.unwrap_or_default()
                    )
                },
            )?;
        }
        // The brokers learn of the new partitions a little after the controller answers.
        let cfg = self.config();
        let mut backoff =
            crate::backoff::Backoff::new(cfg.retry_backoff, cfg.retry_backoff_max, timeout);
        loop {
            self.wait_for_leaders(topic, timeout).await?;
            let now = self.partition_count(topic).await?;
            if now >= total {
                return Ok(());
            }
            if !backoff.wait().await {
                return Err(Error::Malformed {
                    broker: conn.broker().to_string(),
                    what: "CreatePartitions outcome".into(),
                    reason: format!(
                        "{topic} still shows {now} partitions {timeout:?} after growing it to {total}"
                    ),
                });
            }
        }
    }

    /// Waits until `topic` exists with a leader for every partition, or `timeout` passes.
    pub async fn wait_for_leaders(&self, topic: &str, timeout: Duration) -> Result<()> {
        let cfg = self.config();
        let mut backoff =
            crate::backoff::Backoff::new(cfg.retry_backoff, cfg.retry_backoff_max, timeout);
        loop {
            self.refresh_metadata(&[topic]).await?;
            let md = self.metadata_snapshot();
            if let Some(t) = md.topics.get(topic) {
                if t.partitions
                    .iter()
                    .all(|p| md.brokers.contains_key(&p.leader))
                {
                    return Ok(());
                }
            }
            if !backoff.wait().await {
                return Err(match md.topics.get(topic) {
                    None => Error::UnknownTopic {
                        topic: topic.into(),
                    },
                    Some(t) => Error::NoLeader {
                        topic: topic.into(),
                        partition: t
                            .partitions
                            .iter()
                            .find(|p| !md.brokers.contains_key(&p.leader))
                            .map_or(-1, |p| p.id),
                    },
                });
            }
        }
    }
}
