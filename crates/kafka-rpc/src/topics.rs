//! Creating the topics kafka-rpc needs on first use.

use std::collections::HashSet;
use std::sync::Mutex;

use kafka_wire::{Client, NewTopic};

use crate::error::RpcError;

/// Partitions and replication of the topics kafka-rpc creates.
#[derive(Debug, Clone)]
pub struct TopicOptions {
    /// Partitions of each service's request topic (the most servers that can share its load).
    pub request_partitions: i32,
    /// Partitions of the shared reply topic (client slots).
    pub reply_partitions: i32,
    /// Replication factor (-1: the broker's default).
    pub replication_factor: i16,
}

impl Default for TopicOptions {
    fn default() -> Self {
        Self {
            request_partitions: 16,
            reply_partitions: 16,
            replication_factor: -1,
        }
    }
}

/// Remembers which topics exist so each is created at most once per process.
#[derive(Default)]
pub struct TopicCache {
    known: Mutex<HashSet<String>>,
}

impl TopicCache {
    /// Creates `topic` with `partitions` unless it exists (or we made sure of it before).
    pub async fn ensure(
        &self,
        client: &Client,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<(), RpcError> {
        if self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        let new = NewTopic::new(topic, partitions).replication_factor(replication_factor);
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
        client: &Client,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<i32, RpcError> {
        self.ensure(client, topic, partitions, replication_factor)
            .await?;
        client
            .partition_count(topic)
            .await
            .map_err(|e| RpcError::kafka(format!("reading the partitions of {topic}"), e))
    }
}
