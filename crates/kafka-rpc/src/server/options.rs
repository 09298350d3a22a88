//! Settings of a server.

use std::time::Duration;

use krpc_kafka::IsolationLevel;

use crate::topic_setup::TopicOptions;

/// Settings of one server instance of a service.
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kafka_rpc::ServerOptions;
///
/// let mut options = ServerOptions::new("Sum");
/// options.concurrency = 64;
/// options.topics.request_partitions = 32;
/// options.session_timeout = Duration::from_secs(10);
/// options.heartbeat_interval = Duration::from_secs(3);
/// ```
///
/// With the `serde` feature it reads from a config file: keys are the field names, each
/// optional (a missing one keeps the value of [`ServerOptions::new`], with `service` empty),
/// unknown keys are refused, durations are humantime strings (`"45s"`). `security` (key
/// material) and `legacy` (its AES password) are not read or written: set them in code, from
/// wherever the keys are kept.
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default = "ServerOptions::serde_default", deny_unknown_fields)
)]
pub struct ServerOptions {
    /// The service served.
    pub service: String,
    /// This server's id, sent with every reply. Random unless set.
    pub server_id: String,
    /// Requests handled at once (handlers of one partition run concurrently). The Java
    /// consumer has no such setting (a poll loop runs one record at a time); gRPC servers'
    /// `max_concurrent_streams` plays the part. Default 64.
    pub concurrency: usize,
    /// Partitions and replication of the topics created on first use.
    pub topics: TopicOptions,
    /// How long the broker may hold the request consumer's fetch while no request is there
    /// (the Java consumer's `fetch.max.wait.ms`, default 500 ms). Apache Kafka answers as soon
    /// as a request arrives, so this costs no latency there and bounds an idle server to about
    /// two fetches a second per leader. A broker that answers a waiting fetch only when its
    /// wait runs out (the test broker, nisshi) needs a small value for low latency: the test
    /// harness, the demo and the benches set 10 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub fetch_max_wait: Duration,
    /// Isolation level of the request consumer (the Java consumer's `isolation.level`):
    /// `ReadCommitted` by default, so a request produced in an aborted transaction is never
    /// run, and one in an open transaction waits until it commits.
    pub request_isolation: IsolationLevel,
    /// Consumer-group session timeout: a dead server's requests move after this long
    /// (`session.timeout.ms`, default 45 s as in the Java consumer since Kafka 3.0). Heartbeats
    /// keep it alive in every phase, draining included.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub session_timeout: Duration,
    /// Time between heartbeats (`heartbeat.interval.ms`, default 3 s: a third of the session
    /// timeout or less, as the Java consumer advises).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub heartbeat_interval: Duration,
    /// How long the group waits for members to rejoin during a rebalance, sent as JoinGroup's
    /// rebalance timeout (the Java consumer sends `max.poll.interval.ms`, default 300 s). A
    /// server rejoins after draining revoked partitions, so it must exceed `drain_timeout`:
    /// [`crate::Server::run`] refuses settings where it does not.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub rebalance_timeout: Duration,
    /// How often the request topic's metadata is refreshed to notice partitions added (or the
    /// topic deleted or recreated) while serving: the group then rebalances so the new
    /// partitions are served, and the completion and dead-letter topics are grown to match.
    /// Java `metadata.max.age.ms`, whose default (5 minutes) is shortened here to 30 s: calls
    /// sent to a partition nobody consumes wait until this passes (one Metadata request per
    /// 30 s is the cost).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub metadata_max_age: Duration,
    /// How often completed offsets are committed (`auto.commit.interval.ms`, default 5 s).
    /// Offsets are committed after the reply whatever this is; a shorter interval narrows what
    /// a crashed server's successor runs again (which the completions topic then answers from
    /// its record instead of running), at the cost of more OffsetCommit requests.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub commit_interval: Duration,
    /// On shutdown or revocation, how long to wait for running handlers. Must be below
    /// `rebalance_timeout` (the group waits that long for a draining server to rejoin).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub drain_timeout: Duration,
    /// How long a handler still running at its request's deadline may take to return once told
    /// (through [`RequestContext::cancelled`](crate::RequestContext::cancelled)) before it is
    /// dropped; either way the caller is answered `DEADLINE_EXCEEDED` and the handler's
    /// concurrency permit released, so a handler that ignores cancellation never holds a
    /// permit for longer than its deadline plus this. Also how long handlers are given after
    /// the drain timeout when the server stops. No Java client setting matches; gRPC servers
    /// drop the handler at once, this gives a cooperative one time to clean up. Default 100 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub cancel_grace: Duration,
    /// Request ids remembered per partition to suppress redeliveries. Every server of a
    /// service should have the same value: each trims the completion topic to its own window
    /// (see `completion_trim_interval`), so during a rolling increase the servers still on the
    /// smaller value delete completions the larger windows would read.
    pub dedup_window: usize,
    /// How long a request id is remembered. The completion topic's retention
    /// ([`TopicOptions::completion_retention`]) must be at least this: [`crate::Server::run`]
    /// refuses settings where it is not.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub dedup_max_age: Duration,
    /// How often the completion topic is trimmed to the last `dedup_window` records of each
    /// partition (DeleteRecords; the dedup window never reads further back), so it stays
    /// small however long the service runs. `None`: never (retention alone bounds it).
    /// No Java client setting matches. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub completion_trim_interval: Option<Duration>,
    /// Largest request (value plus headers) served; larger ones are dead-lettered.
    pub max_request_bytes: usize,
    /// Require sealed requests and seal results (payload security); `None`: plain msgpack.
    /// With it, a request older than `dedup_max_age` is refused (so a replay cannot outlive
    /// the dedup window); a known request id at another offset (a producer's retry or a
    /// replayed record) is deduplicated: never run twice, never refused.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub security: Option<crate::security::PayloadSecurity>,
    /// Speak the Python kafka-rpc 1.0.8 format instead of the native one: the service name is
    /// then the Python `topic_name` (see [`crate::legacy`]). Payload security does not apply.
    #[cfg_attr(feature = "serde", serde(skip))]
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
            fetch_max_wait: Duration::from_millis(500),
            request_isolation: IsolationLevel::ReadCommitted,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(300),
            metadata_max_age: Duration::from_secs(30),
            commit_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            cancel_grace: Duration::from_millis(100),
            dedup_window: 10_000,
            dedup_max_age: Duration::from_secs(600),
            completion_trim_interval: Some(Duration::from_secs(60)),
            max_request_bytes: 1024 * 1024,
            security: None,
            legacy: None,
        }
    }

    /// The defaults a config file starts from: [`ServerOptions::new`] with no service.
    #[cfg(feature = "serde")]
    fn serde_default() -> Self {
        Self::new("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics_are_read_committed_by_default() {
        assert_eq!(
            ServerOptions::new("svc").request_isolation,
            IsolationLevel::ReadCommitted
        );
    }
}
