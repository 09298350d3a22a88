//! Typed settings of the Kafka client.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::sasl::{SaslConfig, SaslMechanism};

/// TLS settings for the broker connections.
///
/// The type and [`ClientConfig::tls`] exist in every build; connecting with `tls` set fails with
/// [`crate::Error::Tls`] ("built without the `tls` feature") unless kafka-wire is built with its
/// `tls` cargo feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) to trust; `None` trusts the system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and private key (PEM files) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name to verify the broker's certificate against (and send as SNI); `None` uses the
    /// host of the broker address (an IP address is checked against the certificate's IP SANs).
    pub server_name: Option<String>,
}

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
    /// SASL authentication right after connecting (and after ApiVersions); `None`: none.
    pub sasl: Option<SaslConfig>,
    /// TLS for every broker connection; `None`: plaintext. See [`TlsConfig`] for builds
    /// without the `tls` feature.
    pub tls: Option<TlsConfig>,
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
            sasl: None,
            tls: None,
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

    /// Authenticates every connection with SASL.
    pub fn sasl(mut self, sasl: SaslConfig) -> Self {
        self.sasl = Some(sasl);
        self
    }

    /// Uses TLS for every connection.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }
}
