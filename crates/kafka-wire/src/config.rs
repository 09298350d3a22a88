//! Typed settings of the Kafka client.

use std::time::Duration;

/// How to reach and talk to the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bootstrap brokers as `host:port`.
    pub bootstrap: Vec<String>,
    /// Client id sent with every request.
    pub client_id: String,
    /// How long to keep trying to reach a broker (bootstrap or reconnect) before giving up.
    pub connect_timeout: Duration,
    /// How long to wait for the answer to one request (a fetch adds its max wait to this).
    pub request_timeout: Duration,
    /// Backoff between reconnect and retry attempts (doubled each time up to `retry_backoff_max`).
    pub retry_backoff: Duration,
    /// The longest backoff between attempts.
    pub retry_backoff_max: Duration,
    /// Largest response frame accepted from a broker; larger frames break the connection.
    pub max_frame_bytes: usize,
    /// How long cached metadata stays fresh without an error that invalidates it.
    pub metadata_max_age: Duration,
}

impl ClientConfig {
    /// Settings for the given bootstrap brokers (comma-separated `host:port` list allowed).
    pub fn new(bootstrap: impl AsRef<str>) -> Self {
        Self {
            bootstrap: bootstrap
                .as_ref()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            client_id: "kafka-wire".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(1),
            max_frame_bytes: 100 * 1024 * 1024,
            metadata_max_age: Duration::from_secs(300),
        }
    }

    /// Sets the client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }
}
