//! Settings of a client and of each call.

use std::time::Duration;

use bytes::Bytes;

use crate::naming::DEFAULT_REPLY_TOPIC;
use crate::topics::TopicOptions;

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
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// This instance's id; its reply slot is derived from it. Random unless set.
    pub instance_id: String,
    /// The shared reply topic.
    pub reply_topic: String,
    /// Partitions and replication of the topics this client creates on first use.
    pub topics: TopicOptions,
    /// Timeout of a call that sets none.
    pub default_timeout: Duration,
    /// How long the broker may hold the reply reader's fetch while no reply is there (the Java
    /// consumer's `fetch.max.wait.ms`, default 500 ms). Apache Kafka answers as soon as a reply
    /// arrives, so this costs no latency there and bounds an idle client to about two fetches a
    /// second. The test broker (nisshi) answers a waiting fetch only about half this late, so
    /// the test harness, the demo and the benches set 10 ms.
    pub reply_fetch_max_wait: Duration,
    /// How long the request producer waits to batch requests.
    pub linger: Duration,
    /// Seal requests and require sealed results (payload security); `None`: plain msgpack.
    pub security: Option<crate::security::PayloadSecurity>,
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
}

impl CallOptions {
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
}
