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
#[non_exhaustive]
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
///
/// Like every options type of this crate it is `#[non_exhaustive]`: start from
/// [`ClientConfig::new`] and chain the `with_*` setters (fields stay readable, and assignable
/// on a value you own). [`KafkaClient::connect`](crate::KafkaClient::connect) checks it
/// ([`ClientConfig::validate`]) before dialling.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use krpc_kafka::{ClientConfig, SaslConfig};
///
/// let config = ClientConfig::new("broker1:9092,broker2:9092")
///     .with_client_id("billing")
///     .with_request_timeout(Duration::from_secs(30))
///     .with_sasl(SaslConfig::plain("alice", "secret"));
/// assert_eq!(config.bootstrap, ["broker1:9092", "broker2:9092"]);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default = "ClientConfig::serde_default", deny_unknown_fields)
)]
#[non_exhaustive]
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
    /// JoinGroup its rebalance timeout). A request that times out retires its connection:
    /// other requests on it fail at once and are retried on a new one, as the broker may
    /// answer late or never. Also bounds how long one frame may take to write.
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

    /// Checks every setting, as [`KafkaClient::connect`](crate::KafkaClient::connect) does
    /// before dialling: at least one bootstrap broker, non-zero timeouts and frame size, and a
    /// valid [`TlsConfig`].
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> crate::Result<()> {
        check(!self.bootstrap.is_empty(), || {
            "ClientConfig::bootstrap (bootstrap.servers) must name at least one broker, got none"
                .into()
        })?;
        check(self.bootstrap.iter().all(|b| !b.trim().is_empty()), || {
            format!(
                "ClientConfig::bootstrap (bootstrap.servers) has an empty address: {:?}",
                self.bootstrap
            )
        })?;
        // As the Java client ("Invalid url in bootstrap.servers"): refused here, not after the
        // connect timeout as an unreachable broker.
        for address in &self.bootstrap {
            let port = address
                .trim()
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok());
            check(port.is_some(), || {
                format!(
                    "ClientConfig::bootstrap (bootstrap.servers) takes host:port addresses, got \
                     {address:?}"
                )
            })?;
        }
        check(!self.connect_timeout.is_zero(), || {
            "ClientConfig::connect_timeout (socket.connection.setup.timeout.ms) must be > 0, got 0s"
                .into()
        })?;
        check(!self.request_timeout.is_zero(), || {
            "ClientConfig::request_timeout (request.timeout.ms) must be > 0, got 0s".into()
        })?;
        check(self.max_frame_bytes > 0, || {
            "ClientConfig::max_frame_bytes must be > 0, got 0".into()
        })?;
        check_durations(
            "ClientConfig",
            &[
                ("connect_timeout", Some(self.connect_timeout), false),
                ("request_timeout", Some(self.request_timeout), false),
                ("retry_backoff", Some(self.retry_backoff), true),
                ("retry_backoff_max", Some(self.retry_backoff_max), true),
                ("reconnect_backoff", Some(self.reconnect_backoff), true),
                (
                    "reconnect_backoff_max",
                    Some(self.reconnect_backoff_max),
                    true,
                ),
                (
                    "connections_max_idle",
                    Some(self.connections_max_idle),
                    true,
                ),
                ("metadata_max_age", Some(self.metadata_max_age), true),
            ],
        )?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }

    /// The defaults a config file starts from: [`ClientConfig::new`] with no bootstrap broker.
    #[cfg(feature = "serde")]
    fn serde_default() -> Self {
        Self::new("")
    }
}

with_setters! { ClientConfig {
    /// Sets [`bootstrap`](Self::bootstrap) (Java `bootstrap.servers`), one `host:port` each.
    with_bootstrap(bootstrap: Vec<String>);
    /// Sets [`client_id`](Self::client_id) (Java `client.id`).
    with_client_id(client_id: into String);
    /// Sets [`connect_timeout`](Self::connect_timeout) (Java `socket.connection.setup.timeout.ms`).
    with_connect_timeout(connect_timeout: Duration);
    /// Sets [`request_timeout`](Self::request_timeout) (Java `request.timeout.ms`).
    with_request_timeout(request_timeout: Duration);
    /// Sets [`retry_backoff`](Self::retry_backoff) (Java `retry.backoff.ms`).
    with_retry_backoff(retry_backoff: Duration);
    /// Sets [`retry_backoff_max`](Self::retry_backoff_max) (Java `retry.backoff.max.ms`).
    with_retry_backoff_max(retry_backoff_max: Duration);
    /// Sets [`reconnect_backoff`](Self::reconnect_backoff) (Java `reconnect.backoff.ms`).
    with_reconnect_backoff(reconnect_backoff: Duration);
    /// Sets [`reconnect_backoff_max`](Self::reconnect_backoff_max) (Java `reconnect.backoff.max.ms`).
    with_reconnect_backoff_max(reconnect_backoff_max: Duration);
    /// Sets [`connections_max_idle`](Self::connections_max_idle) (Java `connections.max.idle.ms`).
    with_connections_max_idle(connections_max_idle: Duration);
    /// Sets [`max_frame_bytes`](Self::max_frame_bytes) (no Java setting).
    with_max_frame_bytes(max_frame_bytes: usize);
    /// Sets [`metadata_max_age`](Self::metadata_max_age) (Java `metadata.max.age.ms`).
    with_metadata_max_age(metadata_max_age: Duration);
    /// Authenticates every connection with SASL: sets [`sasl`](Self::sasl) (Java `sasl.mechanism`, `sasl.jaas.config`).
    with_sasl(sasl: some SaslConfig);
    /// Uses TLS for every connection: sets [`tls`](Self::tls) (Java `security.protocol=SSL`).
    with_tls(tls: some TlsConfig);
}}

impl TlsConfig {
    /// Checks the settings that can be checked without reading the files (those are read, and
    /// their errors reported, when a connection is made): a server name, when set, is not
    /// empty.
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> crate::Result<()> {
        check(
            self.server_name
                .as_deref()
                .is_none_or(|n| !n.trim().is_empty()),
            || {
                format!(
                    "TlsConfig::server_name must not be empty, got {:?}",
                    self.server_name
                )
            },
        )
    }
}

with_setters! { TlsConfig {
    /// Trusts the CA certificate(s) of this PEM file: sets [`ca_file`](Self::ca_file) (Java `ssl.truststore.location`).
    with_ca_file(ca_file: some PathBuf);
    /// Sets [`server_name`](Self::server_name) (what Java's `ssl.endpoint.identification.algorithm=https` checks).
    with_server_name(server_name: some String);
}}

impl TlsConfig {
    /// Presents this client certificate chain and key (PEM files) for mutual TLS: sets
    /// [`client_cert`](Self::client_cert) (Java `ssl.keystore.location`).
    #[must_use]
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
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

/// Writes the chainable `with_*` setters of an options type, one per field, each with the doc
/// comment given: `with_x(x: T)` sets `x`; `with_x(x: into T)` takes `impl Into<T>`;
/// `with_x(x: some T)` sets an `Option<T>` field to `Some` (taking `impl Into<T>`). Shared by
/// kafka-rpc's options (as `krpc_kafka::__options_setters!`); not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! __options_setters {
    ($ty:ident { $($body:tt)* }) => {
        impl $ty {
            $crate::__options_setters!(@ $($body)*);
        }
    };
    (@) => {};
    (@ $(#[$m:meta])* $name:ident($field:ident: into $t:ty); $($rest:tt)*) => {
        $(#[$m])*
        #[must_use]
        pub fn $name(mut self, value: impl Into<$t>) -> Self {
            self.$field = value.into();
            self
        }
        $crate::__options_setters!(@ $($rest)*);
    };
    (@ $(#[$m:meta])* $name:ident($field:ident: some $t:ty); $($rest:tt)*) => {
        $(#[$m])*
        #[must_use]
        pub fn $name(mut self, value: impl Into<$t>) -> Self {
            self.$field = Some(value.into());
            self
        }
        $crate::__options_setters!(@ $($rest)*);
    };
    (@ $(#[$m:meta])* $name:ident($field:ident: $t:ty); $($rest:tt)*) => {
        $(#[$m])*
        #[must_use]
        pub fn $name(mut self, value: $t) -> Self {
            self.$field = value;
            self
        }
        $crate::__options_setters!(@ $($rest)*);
    };
}
// Crate-internal name; kafka-rpc's options use the exported one, so both crates' options
// get their setters from this one definition (`#[doc(hidden)]`: not part of the API).
pub(crate) use __options_setters as with_setters;

/// The longest duration a timing setting takes: `i32::MAX` milliseconds (about 24.8 days), the
/// bound of the Java clients' `*.ms` settings. Every timeout, interval, wait and backoff of the
/// options of both crates is checked against it when the options are validated: a longer one
/// would overflow the deadlines computed from it (`Instant::now() + timeout`).
pub const MAX_DURATION: Duration = Duration::from_millis(i32::MAX as u64);

/// Checks the timing settings of `owner` (an options type's name): each `(setting, value,
/// zero_allowed)` at most [`MAX_DURATION`], and above zero where `zero_allowed` is false (an
/// interval of zero would spin, or panic in `tokio::time::interval`). kafka-rpc checks its
/// options with it too; not part of the API.
#[doc(hidden)]
pub fn check_durations(
    owner: &str,
    settings: &[(&str, Option<Duration>, bool)],
) -> crate::Result<()> {
    for &(setting, value, zero_allowed) in settings {
        let Some(value) = value else { continue };
        check(value <= MAX_DURATION, || {
            format!(
                "{owner}::{setting} must be at most {MAX_DURATION:?} (i32::MAX ms, the Java \
                 clients' bound), got {value:?}"
            )
        })?;
        check(zero_allowed || !value.is_zero(), || {
            format!("{owner}::{setting} must be > 0, got 0s")
        })?;
    }
    Ok(())
}

/// `Err(InvalidArgument)` naming the setting and its value when `ok` is false.
pub(crate) fn check(ok: bool, what: impl FnOnce() -> String) -> crate::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(crate::Error::InvalidArgument(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, GroupConfig, GroupConsumer, KafkaClient, NewTopic};

    fn refused(r: crate::Result<()>) -> String {
        match r {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("not refused as InvalidArgument: {other:?}"),
        }
    }

    /// `connect` refuses a config before dialling, naming the setting: a zero request timeout
    /// used to be accepted and made every request time out at once.
    #[tokio::test]
    async fn connect_refuses_bad_settings_before_dialling() {
        let m = refused(
            KafkaClient::connect(
                ClientConfig::new("127.0.0.1:9").with_request_timeout(Duration::ZERO),
            )
            .await
            .map(drop),
        );
        assert!(
            m.contains("ClientConfig::request_timeout") && m.contains("got 0s"),
            "{m}"
        );
        // No port: refused at once, where it used to wait out the connect timeout.
        let m = refused(
            KafkaClient::connect(ClientConfig::new("127.0.0.1"))
                .await
                .map(drop),
        );
        assert!(
            m.contains("ClientConfig::bootstrap") && m.contains("host:port"),
            "{m}"
        );
        // Longer than i32::MAX ms: used to panic in `connect` (`Instant::now() + timeout`).
        let m = refused(
            KafkaClient::connect(
                ClientConfig::new("127.0.0.1:9").with_connect_timeout(Duration::MAX),
            )
            .await
            .map(drop),
        );
        assert!(
            m.contains("ClientConfig::connect_timeout") && m.contains("at most"),
            "{m}"
        );
        let m = refused(
            KafkaClient::connect(ClientConfig::new(" , "))
                .await
                .map(drop),
        );
        assert!(m.contains("ClientConfig::bootstrap"), "{m}");
        let m = refused(
            ClientConfig::new("b:9092")
                .with_tls(TlsConfig::default().with_server_name(""))
                .validate(),
        );
        assert!(m.contains("TlsConfig::server_name"), "{m}");
        let m = refused(
            ClientConfig::new("b:9092")
                .with_connect_timeout(Duration::ZERO)
                .validate(),
        );
        assert!(m.contains("ClientConfig::connect_timeout"), "{m}");
        let m = refused(
            ClientConfig::new("b:9092")
                .with_max_frame_bytes(0)
                .validate(),
        );
        assert!(m.contains("ClientConfig::max_frame_bytes"), "{m}");
        assert!(ClientConfig::new("b:9092").validate().is_ok());
    }

    /// The setters set what they name (a check on the macro writing them).
    #[test]
    fn setters_set_their_field() {
        let c = ClientConfig::new("a:1")
            .with_bootstrap(vec!["b:2".into()])
            .with_client_id("x")
            .with_retry_backoff_max(Duration::from_secs(7))
            .with_tls(
                TlsConfig::default()
                    .with_ca_file("ca.pem")
                    .with_client_cert("c.pem", "k.pem"),
            );
        assert_eq!(c.bootstrap, ["b:2"]);
        assert_eq!(c.client_id, "x");
        assert_eq!(c.retry_backoff_max, Duration::from_secs(7));
        let tls = c.tls.expect("set");
        assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(
            tls.client_cert,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
    }

    /// `GroupConsumer::new` refuses a bad group config before starting anything, naming the
    /// setting (group id, assignors and the zero timeouts were accepted before).
    #[test]
    fn group_consumer_new_refuses_bad_settings_naming_them() {
        let client = KafkaClient::unconnected(ClientConfig::new("127.0.0.1:9"));
        let base = GroupConfig::new("g", &["t"]);
        let cases = [
            (base.clone().with_group_id(""), "GroupConfig::group_id"),
            (base.clone().with_topics(vec![]), "GroupConfig::topics"),
            (
                base.clone().with_assignors(vec![]),
                "GroupConfig::assignors",
            ),
            (
                base.clone()
                    .with_heartbeat_interval(Duration::from_secs(30)),
                "GroupConfig::heartbeat_interval",
            ),
            (
                base.clone().with_rebalance_timeout(Duration::ZERO),
                "GroupConfig::rebalance_timeout",
            ),
            // Accepted before, and then heartbeat in a loop (review of stop 13).
            (
                base.clone().with_heartbeat_interval(Duration::ZERO),
                "GroupConfig::heartbeat_interval",
            ),
            (
                base.clone()
                    .with_fetch(crate::FetchConfig::default().with_max_bytes(0)),
                "FetchConfig::max_bytes",
            ),
        ];
        for (config, setting) in cases {
            let m = refused(GroupConsumer::new(client.clone(), config).map(drop));
            assert!(m.contains(setting), "{setting}: {m}");
        }
        assert!(base.validate().is_ok());
    }

    /// `create_topics` refuses a bad topic before sending anything (the broker's
    /// INVALID_PARTITIONS / INVALID_REPLICATION_FACTOR came back before).
    #[tokio::test]
    async fn create_topics_refuses_bad_topics_before_sending() {
        let client = KafkaClient::unconnected(ClientConfig::new("127.0.0.1:9"));
        let m = refused(client.create_topics(&[NewTopic::new("t", 0)], true).await);
        assert!(
            m.contains("NewTopic::partitions") && m.contains("got 0"),
            "{m}"
        );
        let m = refused(NewTopic::new("t", 3).with_replication_factor(0).validate());
        assert!(m.contains("NewTopic::replication_factor"), "{m}");
        let m = refused(NewTopic::new("", 3).validate());
        assert!(m.contains("NewTopic::name"), "{m}");
        assert!(NewTopic::new("t", -1)
            .with_config("retention.ms", "1")
            .validate()
            .is_ok());
    }
}
