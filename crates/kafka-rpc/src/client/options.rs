//! Settings of a client and of each call.

use std::time::Duration;

use bytes::Bytes;

use crate::error::RpcError;
use crate::naming::DEFAULT_REPLY_TOPIC;
use crate::service::Metadata;
use crate::topic_setup::TopicOptions;

/// Settings of one client instance.
///
/// Like every options type of this crate it is `#[non_exhaustive]`: start from
/// [`ClientOptions::default`] and chain the `with_*` setters (fields stay readable, and
/// assignable on a value you own). [`RpcClient::connect`](crate::RpcClient::connect) checks it
/// ([`ClientOptions::validate`]) before touching the cluster.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kafka_rpc::ClientOptions;
///
/// let options = ClientOptions::default()
///     .with_default_timeout(Duration::from_secs(5))
///     .with_linger(Duration::from_millis(1));
/// assert_eq!(options.reply_topic, ClientOptions::default().reply_topic);
/// assert!(options.validate().is_ok());
/// ```
///
/// With the `serde` feature it reads from a config file: keys are the field names, each
/// optional (a missing one keeps its [`Default`]), unknown keys are refused, durations are
/// humantime strings (`"30s"`). `security` (key material) is not read or written: set it in
/// code.
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ClientOptions {
    /// This instance's id; its reply slot is derived from it. Random unless set.
    pub instance_id: String,
    /// The shared reply topic.
    pub reply_topic: String,
    /// Partitions and replication of the topics this client creates on first use.
    pub topics: TopicOptions,
    /// Timeout of a call that sets none (a gRPC client's default deadline; the Java producer's
    /// closest is `delivery.timeout.ms`). Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub default_timeout: Duration,
    /// How long the broker may hold the reply reader's fetch while no reply is there (the Java
    /// consumer's `fetch.max.wait.ms`, default 500 ms). Apache Kafka answers as soon as a reply
    /// arrives, so this costs no latency there and bounds an idle client to about two fetches a
    /// second. The test broker (nisshi) answers a waiting fetch only about half this late, so
    /// the test harness, the demo and the benches set 10 ms.
    /// In a config file also `fetch_max_wait` (Java's name, and `krpc`'s `--fetch-max-wait`).
    #[cfg_attr(
        feature = "serde",
        serde(with = "humantime_serde", alias = "fetch_max_wait")
    )]
    pub reply_fetch_max_wait: Duration,
    /// How long the request producer waits to batch requests (Java: `linger.ms`). Default 0:
    /// a call is sent at once.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub linger: Duration,
    /// Seal requests and require sealed results (payload security); `None`: plain msgpack.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub security: Option<crate::security::PayloadSecurity>,
    /// Most calls of this client (all its clones) waiting for their reply at once; a call
    /// beyond it waits for one to finish, and that wait counts against its timeout. tarpc's
    /// client `max_in_flight_requests` (default 1000) and tonic's `concurrency_limit`; unlike
    /// the Java producer's `max.in.flight.requests.per.connection` it counts RPC calls, not
    /// Kafka requests. One-way calls ([`RpcClient::notify`](crate::RpcClient::notify)) do not count.
    /// Default 1000. Must be at least 1.
    pub max_in_flight: usize,
    /// Create a service's request topic when a call finds none (with
    /// [`topics`](Self::topics)' partitions). Off by default: calling a service whose
    /// request topic does not exist is [`RpcError::UnknownService`](crate::RpcError::UnknownService),
    /// so a misspelt name never makes a topic; servers create their topics. The Java
    /// consumer's `allow.auto.create.topics` plays the same part for reads.
    pub create_request_topics: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            instance_id: format!("client-{}", crate::envelope::RequestId::random()),
            reply_topic: DEFAULT_REPLY_TOPIC.to_string(),
            topics: TopicOptions::default(),
            default_timeout: Duration::from_secs(30),
            reply_fetch_max_wait: Duration::from_millis(500),
            linger: Duration::ZERO,
            security: None,
            max_in_flight: 1000,
            create_request_topics: false,
        }
    }
}

impl ClientOptions {
    /// Checks every setting, as [`RpcClient::connect`](crate::RpcClient::connect) does before
    /// touching the cluster: an instance id and a reply topic, a non-zero default timeout,
    /// `max_in_flight` within 1..=[`tokio::sync::Semaphore::MAX_PERMITS`], and valid
    /// [`topics`](Self::topics).
    ///
    /// # Errors
    ///
    /// [`RpcError::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<(), RpcError> {
        check(!self.instance_id.is_empty(), || {
            "ClientOptions::instance_id must not be empty, got \"\"".into()
        })?;
        check(!self.reply_topic.is_empty(), || {
            "ClientOptions::reply_topic must not be empty, got \"\"".into()
        })?;
        check_durations(
            "ClientOptions",
            &[
                ("default_timeout", Some(self.default_timeout), false),
                (
                    "reply_fetch_max_wait",
                    Some(self.reply_fetch_max_wait),
                    true,
                ),
                ("linger", Some(self.linger), true),
            ],
        )?;
        check_max_in_flight("ClientOptions", self.max_in_flight)?;
        self.topics.validate()
    }
}

with_setters! { ClientOptions {
    /// Sets [`instance_id`](Self::instance_id).
    with_instance_id(instance_id: into String);
    /// Sets [`reply_topic`](Self::reply_topic).
    with_reply_topic(reply_topic: into String);
    /// Sets [`topics`](Self::topics).
    with_topics(topics: TopicOptions);
    /// Sets [`default_timeout`](Self::default_timeout) (closest Java setting: `delivery.timeout.ms`).
    with_default_timeout(default_timeout: Duration);
    /// Sets [`reply_fetch_max_wait`](Self::reply_fetch_max_wait) (Java `fetch.max.wait.ms`).
    with_reply_fetch_max_wait(reply_fetch_max_wait: Duration);
    /// Sets [`linger`](Self::linger) (Java `linger.ms`).
    with_linger(linger: Duration);
    /// Seals requests and requires sealed results: sets [`security`](Self::security).
    with_security(security: some crate::security::PayloadSecurity);
    /// Sets [`max_in_flight`](Self::max_in_flight) (tarpc's `max_in_flight_requests`).
    with_max_in_flight(max_in_flight: usize);
    /// Sets [`create_request_topics`](Self::create_request_topics) (as Java's `allow.auto.create.topics`).
    with_create_request_topics(create_request_topics: bool);
}}

/// `max_in_flight` of `what` is within 1..=`Semaphore::MAX_PERMITS` (the permits of the calls
/// waiting for their reply).
pub(crate) fn check_max_in_flight(what: &str, max_in_flight: usize) -> Result<(), RpcError> {
    let max = tokio::sync::Semaphore::MAX_PERMITS;
    check((1..=max).contains(&max_in_flight), || {
        format!("{what}::max_in_flight must be 1..={max}, got {max_in_flight}")
    })
}

/// The timing settings of `owner`, checked by krpc-kafka's one rule for them (at most
/// [`krpc_kafka::config::MAX_DURATION`]; above zero where the flag says zero is not allowed).
pub(crate) fn check_durations(
    owner: &str,
    settings: &[(&str, Option<Duration>, bool)],
) -> Result<(), RpcError> {
    krpc_kafka::config::check_durations(owner, settings).map_err(|e| match e {
        krpc_kafka::Error::InvalidArgument(message) => RpcError::InvalidArgument(message),
        other => RpcError::InvalidArgument(other.to_string()),
    })
}

/// `Err(InvalidArgument)` naming the setting and its value when `ok` is false.
pub(crate) fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), RpcError> {
    if ok {
        Ok(())
    } else {
        Err(RpcError::InvalidArgument(what()))
    }
}

// The options' setters come from krpc-kafka's one definition of them.
pub(crate) use krpc_kafka::__options_setters as with_setters;

/// Options of one call.
///
/// `#[non_exhaustive]`: start from [`CallOptions::default`] and chain the `with_*` setters;
/// [`RpcClient::call`](crate::RpcClient::call) checks it ([`CallOptions::validate`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {
    /// How long to wait for the reply (the client's default if `None`); it travels with the
    /// request as a deadline, so no server starts it after the caller gave up.
    pub timeout: Option<Duration>,
    /// Routing key: calls with the same key go to the same partition, so to one server at a
    /// time, which runs them one after another in the order they were sent.
    pub routing_key: Option<Bytes>,
    /// Caller metadata, delivered to the handler's [`RequestContext::metadata`](crate::RequestContext::metadata)
    /// (headers `krpc-meta-<name>`, wire/WIRE.md section 3.1).
    pub metadata: Metadata,
}

impl CallOptions {
    /// Adds one entry to [`metadata`](Self::metadata) (see [`Metadata`]; a bad name fails the
    /// call with `InvalidArgument`).
    #[must_use]
    pub fn with_metadata_entry(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.metadata.insert(name, value);
        self
    }

    /// Checks the options, as [`RpcClient::call`](crate::RpcClient::call) does before sending:
    /// every metadata name is valid ([`Metadata::check`]).
    ///
    /// # Errors
    ///
    /// [`RpcError::InvalidArgument`] naming the setting and the bad entry.
    pub fn validate(&self) -> Result<(), RpcError> {
        check_durations("CallOptions", &[("timeout", self.timeout, false)])?;
        self.metadata
            .check()
            .map_err(|e| RpcError::InvalidArgument(format!("CallOptions::metadata: {e}")))
    }
}

with_setters! { CallOptions {
    /// Sets [`timeout`](Self::timeout) (a gRPC deadline).
    with_timeout(timeout: some Duration);
    /// Sets [`routing_key`](Self::routing_key) (the record key, as a Java producer's key).
    with_routing_key(routing_key: some Bytes);
    /// Sets all of [`metadata`](Self::metadata).
    with_metadata(metadata: Metadata);
}}

/// Options of one one-way call (a job).
///
/// `#[non_exhaustive]`: start from [`NotifyOptions::default`] and chain the `with_*` setters;
/// [`RpcClient::notify`](crate::RpcClient::notify) checks it ([`NotifyOptions::validate`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NotifyOptions {
    /// A deadline after which no server should start the job; `None`: it waits for a server
    /// however long that takes.
    pub deadline: Option<Duration>,
    /// Routing key, as for calls.
    pub routing_key: Option<Bytes>,
    /// Caller metadata, as for calls.
    pub metadata: Metadata,
}

impl NotifyOptions {
    /// Adds one entry to [`metadata`](Self::metadata).
    #[must_use]
    pub fn with_metadata_entry(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.metadata.insert(name, value);
        self
    }

    /// Checks the options, as [`RpcClient::notify`](crate::RpcClient::notify) does before
    /// sending: every metadata name is valid ([`Metadata::check`]).
    ///
    /// # Errors
    ///
    /// [`RpcError::InvalidArgument`] naming the setting and the bad entry.
    pub fn validate(&self) -> Result<(), RpcError> {
        check_durations("NotifyOptions", &[("deadline", self.deadline, false)])?;
        self.metadata
            .check()
            .map_err(|e| RpcError::InvalidArgument(format!("NotifyOptions::metadata: {e}")))
    }
}

with_setters! { NotifyOptions {
    /// Sets [`deadline`](Self::deadline).
    with_deadline(deadline: some Duration);
    /// Sets [`routing_key`](Self::routing_key) (the record key, as a Java producer's key).
    with_routing_key(routing_key: some Bytes);
    /// Sets all of [`metadata`](Self::metadata).
    with_metadata(metadata: Metadata);
}}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LegacyClientOptions;

    fn refused(r: Result<(), RpcError>) -> String {
        match r {
            Err(RpcError::InvalidArgument(m)) => m,
            other => panic!("not refused as InvalidArgument: {other:?}"),
        }
    }

    /// What `RpcClient::connect`, `LegacyClient::connect` and each call check up front, each
    /// refusal naming the setting (`max_in_flight` used to be checked only after the reply
    /// topic was made; the timeouts, ids and partitions not at all).
    #[test]
    fn bad_client_and_call_options_are_refused_naming_them() {
        assert!(ClientOptions::default().validate().is_ok());
        for (options, setting) in [
            (
                ClientOptions::default().with_max_in_flight(0),
                "ClientOptions::max_in_flight",
            ),
            (
                ClientOptions::default().with_max_in_flight(usize::MAX),
                "ClientOptions::max_in_flight",
            ),
            (
                ClientOptions::default().with_default_timeout(Duration::ZERO),
                "ClientOptions::default_timeout",
            ),
            // Would overflow the call's deadline (`Instant::now() + timeout`).
            (
                ClientOptions::default().with_default_timeout(Duration::MAX),
                "ClientOptions::default_timeout",
            ),
            (
                ClientOptions::default().with_instance_id(""),
                "ClientOptions::instance_id",
            ),
            (
                ClientOptions::default().with_reply_topic(""),
                "ClientOptions::reply_topic",
            ),
            (
                ClientOptions::default()
                    .with_topics(TopicOptions::default().with_reply_partitions(0)),
                "TopicOptions::reply_partitions",
            ),
        ] {
            let m = refused(options.validate());
            assert!(m.contains(setting), "{setting}: {m}");
        }

        assert!(LegacyClientOptions::new("Calculator").validate().is_ok());
        for (options, setting) in [
            (
                LegacyClientOptions::new("bad name!"),
                "LegacyClientOptions::name",
            ),
            (
                LegacyClientOptions::new("Calculator").with_partitions(0),
                "LegacyClientOptions::partitions",
            ),
            (
                LegacyClientOptions::new("Calculator").with_max_in_flight(0),
                "LegacyClientOptions::max_in_flight",
            ),
            (
                LegacyClientOptions::new("Calculator").with_default_timeout(Duration::ZERO),
                "LegacyClientOptions::default_timeout",
            ),
        ] {
            let m = refused(options.validate());
            assert!(m.contains(setting), "{setting}: {m}");
        }

        let m = refused(
            CallOptions::default()
                .with_metadata_entry("Bad Name", "x")
                .validate(),
        );
        assert!(m.contains("CallOptions::metadata"), "{m}");
        let m = refused(
            NotifyOptions::default()
                .with_metadata_entry("Bad Name", "x")
                .validate(),
        );
        assert!(m.contains("NotifyOptions::metadata"), "{m}");
        // A zero timeout or deadline is refused; one past i32::MAX ms would overflow it.
        let m = refused(
            CallOptions::default()
                .with_timeout(Duration::MAX)
                .validate(),
        );
        assert!(
            m.contains("CallOptions::timeout") && m.contains("at most"),
            "{m}"
        );
        let m = refused(
            CallOptions::default()
                .with_timeout(Duration::ZERO)
                .validate(),
        );
        assert!(
            m.contains("CallOptions::timeout") && m.contains("> 0"),
            "{m}"
        );
        let m = refused(
            NotifyOptions::default()
                .with_deadline(Duration::ZERO)
                .validate(),
        );
        assert!(m.contains("NotifyOptions::deadline"), "{m}");
        let call = CallOptions::default()
            .with_timeout(Duration::from_secs(3))
            .with_routing_key("k")
            .with_metadata_entry("tenant", "acme");
        assert!(call.validate().is_ok());
        assert_eq!(call.timeout, Some(Duration::from_secs(3)));
        assert_eq!(call.routing_key.as_deref(), Some(&b"k"[..]));
    }
}
