//! kafka-rpc: remote procedure calls over Apache Kafka.
//!
//! A [`Server`] serves one [`Service`]: it joins the service's consumer group on the
//! service's request topic, runs handlers concurrently (each with a [`RequestContext`]:
//! request id, deadline, routing key, caller [`Metadata`], cancellation) and replies. A
//! [`Client`] calls methods with [`Client::call`] (and waits for the reply in its slot of the
//! shared reply topic) or sends one-way jobs with [`Client::notify`]. Calls wait in Kafka while no server runs. The wire
//! format is written down in `wire/WIRE.md`. Everything Kafka goes through `kafka-wire`; this
//! crate never builds a Kafka frame.

pub mod client;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod legacy;
pub mod naming;
pub mod security;
pub mod server;
pub mod service;
pub mod status;
pub mod topics;

pub use client::{CallMeta, CallOptions, Client, ClientOptions, NotifyOptions, Response};
pub use error::{HandlerError, RpcError};
pub use kafka_wire;
pub use legacy::{LegacyClient, LegacyClientOptions, LegacyOptions};
pub use server::{Server, ServerOptions, ServerStats};
pub use service::{
    CancelReason, Metadata, Methods, RequestContext, Service, ServiceFuture, METADATA_HEADER_PREFIX,
};
pub use status::StatusCode;
pub use topics::TopicOptions;
