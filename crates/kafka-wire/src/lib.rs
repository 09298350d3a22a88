//! kafka-wire: a minimal pure-Rust Kafka client.
//!
//! It knows nothing of RPC. Messages are encoded by the `kafka-protocol` crate; this crate adds
//! connections with pipelining ([`connection`]), version negotiation ([`versions`]), a metadata
//! cache and connection pool ([`client`]), topic creation ([`topics`]), offset lookups
//! ([`offsets`]), a batching producer ([`producer`]) and a long-poll fetcher ([`fetcher`]).
//!
//! Security: [`ClientConfig::sasl`] authenticates every connection right after ApiVersions with
//! SASL PLAIN or SCRAM-SHA-256/512 ([`sasl`]; failures are [`Error::Authentication`]).
//! [`ClientConfig::tls`] runs every connection through TLS (rustls) when the crate is built with
//! its `tls` feature (the graviola crypto provider: no C) or `tls-ring` (ring: compiles C); see
//! `tls` and [`tls_provider`]. Without either, a TLS setting fails with [`Error::Tls`].

pub mod backoff;
pub mod client;
pub mod compression;
pub mod config;
pub mod connection;
pub mod error;
pub mod fetcher;
pub mod frame;
pub mod group;
pub mod metadata;
pub mod offsets;
pub mod producer;
pub mod protocol;
pub mod records;
pub mod sasl;
#[cfg(any(feature = "tls", feature = "tls-ring"))]
pub mod tls;
pub mod topics;
pub mod versions;

pub use client::{Client, Lane};
pub use compression::Codec;
pub use config::{ClientConfig, TlsConfig};
pub use error::{classify, Error, Recovery, Result};
pub use fetcher::{FetchConfig, Fetcher, IsolationLevel, OffsetReset, SkippedBatch};
pub use group::{GroupCommitter, GroupConfig, GroupConsumer, GroupEvent};
pub use offsets::OffsetSpec;
pub use producer::{Acks, Producer, ProducerConfig, RecordMetadata};
pub use records::{ConsumerRecord, Header, ProducerRecord};
pub use sasl::{SaslConfig, SaslMechanism};
pub use topics::NewTopic;

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
        Err("kafka-wire was built without TLS (its `tls` feature)".to_string())
    }
}
