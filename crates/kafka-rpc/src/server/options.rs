//! Settings of a server.

use std::time::Duration;

use crate::topics::TopicOptions;

/// Settings of one server instance of a service.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The service served.
    pub service: String,
    /// This server's id, sent with every reply. Random unless set.
    pub server_id: String,
    /// Requests handled at once (handlers of one partition run concurrently).
    pub concurrency: usize,
    /// Partitions and replication of the topics created on first use.
    pub topics: TopicOptions,
    /// Fetch max wait of the request consumer (it bounds latency on the test broker).
    pub fetch_max_wait: Duration,
    /// Consumer-group session timeout: a dead server's requests move after this long
    /// (Java `session.timeout.ms`). Heartbeats keep it alive in every phase, draining included.
    pub session_timeout: Duration,
    /// Time between heartbeats (Java `heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// How long the group waits for members to rejoin during a rebalance (Java
    /// `max.poll.interval.ms`, sent as JoinGroup's rebalance timeout). A server rejoins after
    /// draining revoked partitions, so it must exceed `drain_timeout`: [`crate::Server::run`]
    /// refuses settings where it does not.
    pub rebalance_timeout: Duration,
    /// How often the request topic's metadata is refreshed to notice partitions added (or the
    /// topic deleted or recreated) while serving: the group then rebalances so the new
    /// partitions are served, and the completion and dead-letter topics are grown to match.
    /// Java `metadata.max.age.ms`, whose default (5 minutes) is shortened here: calls sent to a
    /// partition nobody consumes wait until this passes.
    pub metadata_max_age: Duration,
    /// How often completed offsets are committed.
    pub commit_interval: Duration,
    /// On shutdown or revocation, how long to wait for running handlers. Must be below
    /// `rebalance_timeout` (the group waits that long for a draining server to rejoin).
    pub drain_timeout: Duration,
    /// Request ids remembered per partition to suppress redeliveries.
    pub dedup_window: usize,
    /// How long a request id is remembered.
    pub dedup_max_age: Duration,
    /// Largest request (value plus headers) served; larger ones are dead-lettered.
    pub max_request_bytes: usize,
    /// Require sealed requests and seal results (payload security); `None`: plain msgpack.
    /// With it, a request older than `dedup_max_age` is refused (so a replay cannot outlive
    /// the dedup window), and a known request id at another offset is refused as a replay.
    pub security: Option<crate::security::PayloadSecurity>,
    /// Speak the Python kafka-rpc 1.0.8 format instead of the native one: the service name is
    /// then the Python `topic_name` (see [`crate::legacy`]). Payload security does not apply.
    pub legacy: Option<crate::legacy::LegacyOptions>,
}

impl ServerOptions {
    /// Settings for serving `service`.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            server_id: format!("server-{}", crate::envelope::RequestId::random()),
            concurrency: 64,
            topics: TopicOptions::default(),
            fetch_max_wait: Duration::from_millis(10),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            rebalance_timeout: Duration::from_secs(60),
            metadata_max_age: Duration::from_secs(30),
            commit_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(30),
            dedup_window: 10_000,
            dedup_max_age: Duration::from_secs(600),
            max_request_bytes: 1024 * 1024,
            security: None,
            legacy: None,
        }
    }
}
