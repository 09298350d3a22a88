//! The serving side: [`Server`] consumes a service's request topic as one member of the
//! service's consumer group, runs handlers concurrently, replies, and commits an offset only
//! once every request below it has been answered.

mod completion_writer;
mod completions;
pub mod dead_letter;
mod dedup;
mod dispatch;
mod options;
mod progress;
mod pump;
pub mod stats;
mod trim;

use std::collections::HashMap;
use std::future::Future;

use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use krpc_kafka::{GroupConfig, GroupConsumer, GroupEvent, OffsetReset, Producer, ProducerConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering::Relaxed;
use tokio_util::sync::CancellationToken;

pub use options::ServerOptions;
pub use stats::{Counters, ServerStats};

use crate::codec::record::ServerCodec;
use crate::error::{HandlerError, RpcError};
use crate::naming::{
    check_service, completions_topic, dead_letter_topic, request_topic, server_group,
};
use crate::service::{Methods, RequestContext, Service};
use crate::topic_setup::{TopicCache, TopicKind};
use dispatch::{Dispatcher, Pipeline};

/// How long a hole in a kafka-rpc topic is refetched before it is accepted (see
/// [`krpc_kafka::FetchConfig::hole_wait`]). kafka-rpc's topics are never compacted, so on
/// Apache Kafka a hole never shows and this costs nothing; on a broker that shows a later
/// batch before an earlier one, jumping the hole loses the earlier records for good, while
/// waiting only delays them. 20 s: the longest hole measured on nisshi 0.8.1 under eight
/// racing producers on two loaded cores was over 5 s (`wire_roundtrip`'s racing-producers test
/// uses the same 20 s).
pub(crate) const HOLE_WAIT: Duration = Duration::from_secs(20);

/// How many partitions' dedup windows an assignment loads at once.
const WINDOW_LOADS_AT_ONCE: usize = 8;

/// How many requests `record`, read from a service's completions topic
/// ([`naming::completions_topic`](crate::naming::completions_topic)), completes: 1 for a
/// record of one completion, the count in its `krpc-completions` header for a coalesced one
/// ([`ServerOptions::coalesce_completions`], wire/WIRE.md section 8). Reads the headers only.
/// `None`: not a completion record this version reads (another wire version, or damaged).
/// For operations tools counting answered requests (`krpc status`).
pub fn completed_requests(record: &krpc_kafka::ConsumerRecord) -> Option<usize> {
    crate::envelope::Completion::count(record).ok()
}

/// A server of one service: register its [`Service`] (or methods one by one), then
/// [`run`](Server::run).
///
/// # Examples
///
/// ```no_run
/// use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
/// use kafka_rpc::{HandlerError, Server, ServerOptions};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let kafka = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let server = Server::new(kafka, ServerOptions::new("Sum"))?
///     .method("add", |(a, b): (i64, i64)| async move {
///         a.checked_add(b).ok_or_else(|| HandlerError::from("the sum overflows"))
///     })
///     .method_blocking("echo", |(text,): (String,)| Ok::<_, HandlerError>(text));
/// // Serves until Ctrl-C, then drains running calls, commits and leaves the group.
/// let stats = server
///     .run(async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await?;
/// println!("stopped: {stats}");
/// # Ok(())
/// # }
/// ```
pub struct Server {
    kafka: krpc_kafka::KafkaClient,
    options: ServerOptions,
    /// Methods registered one by one ([`Server::method`] and siblings).
    methods: Methods,
    /// A service registered whole ([`Server::service`]).
    service: Option<Arc<dyn Service>>,
    counters: Arc<Counters>,
}

impl Server {
    /// A server with no methods yet.
    ///
    /// # Errors
    ///
    /// [`RpcError::InvalidArgument`] naming the setting when `options` does not pass
    /// [`ServerOptions::validate`] (nothing touches the cluster before [`run`](Server::run)).
    pub fn new(kafka: krpc_kafka::KafkaClient, options: ServerOptions) -> Result<Self, RpcError> {
        options.validate()?;
        Ok(Self {
            kafka,
            options,
            methods: Methods::new(),
            service: None,
            counters: Arc::new(Counters::default()),
        })
    }

    /// Serves `service` (for example what `#[kafka_rpc::service]` generates for a trait
    /// implementation). A server serves one `Service`: [`run`](Server::run) refuses a server
    /// given both a `Service` and methods registered one by one, and a service whose
    /// [`Service::name`] differs from [`ServerOptions::service`].
    pub fn service(mut self, service: impl Service) -> Self {
        self.service = Some(Arc::new(service));
        self
    }

    /// Registers an async method taking the tuple of its arguments `A` (the dynamic way to
    /// build a [`Service`]). Arguments that do not decode as `A` are answered
    /// `INVALID_ARGUMENT`; a handler that panics, `INTERNAL`.
    pub fn method<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.methods.add(name, f);
        self
    }

    /// Registers an async method taking the request context and the tuple of its arguments.
    pub fn method_with_context<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(RequestContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.methods.add_with_context(name, f);
        self
    }

    /// Registers a blocking method (run on the blocking thread pool). A blocking method cannot
    /// be stopped from outside: at its deadline its permit is released and the caller answered,
    /// but the thread runs on until the function returns (check
    /// [`RequestContext::is_cancelled`] in long loops).
    pub fn method_blocking<A, R, F>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        self.methods.add_blocking(name, f);
        self
    }

    /// Declares the parameter names of `method`, in order, so that callers of the legacy
    /// (Python) format may pass keyword arguments: they are put in place by name.
    pub fn parameters(mut self, method: &str, names: &[&str]) -> Self {
        self.methods.set_parameters(method, names);
        self
    }

    /// The live counters (clone the `Arc` before `run` to read them while it serves).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Serves until `shutdown` resolves, then stops fetching, finishes and answers the requests
    /// in hand for at most [`ServerOptions::drain_timeout`], cancels the handlers still
    /// running (their contexts are told; after [`ServerOptions::cancel_grace`] they are
    /// dropped, their requests left uncommitted for the partition's next owner), commits, and
    /// leaves the group. No request task outlives it (a blocking handler's thread runs on
    /// until its function returns: threads cannot be stopped). Returns the final counters.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<ServerStats, RpcError> {
        let o = &self.options;
        // The options were checked by `Server::new` (ServerOptions::validate) and cannot have
        // changed since; what needs the registered service is checked here.
        let service: Arc<dyn Service> = match (self.service, self.methods.is_empty()) {
            (Some(_), false) => {
                return Err(RpcError::InvalidArgument(
                    "a server serves one Service: it was given both a Service and methods registered one by one".into(),
                ))
            }
            (Some(s), true) => s,
            (None, _) => Arc::new(self.methods),
        };
        if let Some(name) = service.name() {
            if name != o.service {
                return Err(RpcError::InvalidArgument(format!(
                    "the service {name:?} cannot be served as {:?} (ServerOptions::service)",
                    o.service
                )));
            }
        }
        let names = TopicNames::of(o)?;
        let topic = names.requests.clone();
        let topics = TopicCache::default();
        let rf = o.topics.replication_factor;
        // Completions and dead letters are partitioned like the requests they describe.
        let configs = |kind| o.topics.configs(kind);
        let mut request_parts = topics
            .ensure_counted(
                &self.kafka,
                &topic,
                names.partitions,
                rf,
                &configs(TopicKind::Requests),
            )
            .await?;
        for (extra, kind) in [
            (&names.completions, TopicKind::Completions),
            (&names.dead_letters, TopicKind::DeadLetters),
        ] {
            topics
                .ensure(&self.kafka, extra, request_parts, rf, &configs(kind))
                .await?;
        }
        // The one place the record format and sealing of this server are chosen.
        let codec = match &o.legacy {
            None => ServerCodec::Native {
                sealing: o.security.clone(),
                replay_window: o.dedup_max_age,
            },
            Some(legacy) => {
                let reply_topic = crate::legacy::client_topic(&o.service);
                let reply_partitions = topics
                    .ensure_counted(
                        &self.kafka,
                        &reply_topic,
                        names.partitions,
                        rf,
                        &configs(TopicKind::Replies),
                    )
                    .await?;
                ServerCodec::Legacy {
                    format: legacy.format.clone(),
                    reply_topic,
                    reply_partitions,
                }
            }
        };
        let group = o.group_config()?;
        let consumer = GroupConsumer::new(self.kafka.clone(), group)
            .map_err(|e| RpcError::kafka("joining the server group", e))?;
        let committer = consumer.committer();
        let producer = Producer::new(
            self.kafka.clone(),
            ProducerConfig::default().with_linger(Duration::ZERO),
        )
        .map_err(|e| RpcError::kafka("the reply producer's settings", e))?;
        let outbox: Arc<dyn dispatch::Outbox> = Arc::new(producer);
        let dispatcher = Arc::new(Dispatcher {
            completion_writer: completion_writer::CompletionWriter::new(
                outbox.clone(),
                &names.completions,
                o.coalesce_completions,
            ),
            outbox,
            service,
            service_name: o.service.clone(),
            codec,
            counters: self.counters.clone(),
            server_id: o.server_id.clone(),
            completions_topic: names.completions.clone(),
            dead_letter_topic: names.dead_letters.clone(),
            max_request_bytes: o.max_request_bytes,
            dedup_limits: (o.dedup_window, o.dedup_max_age),
            windows: Mutex::new(HashMap::new()),
            side_partitions: AtomicI32::new(request_parts),
            stopping: CancellationToken::new(),
            cancel_grace: o.cancel_grace,
        });
        let mut pipeline = Pipeline::new(dispatcher.clone(), o.concurrency);
        self.counters.bind(&o.service);
        tracing::info!(service = %o.service, server = %o.server_id, %topic, group = %names.group, legacy = o.legacy.is_some(), "serving");
        let mut commit_tick = tokio::time::interval(o.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        // The consumer polls in a task of its own, so a fetch is never cancelled by a commit
        // tick or a finishing request (a fetch slower than the commit interval would otherwise
        // never complete), and this loop never waits on anything but its select.
        let stop_polling = CancellationToken::new();
        let (mut events, pump) = pump::spawn(consumer, stop_polling.clone());
        let trimmer = o.completion_trim_interval.map(|every| {
            tokio::spawn(trim::run(
                self.kafka.clone(),
                names.completions.clone(),
                o.dedup_window,
                every,
                stop_polling.clone(),
                self.counters.clone(),
            ))
        });
        let outcome: Result<(), RpcError> = loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                _ = commit_tick.tick() => {
                    // A commit waits for the coordinator, up to the request timeout and its
                    // connect attempts during an outage: shutdown is heard meanwhile (a commit
                    // cut short is made again at the next one).
                    tokio::select! {
                        biased;
                        _ = &mut shutdown => break Ok(()),
                        () = pipeline.commit(&committer) => {}
                    }
                }
                () = pipeline.step(), if pipeline.has_work() => {}
                polled = events.recv(), if pipeline.may_admit() => {
                    let Some(polled) = polled else {
                        break Err(RpcError::Closed);
                    };
                    self.counters.undecodable_batches.set_total(polled.undecodable_batches);
                    self.counters.reset_skipped_offsets.set_total(polled.reset_skipped_offsets);
                    self.counters.consumer_lag(polled.lags.get(&topic));
                    match polled.event {
                        Err(e) => break Err(RpcError::kafka(format!("consuming {topic}"), e)),
                        Ok(GroupEvent::Assigned(a)) => {
                            Counters::bump(&self.counters.assignments);
                            let completion_parts;
                            (request_parts, completion_parts) =
                                follow_request_partitions(&self.kafka, &names, request_parts).await;
                            dispatcher.side_partitions.store(completion_parts, Relaxed);
                            // The dedup windows load concurrently (a few at a time; each gives
                            // up reading at `drain_timeout`), and shutdown is heard meanwhile: a
                            // slow broker or many partitions cannot hold the loop deaf.
                            let parts: Vec<i32> = a
                                .get(&topic)
                                .map(Vec::as_slice)
                                .unwrap_or_default()
                                .iter()
                                .copied()
                                // Past completion_parts: logged by follow_request_partitions.
                                .filter(|&p| p < completion_parts)
                                .collect();
                            let loads = futures::stream::iter(parts.into_iter().map(|p| {
                                let (kafka, dispatcher) = (&self.kafka, &dispatcher);
                                async move {
                                    let loaded = completions::load_window(
                                        kafka,
                                        &dispatcher.completions_topic,
                                        p,
                                        dispatcher.dedup_limits,
                                        o.drain_timeout,
                                    )
                                    .await;
                                    (p, loaded)
                                }
                            }))
                            .buffer_unordered(WINDOW_LOADS_AT_ONCE)
                            .collect::<Vec<_>>();
                            let loaded = tokio::select! {
                                biased;
                                _ = &mut shutdown => break Ok(()),
                                loaded = loads => loaded,
                            };
                            for (p, loaded) in loaded {
                                match loaded {
                                    Ok(window) => {
                                        dispatcher.windows().insert(p, window);
                                    }
                                    Err(e) => {
                                        tracing::warn!(partition = p, error = %e, "dedup window not loaded; redeliveries of this partition may run again")
                                    }
                                }
                            }
                            tracing::info!(service = %o.service, assignment = ?a, "partitions assigned");
                        }
                        Ok(GroupEvent::Revoked(a)) => {
                            tracing::info!(service = %o.service, revoked = ?a, "partitions revoked; finishing their requests");
                            let revoked: Vec<(&str, i32)> = a
                                .iter()
                                .flat_map(|(t, parts)| parts.iter().map(|&p| (t.as_str(), p)))
                                .collect();
                            pipeline.revoke(&revoked, o.drain_timeout).await;
                            pipeline.commit(&committer).await;
                            for (t, parts) in &a {
                                for p in parts {
                                    pipeline.forget(t, *p);
                                }
                            }
                        }
                        Ok(GroupEvent::Records(records)) => {
                            // An undecodable batch is dead-lettered before anything after it
                            // runs: if it cannot be (after the producer's own retries), the
                            // server stops before any later record could be committed past it,
                            // and the batch is met again by whichever server takes the partition.
                            let mut failed = None;
                            for batch in &polled.skipped {
                                if let Err(e) = dispatcher.dead_letter_batch(batch).await {
                                    failed = Some(e);
                                    break;
                                }
                            }
                            if let Some(e) = failed {
                                break Err(e);
                            }
                            for record in records {
                                pipeline.admit(record);
                            }
                        }
                    }
                    // The consumer polls again only once the event is handled (a revocation
                    // is drained and committed before the group moves on).
                    if let Some(ack) = polled.handled {
                        let _ = ack.send(());
                    }
                }
            }
        };
        tracing::info!(service = %o.service, "stopping: finishing requests in hand");
        stop_polling.cancel();
        if let Some(trimmer) = trimmer {
            let _ = trimmer.await;
        }
        drop(events);
        pipeline.drain(o.drain_timeout).await;
        pipeline.stop().await;
        // The final commit and the LeaveGroup each wait for the coordinator, which during an
        // outage means the request timeout and its connect attempts: one drain_timeout bounds
        // both. Not done in time, the offsets stay where the last commit left them and the
        // group drops this member after its session timeout.
        let leave = async {
            pipeline.commit(&committer).await;
            match pump.await {
                Ok(consumer) => {
                    if let Err(e) = consumer.close().await {
                        tracing::warn!(error = %e, "leaving the group failed");
                    }
                }
                Err(e) => tracing::error!(error = %e, "the consumer task failed"),
            }
        };
        if tokio::time::timeout(o.drain_timeout, leave).await.is_err() {
            tracing::warn!(timeout = ?o.drain_timeout, "the final commit and leaving the group did not finish within drain_timeout (is the cluster reachable?); the group drops this member after its session timeout");
        }
        // This server's part of the process's gauges goes (its counters may outlive it).
        self.counters.release_gauges();
        outcome?;
        Ok(self.counters.snapshot())
    }
}

impl ServerOptions {
    /// The consumer-group settings a server with these options runs with: the service's group
    /// on its request topic, reset policy earliest (requests sent before any server of the
    /// service ever ran, or left below a log start that retention moved, are served from the
    /// first one still stored, never skipped to the end), undecodable batches stepped over and
    /// counted, holes refetched for 20 s (`HOLE_WAIT`).
    pub fn group_config(&self) -> Result<GroupConfig, RpcError> {
        let names = TopicNames::of(self)?;
        let mut group = GroupConfig::new(names.group, &[names.requests.as_str()]);
        group.session_timeout = self.session_timeout;
        group.heartbeat_interval = self.heartbeat_interval;
        group.rebalance_timeout = self.rebalance_timeout;
        group.metadata_max_age = self.metadata_max_age;
        // One policy for "no committed offset" and "out of range": requests are served, not
        // skipped.
        group.fetch.offset_reset = OffsetReset::Earliest;
        group.fetch.max_wait = self.fetch_max_wait;
        group.fetch.isolation_level = self.request_isolation;
        // One unreadable batch must not stop the service: step over it, count it, and copy it
        // raw to the dead-letter topic (before the records after it run, so before any commit
        // passes it).
        group.fetch.skip_undecodable = true;
        group.fetch.keep_skipped = true;
        // Request topics are never compacted: a hole is a broker showing records late.
        group.fetch.hole_wait = Some(HOLE_WAIT);
        Ok(group)
    }
}

/// After a rebalance: notices (and logs) a request topic that grew, shrank or vanished, and grows
/// the completion and dead-letter topics to its partition count (they are written to the
/// partition of the request they describe). Returns the request topic's partition count now
/// and the fewest partitions of the two side topics.
/// A side topic that cannot grow (a broker without CreatePartitions) is logged: the requests of
/// the new partitions are still served and answered, but their completions (dedup after a
/// crash) and dead letters cannot be written.
async fn follow_request_partitions(
    kafka: &krpc_kafka::KafkaClient,
    names: &TopicNames,
    known: i32,
) -> (i32, i32) {
    let now = match kafka.partition_count(&names.requests).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(topic = %names.requests, error = %e, "request topic not found (deleted?); serving whatever the group assigns");
            return (known, known);
        }
    };
    // The fewest partitions of the two side topics.
    let mut completion_parts = now;
    if now != known {
        tracing::warn!(topic = %names.requests, from = known, to = now, "the request topic's partition count changed");
    }
    for side in [&names.completions, &names.dead_letters] {
        let count = match kafka.partition_count(side).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(topic = %side, error = %e, "cannot read the partitions of a side topic");
                continue;
            }
        };
        if count >= now {
            continue;
        }
        match kafka.create_partitions(side, now).await {
            Ok(()) => {
                tracing::info!(topic = %side, from = count, to = now, "grown to follow the request topic")
            }
            Err(e) => {
                completion_parts = completion_parts.min(count);
                tracing::error!(
                    topic = %side,
                    from = count,
                    to = now,
                    error = %e,
                    "cannot grow this topic to follow the request topic: records of request partitions {count}..{now} cannot be written to it"
                )
            }
        }
    }
    (now, completion_parts)
}

/// The topics and group of a served service, native or legacy.
struct TopicNames {
    requests: String,
    completions: String,
    dead_letters: String,
    group: String,
    /// Partitions of the request topic when we create it.
    partitions: i32,
}

impl TopicNames {
    fn of(o: &ServerOptions) -> Result<Self, RpcError> {
        match &o.legacy {
            None => {
                check_service(&o.service).map_err(RpcError::InvalidArgument)?;
                Ok(Self {
                    requests: request_topic(&o.service),
                    completions: completions_topic(&o.service),
                    dead_letters: dead_letter_topic(&o.service),
                    group: server_group(&o.service),
                    partitions: o.topics.request_partitions,
                })
            }
            Some(legacy) => {
                crate::legacy::check_name(&o.service).map_err(RpcError::InvalidArgument)?;
                if o.security.is_some() {
                    return Err(RpcError::InvalidArgument(
                        "payload security is not part of the legacy format (it has its own checksum and cipher settings)".into(),
                    ));
                }
                Ok(Self {
                    requests: crate::legacy::server_topic(&o.service),
                    completions: crate::legacy::completions_topic(&o.service),
                    dead_letters: crate::legacy::dead_letter_topic(&o.service),
                    group: legacy.group.clone(),
                    partitions: legacy.partitions,
                })
            }
        }
    }
}
