//! Settings of a server.

use std::time::Duration;

use krpc_kafka::IsolationLevel;

use crate::client::{check, with_setters};
use crate::error::RpcError;
use crate::topic_setup::TopicOptions;

/// Settings of one server instance of a service.
///
/// `#[non_exhaustive]`: start from [`ServerOptions::new`] and chain the `with_*` setters
/// (fields stay readable, and assignable on a value you own). [`Server::new`](crate::Server::new)
/// checks it ([`ServerOptions::validate`]) and fails naming the setting; only what needs the
/// registered service (a [`Service`](crate::Service) whose name is not
/// [`service`](Self::service)) is checked by [`Server::run`](crate::Server::run).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kafka_rpc::{ServerOptions, TopicOptions};
///
/// let options = ServerOptions::new("Sum")
///     .with_concurrency(64)
///     .with_topics(TopicOptions::default().with_request_partitions(32))
///     .with_session_timeout(Duration::from_secs(10))
///     .with_heartbeat_interval(Duration::from_secs(3));
/// assert!(options.validate().is_ok());
///
/// // Refused when built, not when run: the drain must end before the group gives up.
/// let bad = options.with_drain_timeout(Duration::from_secs(600));
/// assert!(bad.validate().unwrap_err().to_string().contains("ServerOptions::drain_timeout"));
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
#[non_exhaustive]
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
    /// [`crate::Server::new`] refuses settings where it does not.
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
    /// ([`TopicOptions::completion_retention`]) must be at least this: [`crate::Server::new`]
    /// refuses settings where it is not.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub dedup_max_age: Duration,
    /// How often the completion topic is trimmed to the last `dedup_window` records of each
    /// partition (DeleteRecords; the dedup window never reads further back), so it stays
    /// small however long the service runs. `None`: never (retention alone bounds it).
    /// No Java client setting matches. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub completion_trim_interval: Option<Duration>,
    /// Coalesce completion records: while a completion record of a partition is being
    /// written, the completions of that partition that finish meanwhile wait for it and are
    /// then written together as one record (wire/WIRE.md section 8), so a busy server writes
    /// one completion record per partition per produce round trip instead of one per request.
    /// An idle server still writes each completion at once, alone. Turn it off (`false`: one
    /// record per request, the only layout earlier releases read) while a fleet still runs
    /// servers older than this setting: they skip coalesced records (logged), so requests they
    /// complete are not deduplicated by those servers. No Java client setting matches; it is
    /// group commit, as a Kafka producer's batching is for records. Default `true`.
    pub coalesce_completions: bool,
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
            coalesce_completions: true,
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

    /// Checks every setting, as [`Server::new`](crate::Server::new) does: a valid service
    /// name (the Python `topic_name` in legacy mode, where payload security is refused), a
    /// server id, `concurrency` within 1..=[`tokio::sync::Semaphore::MAX_PERMITS`], a heartbeat
    /// interval below the session timeout (as the Java consumer requires), `drain_timeout`
    /// below `rebalance_timeout`, a completion retention of at least `dedup_max_age`, a
    /// non-zero `max_request_bytes`, and valid [`topics`](Self::topics) and
    /// [`legacy`](Self::legacy) settings.
    ///
    /// # Errors
    ///
    /// [`RpcError::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<(), RpcError> {
        // The service name (and the legacy/security pairing): where the topic names are made.
        super::TopicNames::of(self)?;
        check(!self.server_id.is_empty(), || {
            "ServerOptions::server_id must not be empty, got \"\"".into()
        })?;
        let max = tokio::sync::Semaphore::MAX_PERMITS;
        check((1..=max).contains(&self.concurrency), || {
            format!(
                "ServerOptions::concurrency must be 1..={max}, got {}",
                self.concurrency
            )
        })?;
        check(self.heartbeat_interval < self.session_timeout, || {
            format!(
                "ServerOptions::heartbeat_interval (heartbeat.interval.ms) must be below \
                 session_timeout ({:?}), got {:?}",
                self.session_timeout, self.heartbeat_interval
            )
        })?;
        check(self.drain_timeout < self.rebalance_timeout, || {
            format!(
                "ServerOptions::drain_timeout must be below rebalance_timeout ({:?}), got {:?}: \
                 a server rejoins the group only after draining revoked partitions, and the \
                 group waits at most the rebalance timeout (max.poll.interval.ms) before \
                 removing it; raise rebalance_timeout or lower drain_timeout",
                self.rebalance_timeout, self.drain_timeout
            )
        })?;
        if let Some(retention) = self.topics.completion_retention {
            check(retention >= self.dedup_max_age, || {
                format!(
                    "TopicOptions::completion_retention (the completion topic's retention) \
                     must be at least ServerOptions::dedup_max_age ({:?}), got {retention:?}: \
                     the dedup window is rebuilt from it",
                    self.dedup_max_age
                )
            })?;
        }
        check(self.max_request_bytes > 0, || {
            "ServerOptions::max_request_bytes must be > 0, got 0".into()
        })?;
        crate::client::check_durations(
            "ServerOptions",
            &[
                ("fetch_max_wait", Some(self.fetch_max_wait), true),
                ("session_timeout", Some(self.session_timeout), false),
                // Zero would heartbeat in a loop.
                ("heartbeat_interval", Some(self.heartbeat_interval), false),
                ("rebalance_timeout", Some(self.rebalance_timeout), false),
                ("metadata_max_age", Some(self.metadata_max_age), true),
                // Zero panics in tokio::time::interval.
                ("commit_interval", Some(self.commit_interval), false),
                ("drain_timeout", Some(self.drain_timeout), true),
                ("cancel_grace", Some(self.cancel_grace), true),
                (
                    "completion_trim_interval",
                    self.completion_trim_interval,
                    false,
                ),
            ],
        )?;
        self.topics.validate()?;
        if let Some(legacy) = &self.legacy {
            legacy.validate()?;
        }
        Ok(())
    }
}

with_setters! { ServerOptions {
    /// Sets [`service`](Self::service).
    with_service(service: into String);
    /// Sets [`server_id`](Self::server_id).
    with_server_id(server_id: into String);
    /// Sets [`concurrency`](Self::concurrency) (as gRPC's `max_concurrent_streams`).
    with_concurrency(concurrency: usize);
    /// Sets [`topics`](Self::topics).
    with_topics(topics: TopicOptions);
    /// Sets [`fetch_max_wait`](Self::fetch_max_wait) (Java `fetch.max.wait.ms`).
    with_fetch_max_wait(fetch_max_wait: Duration);
    /// Sets [`request_isolation`](Self::request_isolation) (Java `isolation.level`).
    with_request_isolation(request_isolation: IsolationLevel);
    /// Sets [`session_timeout`](Self::session_timeout) (Java `session.timeout.ms`).
    with_session_timeout(session_timeout: Duration);
    /// Sets [`heartbeat_interval`](Self::heartbeat_interval) (Java `heartbeat.interval.ms`).
    with_heartbeat_interval(heartbeat_interval: Duration);
    /// Sets [`rebalance_timeout`](Self::rebalance_timeout) (Java `max.poll.interval.ms`).
    with_rebalance_timeout(rebalance_timeout: Duration);
    /// Sets [`metadata_max_age`](Self::metadata_max_age) (Java `metadata.max.age.ms`).
    with_metadata_max_age(metadata_max_age: Duration);
    /// Sets [`commit_interval`](Self::commit_interval) (Java `auto.commit.interval.ms`).
    with_commit_interval(commit_interval: Duration);
    /// Sets [`drain_timeout`](Self::drain_timeout).
    with_drain_timeout(drain_timeout: Duration);
    /// Sets [`cancel_grace`](Self::cancel_grace).
    with_cancel_grace(cancel_grace: Duration);
    /// Sets [`dedup_window`](Self::dedup_window).
    with_dedup_window(dedup_window: usize);
    /// Sets [`dedup_max_age`](Self::dedup_max_age).
    with_dedup_max_age(dedup_max_age: Duration);
    /// Sets [`completion_trim_interval`](Self::completion_trim_interval) to `Some`.
    with_completion_trim_interval(completion_trim_interval: some Duration);
    /// Sets [`coalesce_completions`](Self::coalesce_completions).
    with_coalesce_completions(coalesce_completions: bool);
    /// Sets [`max_request_bytes`](Self::max_request_bytes).
    with_max_request_bytes(max_request_bytes: usize);
    /// Requires sealed requests and seals results: sets [`security`](Self::security).
    with_security(security: some crate::security::PayloadSecurity);
    /// Serves the Python kafka-rpc 1.0.8 format: sets [`legacy`](Self::legacy).
    with_legacy(legacy: some crate::legacy::LegacyOptions);
}}

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

    fn refused(o: ServerOptions) -> String {
        match o.validate() {
            Err(RpcError::InvalidArgument(m)) => m,
            other => panic!("not refused as InvalidArgument: {other:?}"),
        }
    }

    /// Each check names the setting it refuses; those that `Server::run` made (concurrency,
    /// drain vs rebalance timeout, completion retention, service name, legacy with security)
    /// now fail at `validate` (so at `Server::new`), and the new ones too.
    #[test]
    fn bad_settings_are_refused_naming_them() {
        let base = ServerOptions::new("svc");
        assert!(base.validate().is_ok());
        let cases = [
            (
                base.clone().with_concurrency(0),
                "ServerOptions::concurrency",
            ),
            (
                base.clone().with_drain_timeout(Duration::from_secs(300)),
                "ServerOptions::drain_timeout",
            ),
            (
                base.clone()
                    .with_heartbeat_interval(Duration::from_secs(45)),
                "ServerOptions::heartbeat_interval",
            ),
            (
                base.clone().with_topics(
                    TopicOptions::default().with_completion_retention(Duration::from_secs(60)),
                ),
                "TopicOptions::completion_retention",
            ),
            (
                base.clone().with_max_request_bytes(0),
                "ServerOptions::max_request_bytes",
            ),
            // Passed `Server::new` and then panicked in `run` (tokio::time::interval) or in
            // the trimming task (review of stop 13).
            (
                base.clone().with_commit_interval(Duration::ZERO),
                "ServerOptions::commit_interval",
            ),
            (
                base.clone().with_completion_trim_interval(Duration::ZERO),
                "ServerOptions::completion_trim_interval",
            ),
            (
                base.clone().with_heartbeat_interval(Duration::ZERO),
                "ServerOptions::heartbeat_interval",
            ),
            (
                base.clone().with_drain_timeout(Duration::MAX),
                "ServerOptions::drain_timeout",
            ),
            (base.clone().with_server_id(""), "ServerOptions::server_id"),
            (
                base.clone()
                    .with_topics(TopicOptions::default().with_request_partitions(0)),
                "TopicOptions::request_partitions",
            ),
            (
                base.clone()
                    .with_topics(TopicOptions::default().with_replication_factor(0)),
                "TopicOptions::replication_factor",
            ),
            (
                base.clone()
                    .with_topics(TopicOptions::default().with_reply_retention(Duration::ZERO)),
                "TopicOptions::reply_retention",
            ),
            (
                base.clone()
                    .with_legacy(crate::legacy::LegacyOptions::default().with_partitions(0)),
                "LegacyOptions::partitions",
            ),
            (
                base.clone()
                    .with_legacy(crate::legacy::LegacyOptions::default().with_group("")),
                "LegacyOptions::group",
            ),
        ];
        for (options, setting) in cases {
            let m = refused(options);
            assert!(m.contains(setting), "{setting}: {m}");
        }
        // The service name: refused with the naming rules' reason.
        assert!(!refused(ServerOptions::new("bad name!")).is_empty());
    }
}
