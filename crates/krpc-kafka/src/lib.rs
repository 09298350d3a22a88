//! krpc-kafka: a minimal pure-Rust Kafka client. It knows nothing of RPC.
//!
//! # Layout
//!
//! What most users need is re-exported at the root: a [`KafkaClient`] (one handle on a cluster,
//! configured by [`ClientConfig`]; cheap to clone) is shared by a [`Producer`] (batching,
//! idempotent produce), a [`Fetcher`] (reads assigned partitions from given offsets) and a
//! [`GroupConsumer`] (a consumer-group member: subscribes to topics, yields records and
//! rebalance events, commits offsets). Topic administration is on [`KafkaClient`]
//! ([`KafkaClient::create_topics`] with [`NewTopic`]); offset lookups in [`list_offsets`]. Every fallible
//! call returns the one [`Error`] type, whose variants name the broker, API, topic/partition
//! and offset concerned ([`Error::recovery`] says whether to retry).
//!
//! Below that, modules in dependency order: `frame` (size-prefixed framing), `messages` (glue
//! to the `kafka-protocol` messages), `connection` (one broker connection, pipelined) and
//! `versions` (ApiVersions negotiation), which are crate-private (public only with the
//! `unstable-internals` feature, for this repository's fuzz targets and fake broker: no semver
//! promise); then [`sasl`], `tls`, [`client`] and [`metadata`] (connection pool, metadata
//! cache), [`records`] and [`compression`] (v2 record batches, read hostile-safe), [`producer`],
//! [`fetcher`], [`group`], [`backoff`] (the one retry policy). Messages are encoded by the
//! patched copy of `kafka-protocol` shipped as the crate `krpc-kafka-protocol`; no type of it
//! appears in the public API ([`ApiKey`] and [`ErrorCode`] are this crate's own).
//!
//! Security: [`ClientConfig::sasl`] authenticates every connection right after ApiVersions with
//! SASL PLAIN or SCRAM-SHA-256/512 ([`sasl`]; failures are [`Error::Authentication`]).
//! [`ClientConfig::tls`] runs every connection through TLS (rustls) when the crate is built with
//! its `tls` feature (the graviola crypto provider: no C) or `tls-ring` (ring: compiles C); see
//! `tls` and [`tls_provider`]. Without either, a TLS setting fails with [`Error::Tls`].
//!
//! # Examples
//!
//! ```no_run
//! use krpc_kafka::{KafkaClient, ClientConfig, FetchConfig, Fetcher, Producer, ProducerConfig, ProducerRecord};
//!
//! # async fn example() -> krpc_kafka::Result<()> {
//! let client = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! let producer = Producer::new(client.clone(), ProducerConfig::default())?;
//! let stored = producer.produce("events", ProducerRecord::value("hello")).await?;
//!
//! let mut fetcher = Fetcher::new(client, FetchConfig::default())?;
//! fetcher.assign("events", stored.partition, stored.offset);
//! let records = fetcher.poll().await?;
//! # Ok(())
//! # }
//! ```

// The crate README's example compiles as a doctest too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Declares modules that are public with the `unstable-internals` feature (for this
/// repository's fuzz targets, fake broker and golden tests; no semver promise) and crate-private
/// without it. Items inside public modules use `visibility::make` instead. kafka-rpc gates its
/// own internals with it (as `krpc_kafka::__internal_mods!`; the feature checked is the calling
/// crate's); not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! __internal_mods {
    ($($(#[$meta:meta])* $name:ident;)*) => {$(
        $(#[$meta])*
        #[cfg(feature = "unstable-internals")]
        pub mod $name;
        $(#[$meta])*
        #[cfg(not(feature = "unstable-internals"))]
        #[allow(dead_code)]
        pub(crate) mod $name;
    )*};
}
pub(crate) use __internal_mods as internal_mods;

pub mod backoff;
pub mod client;
pub mod compression;
pub mod config;
pub mod delete_records;
pub mod error;
pub mod fetcher;
pub mod group;
pub mod list_offsets;
pub mod metadata;
pub mod producer;
pub mod records;
pub mod sasl;
#[cfg(any(feature = "tls", feature = "tls-ring"))]
pub mod tls;
pub mod topic_admin;
pub mod topic_configs;

mod fast_map;

internal_mods! {
    connection;
    frame;
    messages;
    versions;
}

pub use client::KafkaClient;
#[cfg(feature = "unstable-internals")]
pub use client::Lane;
pub use compression::Codec;
pub use config::{ClientConfig, TlsConfig};
pub use error::{classify, ApiKey, Error, ErrorCode, Recovery, Result};
pub use fetcher::{FetchConfig, Fetcher, IsolationLevel, OffsetReset, SkippedBatch};
pub use group::{
    GroupCommitter, GroupConfig, GroupConsumer, GroupDescription, GroupEvent,
    GroupMemberDescription, ListedGroup,
};
pub use list_offsets::OffsetSpec;
pub use producer::{Acks, Producer, ProducerConfig, RecordMetadata};
pub use records::{ConsumerRecord, Header, ProducerRecord};
pub use sasl::{SaslConfig, SaslMechanism};
pub use topic_admin::NewTopic;
pub use topic_configs::TopicConfigEntry;

/// The TLS crypto provider [`ClientConfig::tls`] uses in this build on this CPU: `Ok("graviola")`
/// (feature `tls`) or `Ok("ring")` (feature `tls-ring`); `Err` says why there is none (no TLS
/// feature, or a CPU without the features graviola needs and no `tls-ring` to fall back to).
pub fn tls_provider() -> std::result::Result<&'static str, String> {
    #[cfg(any(feature = "tls", feature = "tls-ring"))]
    {
        tls::provider().map(|(name, _)| name)
    }
    #[cfg(not(any(feature = "tls", feature = "tls-ring")))]
    {
        Err("krpc-kafka was built without TLS (its `tls` feature)".to_string())
    }
}
