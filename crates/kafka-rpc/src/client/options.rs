//! Settings of a client and of each call.

use std::time::Duration;

use bytes::Bytes;

use crate::naming::DEFAULT_REPLY_TOPIC;
use crate::service::Metadata;
use crate::topic_setup::TopicOptions;

/// Settings of one client instance.
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kafka_rpc::ClientOptions;
///
/// let options = ClientOptions {
///     default_timeout: Duration::from_secs(5),
///     linger: Duration::from_millis(1),
///     ..ClientOptions::default()
/// };
/// assert_eq!(options.reply_topic, ClientOptions::default().reply_topic);
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

/// Options of one call.
#[derive(Debug, Clone, Default)]
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
    /// Adds a metadata entry (see [`Metadata`]; a bad name fails the call with
    /// `InvalidArgument`).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.metadata.insert(name, value);
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Sets the routing key.
    pub fn routing_key(mut self, key: impl Into<Bytes>) -> Self {
        self.routing_key = Some(key.into());
        self
    }
}

/// Options of one one-way call (a job).
#[derive(Debug, Clone, Default)]
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
    /// Sets the deadline.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }

    /// Sets the routing key.
    pub fn routing_key(mut self, key: impl Into<Bytes>) -> Self {
        self.routing_key = Some(key.into());
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.metadata.insert(name, value);
        self
    }
}
