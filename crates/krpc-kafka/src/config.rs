//! Typed settings of the Kafka client.
//!
//! # From a config file (feature `serde`)
//!
//! With the `serde` feature, [`ClientConfig`], [`TlsConfig`], [`SaslConfig`],
//! [`crate::ProducerConfig`], [`crate::FetchConfig`] and [`crate::GroupConfig`] (and the enums
//! they hold) implement `Serialize` and `Deserialize`: keys are the Rust field names
//! (`request_timeout`, not `request.timeout.ms`; each field's doc names the Java setting it
//! mirrors), a missing key keeps its default (`#[serde(default)]`: a file names only what it
//! changes), an unknown key is an error (`deny_unknown_fields`), and durations are humantime
//! strings (`"500ms"`, `"30s"`, `"1m 30s"`). Enums take the Java client's values
//! (`acks = "all"`, `codec = "zstd"`, `offset_reset = "earliest"`, `isolation_level =
//! "read_committed"`, `mechanism = "SCRAM-SHA-512"`). `bootstrap` is a list of `host:port` or
//! one comma-separated string.
//!
//! Secrets: [`SaslConfig::password`] can be read from a file (as the Java client's
//! `sasl.jaas.config` is, in a properties file), but is never written by `Serialize`, so a
//! config dumped to a log or a file does not carry it. [`TlsConfig`] names files only (the
//! private key stays in its PEM file).

use std::path::PathBuf;
use std::time::Duration;

pub use crate::sasl::{SaslConfig, SaslMechanism};

/// TLS settings for the broker connections.
///
/// Mirrors the Java client's `security.protocol=SSL` settings: `ssl.truststore.*` ([`ca_file`],
/// or the system's roots), `ssl.keystore.*` ([`client_cert`]), and the host name check that
/// `ssl.endpoint.identification.algorithm=https` does ([`server_name`] overrides the name).
/// Together with [`ClientConfig::sasl`] it is Java's `SASL_SSL`.
///
/// The type and [`ClientConfig::tls`] exist in every build; connecting with `tls` set fails with
/// [`crate::Error::Tls`] ("built without the `tls` feature") unless krpc-kafka is built with its
/// `tls` cargo feature (or `tls-ring`). Files are read when a connection is made; an unreadable
/// file or a bad key is an [`crate::Error::Tls`] naming the file.
///
/// [`ca_file`]: TlsConfig::ca_file
/// [`client_cert`]: TlsConfig::client_cert
/// [`server_name`]: TlsConfig::server_name
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) to trust; `None` trusts the system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and private key (PEM files: the chain, leaf first; the key in
    /// PKCS#8, SEC1 or PKCS#1 form) for mutual TLS. In a config file: `["cert.pem", "key.pem"]`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name to verify the broker's certificate against (and send as SNI); `None` uses the
    /// host of the broker address (an IP address is checked against the certificate's IP SANs).
    pub server_name: Option<String>,
}

/// How to reach and talk to the cluster.
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use krpc_kafka::{ClientConfig, SaslConfig};
///
/// let config = ClientConfig::new("broker1:9092,broker2:9092")
///     .client_id("billing")
///     .request_timeout(Duration::from_secs(30))
///     .sasl(SaslConfig::plain("alice", "secret"));
/// assert_eq!(config.bootstrap, ["broker1:9092", "broker2:9092"]);
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default = "ClientConfig::serde_default", deny_unknown_fields)
)]
pub struct ClientConfig {
    /// Bootstrap brokers as `host:port` (Java: `bootstrap.servers`). In a config file: a list,
    /// or one comma-separated string; none by default (a file that leaves it out needs it from
    /// elsewhere, or connecting fails).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "serde_impl::bootstrap"))]
    pub bootstrap: Vec<String>,
    /// Client id sent with every request (Java: `client.id`). Default `krpc-kafka`.
    pub client_id: String,
    /// How long to keep trying to reach a broker (bootstrap or reconnect) before giving up
    /// (Java: `socket.connection.setup.timeout.ms`, 10 s). Default 10 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub connect_timeout: Duration,
    /// How long to wait for the answer to one request (a fetch adds its max wait to this; a
    /// JoinGroup its rebalance timeout). A request that times out retires its connection
    /// (see the `connection` module). Also bounds how long one frame may take to write.
    /// Java: `request.timeout.ms`, 30 s. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub request_timeout: Duration,
    /// First delay before retrying a failed request (metadata, produce, fetch of a partition
    /// whose leader is unknown or moved, offset lookups, group joins), doubled on each further
    /// failure up to `retry_backoff_max`, each delay jittered to 50..100 %. Java:
    /// `retry.backoff.ms`, 100 ms. Default 100 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retry_backoff: Duration,
    /// The longest delay between retries. Java: `retry.backoff.max.ms`, 1 s. Default 1 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retry_backoff_max: Duration,
    /// First delay before dialling a broker again after a failed attempt, doubled up to
    /// `reconnect_backoff_max`, jittered. Java: `reconnect.backoff.ms`, 50 ms. Default 50 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub reconnect_backoff: Duration,
    /// The longest delay between dial attempts. Java: `reconnect.backoff.max.ms`, 1 s.
    /// Default 1 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub reconnect_backoff_max: Duration,
    /// A connection unused (nothing in flight, nothing sent or received) for this long is not
    /// reused: it is closed and the request dials afresh, so a connection the broker closed at
    /// its own `connections.max.idle.ms` (10 min by default) is never written to. Java:
    /// `connections.max.idle.ms`, 9 min. Default 9 min.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub connections_max_idle: Duration,
    /// Largest response frame accepted from a broker; larger frames break the connection. No
    /// Java setting matches (Java bounds fetches by `fetch.max.bytes`). Default 100 MiB.
    pub max_frame_bytes: usize,
    /// How long cached metadata stays fresh without an error that invalidates it (Java:
    /// `metadata.max.age.ms`, 5 min). Default 5 min.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub metadata_max_age: Duration,
    /// SASL authentication right after connecting (and after ApiVersions); `None`: none (Java:
    /// `sasl.mechanism` and `sasl.jaas.config`, with `security.protocol=SASL_*`).
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
            client_id: "krpc-kafka".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            connections_max_idle: Duration::from_secs(540),
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

    /// The defaults a config file starts from: [`ClientConfig::new`] with no bootstrap broker.
    #[cfg(feature = "serde")]
    fn serde_default() -> Self {
        Self::new("")
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    use serde::{Deserialize, Deserializer};

    /// `bootstrap` as a list of `host:port`, or one comma-separated string as
    /// [`super::ClientConfig::new`] takes.
    pub(super) fn bootstrap<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let list = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        Ok(list
            .iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }
}
