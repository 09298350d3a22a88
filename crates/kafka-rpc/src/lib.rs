//! kafka-rpc: remote procedure calls over Apache Kafka.
//!
//! # Layout
//!
//! A [`Server`] serves one [`Service`]: it joins the service's consumer group on the
//! service's request topic, runs handlers concurrently (each with a [`RequestContext`]:
//! request id, deadline, routing key, caller [`Metadata`], cancellation) and replies
//! ([`server`], settings in [`ServerOptions`]). A service is written once as a trait with
//! [`macro@service`] (a typed client and server are generated), or built method by method
//! with [`Server::method`]. A [`RpcClient`] calls methods with [`RpcClient::call`] (and waits for the reply
//! in its slot of the shared reply topic) or sends one-way jobs with [`RpcClient::notify`]
//! ([`client`], settings in [`ClientOptions`] and per call [`CallOptions`]). Calls wait in
//! Kafka while no server runs. Failures are an [`RpcError`]; a handler fails with a
//! [`HandlerError`] carrying a [`StatusCode`]. [`legacy`] speaks the Python kafka-rpc 1.0.8
//! format ([`LegacyClient`], and [`ServerOptions::legacy`] for servers); [`security`] seals
//! payloads. [`trace`] makes a `tracing` span of every call and request and carries the W3C
//! trace context in the request's headers (optionally into OpenTelemetry: feature `otel`).
//!
//! The wire format (the envelope and codec modules, crate-private; topic names in [`naming`];
//! topic settings in [`topic_setup`]) is written down in `wire/WIRE.md`. Everything Kafka goes
//! through [`krpc_kafka`] (re-exported): this crate never builds a Kafka frame.
//!
//! # Examples
//!
//! A server and a client of the service `Sum` (they may run in different processes):
//!
//! ```no_run
//! use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
//! use kafka_rpc::{CallOptions, RpcClient, ClientOptions, HandlerError, Server, ServerOptions};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! let server = Server::new(kafka.clone(), ServerOptions::new("Sum"))?
//!     .method("add", |(a, b): (i64, i64)| async move {
//!         a.checked_add(b).ok_or_else(|| HandlerError::from("overflow"))
//!     });
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(server.run(async {
//!     let _ = stopped.await;
//! }));
//!
//! // The server may not have created the request topic yet: let the client create it (by
//! // default a call to a service with no request topic is refused, so a typo makes no topic).
//! let options = ClientOptions::default().with_create_request_topics(true);
//! let client = RpcClient::connect(kafka, options).await?;
//! let sum = client.call::<_, i64>("Sum", "add", &(1, 2), CallOptions::default()).await?;
//! assert_eq!(sum.value, 3);
//!
//! // A graceful stop: the server finishes, commits and leaves the group, so the next one is
//! // assigned its partitions at once, not after the session timeout.
//! let _ = stop.send(());
//! let stats = serving.await??;
//! # let _ = stats;
//! # Ok(())
//! # }
//! ```

// The crate README's example compiles as a doctest too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// Modules public only with this crate's `unstable-internals` feature: krpc-kafka's one
// definition of the rule.
pub(crate) use krpc_kafka::__internal_mods as internal_mods;

pub mod client;
pub mod error;
pub mod legacy;
pub mod metrics;
pub mod naming;
pub mod security;
pub mod server;
pub mod service;
pub mod status;
pub mod topic_setup;
pub mod trace;
pub mod typed;

internal_mods! {
    codec;
    envelope;
}

// The generated code names this crate `::kafka_rpc`, in its own tests too.
extern crate self as kafka_rpc;

pub use client::{CallMeta, CallOptions, ClientOptions, NotifyOptions, Response, RpcClient};
pub use envelope::{ReplyTo, RequestId};
pub use error::{HandlerError, RpcError};
/// Turns a trait into a typed service: a [`Service`] for the server side and a typed client
/// (see [`typed`] for what it generates and what it refuses).
pub use kafka_rpc_macros::service;
pub use krpc_kafka;
pub use legacy::{LegacyClient, LegacyClientOptions, LegacyOptions};
pub use server::{Server, ServerOptions, ServerStats};
#[cfg(feature = "unstable-internals")]
pub use service::Methods;
pub use service::{
    CancelReason, ContextBuilder, Metadata, RequestContext, Service, ServiceFuture,
    METADATA_HEADER_PREFIX,
};
pub use status::StatusCode;
pub use topic_setup::TopicOptions;
