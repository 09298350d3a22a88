//! The serving side: [`Server`] consumes a service's request topic as one member of the
//! service's consumer group, runs handlers concurrently, replies, and commits an offset only
//! once every request below it has been answered.

mod completions;
mod dead_letter;
mod dedup;
mod dispatch;
pub mod handler;
mod options;
mod progress;
pub mod stats;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_wire::{GroupConfig, GroupConsumer, GroupEvent, OffsetReset, Producer, ProducerConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Semaphore;

pub use options::ServerOptions;
pub use stats::{Counters, ServerStats};

use crate::error::{HandlerError, RpcError};
use crate::naming::{
    check_service, completions_topic, dead_letter_topic, request_topic, server_group,
};
use crate::topics::TopicCache;
use dispatch::Dispatcher;
use handler::Handler;
use progress::Progress;

/// How long a hole in a kafka-rpc topic is refetched before it is accepted (see
/// [`kafka_wire::FetchConfig::hole_wait`]; kafka-rpc's topics are never compacted).
pub(crate) const HOLE_WAIT: Duration = Duration::from_secs(5);

/// A server of one service: register methods, then [`run`](Server::run).
pub struct Server {
    kafka: kafka_wire::Client,
    options: ServerOptions,
    handlers: HashMap<String, Handler>,
    counters: Arc<Counters>,
}

impl Server {
    /// A server with no methods yet.
    pub fn new(kafka: kafka_wire::Client, options: ServerOptions) -> Self {
        Self {
            kafka,
            options,
            handlers: HashMap::new(),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Registers an async method taking the tuple of its arguments `A`.
    pub fn method<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.handlers
            .insert(name.to_string(), handler::from_async(f));
        self
    }

    /// Registers a blocking method (run on the blocking thread pool).
    pub fn method_blocking<A, R, F>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        self.handlers
            .insert(name.to_string(), handler::from_blocking(f));
        self
    }

    /// The live counters (clone the `Arc` before `run` to read them while it serves).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Serves until `shutdown` resolves, then stops fetching, finishes and answers the requests
    /// in hand, commits, and leaves the group. Returns the final counters.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<ServerStats, RpcError> {
        let o = &self.options;
        check_service(&o.service).map_err(RpcError::InvalidArgument)?;
        if o.concurrency == 0 {
            return Err(RpcError::InvalidArgument(
                "concurrency must be at least 1".into(),
            ));
        }
        let topic = request_topic(&o.service);
        let topics = TopicCache::default();
        let (parts, rf) = (o.topics.request_partitions, o.topics.replication_factor);
        topics.ensure(&self.kafka, &topic, parts, rf).await?;
        // Completions and dead letters are partitioned like the requests they describe.
        let request_parts = self
            .kafka
            .partition_count(&topic)
            .await
            .map_err(|e| RpcError::kafka(format!("reading {topic}"), e))?;
        for extra in [completions_topic(&o.service), dead_letter_topic(&o.service)] {
            topics
                .ensure(&self.kafka, &extra, request_parts, rf)
                .await?;
        }
        let mut group = GroupConfig::new(server_group(&o.service), &[topic.as_str()]);
        group.session_timeout = o.session_timeout;
        group.heartbeat_interval = o.heartbeat_interval;
        group.rebalance_timeout = o.rebalance_timeout;
        // Requests sent before any server of the service ever ran are served, not skipped.
        group.offset_reset = OffsetReset::Earliest;
        group.fetch.max_wait = o.fetch_max_wait;
        // One unreadable batch (a zstd one, say) must not stop the service: step over it, count it.
        group.fetch.skip_undecodable = true;
        // Request topics are never compacted: a hole is a broker showing records late.
        group.fetch.hole_wait = Some(HOLE_WAIT);
        let mut consumer = GroupConsumer::new(self.kafka.clone(), group)
            .map_err(|e| RpcError::kafka("joining the server group", e))?;
        let dispatcher = Arc::new(Dispatcher {
            producer: Producer::new(
                self.kafka.clone(),
                ProducerConfig {
                    linger: Duration::ZERO,
                    ..ProducerConfig::default()
                },
            ),
            handlers: self.handlers,
            counters: self.counters.clone(),
            server_id: o.server_id.clone(),
            completions_topic: completions_topic(&o.service),
            dead_letter_topic: dead_letter_topic(&o.service),
            max_request_bytes: o.max_request_bytes,
            dedup_limits: (o.dedup_window, o.dedup_max_age),
            security: o.security.clone(),
            windows: Mutex::new(HashMap::new()),
            progress: Mutex::new(Progress::default()),
            keyed: Mutex::new(HashMap::new()),
            next_seq: Default::default(),
            finished: tokio::sync::Notify::new(),
        });
        let permits = Arc::new(Semaphore::new(o.concurrency));
        tracing::info!(service = %o.service, server = %o.server_id, %topic, "serving");
        let mut commit_tick = tokio::time::interval(o.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let outcome: Result<(), RpcError> = loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                _ = commit_tick.tick() => {
                    self.counters.undecodable_batches.store(consumer.skipped_batches(), std::sync::atomic::Ordering::Relaxed);
                    dispatcher.commit(&consumer).await;
                }
                event = consumer.poll() => match event {
                    Err(e) => break Err(RpcError::kafka(format!("consuming {topic}"), e)),
                    Ok(GroupEvent::Assigned(a)) => {
                        for &p in a.get(&topic).map(Vec::as_slice).unwrap_or_default() {
                            let loaded = completions::load_window(&self.kafka, &dispatcher.completions_topic, p, dispatcher.dedup_limits, o.drain_timeout).await;
                            match loaded {
                                Ok(window) => {
                                    dispatcher.windows().insert(p, window);
                                }
                                Err(e) => tracing::warn!(partition = p, error = %e, "dedup window not loaded; redeliveries of this partition may run again"),
                            }
                        }
                        tracing::info!(service = %o.service, assignment = ?a, "partitions assigned");
                    }
                    Ok(GroupEvent::Revoked(a)) => {
                        tracing::info!(service = %o.service, revoked = ?a, "partitions revoked; finishing their requests");
                        dispatcher.drain(o.drain_timeout).await;
                        dispatcher.commit(&consumer).await;
                        let mut progress = dispatcher.progress();
                        for (t, parts) in &a {
                            for p in parts {
                                progress.forget(t, *p);
                                dispatcher.windows().remove(p);
                            }
                        }
                    }
                    Ok(GroupEvent::Records(records)) => {
                        for record in records {
                            let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                            dispatcher.start(record, permit);
                        }
                    }
                },
            }
        };
        tracing::info!(service = %o.service, "stopping: finishing requests in hand");
        dispatcher.drain(o.drain_timeout).await;
        dispatcher.commit(&consumer).await;
        if let Err(e) = consumer.close().await {
            tracing::warn!(error = %e, "leaving the group failed");
        }
        outcome?;
        Ok(self.counters.snapshot())
    }
}
