//! Typed services: `#[kafka_rpc::service]` on a trait, and what the code it generates runs on.
//!
//! For a trait `Sum` the attribute generates:
//! - the trait itself, each `async fn` declared as returning a `Send` future (an `impl` still
//!   writes `async fn`), with `Send + Sync + 'static` as supertraits;
//! - `SumServer<S>`: an implementation `S` of the trait as a [`Service`](crate::Service), for
//!   [`Server::service`](crate::Server::service). It dispatches on the method name, decodes the
//!   arguments (a msgpack array, wire/WIRE.md section 6) into the method's parameter types
//!   (INVALID_ARGUMENT otherwise), and gives the parameter names for the keyword arguments of
//!   Python kafka-rpc 1.0.8 callers ([`Service::parameters`](crate::Service::parameters)).
//!   `SumServer::<S>::options()` are [`ServerOptions`](crate::ServerOptions) with the service's
//!   name; [`Server::run`](crate::Server::run) refuses to serve it under another name;
//! - `SumClient`: one method per trait method, with the same parameters, returning a [`Call`]
//!   to set per-call options on (timeout, routing key, metadata) and `.await`.
//!
//! The service name is the trait's name unless `#[kafka_rpc::service(name = "...")]` says
//! otherwise; it is checked when compiling (the characters a topic name allows). Method and
//! parameter names on the wire are the trait's.
//!
//! What a method returns decides what its call resolves to:
//! - `T` (or nothing): `Result<T, RpcError>`; a method returning `()` may also be sent one-way
//!   ([`Call::one_way`]);
//! - `Result<T, E>`, written so (the macro reads the type's name; an alias is taken as a plain
//!   value), `E` the service's own error type (`Serialize`, `Deserialize`, `Display`):
//!   `Result<Result<T, E>, RpcError>`. The server answers an `Err` with status UNKNOWN, the
//!   `Display` text as the message (what Python and `krpc call` callers see) and the error
//!   value as the reply's value ([`user_error`]); the typed client decodes it back into `E`.
//!
//! A parameter `ctx: &RequestContext` (or `RequestContext` by value), anywhere among the
//! parameters, receives the [`RequestContext`](crate::RequestContext); it is no argument on the
//! wire. Every other parameter is an owned serde type. The macro refuses, with a message
//! saying why, what it cannot serve: a method that is not `async`, generic methods or traits,
//! `self` by value or `&mut self`, borrowed or unnamed parameters, default bodies, supertraits,
//! items other than methods.
//!
//! ```no_run
//! use std::time::Duration;
//! use kafka_rpc::{RpcClient, ClientOptions, RequestContext, Server};
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! pub enum SumError {
//!     Overflow,
//! }
//!
//! impl std::fmt::Display for SumError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("the sum overflows")
//!     }
//! }
//!
//! #[kafka_rpc::service]
//! pub trait Sum {
//!     async fn add(&self, x: i64, y: i64) -> Result<i64, SumError>;
//!     async fn who(&self, ctx: &RequestContext) -> String;
//! }
//!
//! struct Adder;
//!
//! impl Sum for Adder {
//!     async fn add(&self, x: i64, y: i64) -> Result<i64, SumError> {
//!         x.checked_add(y).ok_or(SumError::Overflow)
//!     }
//!
//!     async fn who(&self, ctx: &RequestContext) -> String {
//!         ctx.metadata().get_str("user").unwrap_or("anonymous").to_string()
//!     }
//! }
//!
//! # async fn demo(kafka: kafka_rpc::krpc_kafka::KafkaClient) -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::new(kafka.clone(), SumServer::<Adder>::options())?
//!     .service(SumServer::new(Adder));
//! tokio::spawn(server.run(std::future::pending()));
//!
//! let sum = SumClient::new(RpcClient::connect(kafka, ClientOptions::default()).await?);
//! assert_eq!(sum.add(1, 2).await?.ok(), Some(3));
//! let overflow = sum.add(i64::MAX, 1).timeout(Duration::from_secs(5)).await?;
//! assert!(matches!(overflow, Err(SumError::Overflow)));
//! let me = sum.who().metadata("user", "ada").await?;
//! assert_eq!(me, "ada");
//! # Ok(())
//! # }
//! ```

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

#[doc(hidden)]
pub use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{CallOptions, NotifyOptions, RpcClient};
use crate::codec;
use crate::envelope::RequestId;
use crate::error::{HandlerError, RpcError};
use crate::status::StatusCode;

/// A future boxed so that the typed client's futures have a name.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One call of a typed client's method, not sent yet: set per-call options, then `.await` it
/// (or send it without waiting for a reply with [`Call::one_way`], for methods returning `()`).
///
/// `A` is the tuple of the arguments (encoded as a msgpack array, wire/WIRE.md section 6), `R`
/// the shape of the method's result ([`Value`] or [`Fallible`]).
#[must_use = "a call is sent only when awaited"]
pub struct Call<A, R> {
    client: RpcClient,
    service: &'static str,
    method: &'static str,
    args: A,
    options: CallOptions,
    _returns: PhantomData<fn() -> R>,
}

impl<A, R> Call<A, R> {
    /// A call of `service.method(args)` through `client` with `options`; the generated client
    /// builds it.
    #[doc(hidden)]
    pub fn new(
        client: RpcClient,
        options: CallOptions,
        service: &'static str,
        method: &'static str,
        args: A,
    ) -> Self {
        Self {
            client,
            service,
            method,
            args,
            options,
            _returns: PhantomData,
        }
    }

    /// How long to wait for the reply (the client's default timeout otherwise); it travels
    /// with the request as its deadline ([`CallOptions::timeout`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// The routing key: calls with the same key run one after another, in the order sent
    /// ([`CallOptions::routing_key`]).
    pub fn routing_key(mut self, key: impl Into<Bytes>) -> Self {
        self.options.routing_key = Some(key.into());
        self
    }

    /// Adds a caller metadata entry, delivered to the handler's
    /// [`RequestContext::metadata`](crate::RequestContext::metadata) ([`CallOptions::metadata`];
    /// a name outside `a-z 0-9 - _ .` fails the call with `InvalidArgument`).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.options.metadata.insert(name, value);
        self
    }

    /// Replaces every per-call option at once.
    pub fn options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// The service and method this call goes to.
    pub fn target(&self) -> (&'static str, &'static str) {
        (self.service, self.method)
    }
}

impl<A> Call<A, Value<()>>
where
    A: Serialize + Send + Sync + 'static,
{
    /// Sends the call as a one-way job (no reply; [`RpcClient::notify`]): resolves once Kafka has
    /// stored it, to its request id. The call's timeout, if set, becomes the job's deadline (no
    /// server starts it later); its routing key is kept. Only methods returning `()` have it.
    pub fn one_way(self) -> BoxFuture<Result<RequestId, RpcError>> {
        let options = NotifyOptions {
            deadline: self.options.timeout,
            routing_key: self.options.routing_key,
            metadata: self.options.metadata,
        };
        Box::pin(async move {
            self.client
                .notify(self.service, self.method, &self.args, options)
                .await
        })
    }
}

impl<A, R> IntoFuture for Call<A, R>
where
    A: Serialize + Send + Sync + 'static,
    R: Returns,
{
    type Output = R::Output;
    type IntoFuture = BoxFuture<R::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let result = self
                .client
                .call::<A, R::Wire>(self.service, self.method, &self.args, self.options)
                .await
                .map(|r| r.value);
            R::finish(result)
        })
    }
}

/// The shape of a typed method's result: what travels in an OK reply (`Wire`) and what the
/// typed client's call resolves to (`Output`).
pub trait Returns: Send + 'static {
    /// The value of an OK reply.
    type Wire: DeserializeOwned + Send + 'static;
    /// What the call resolves to.
    type Output: Send + 'static;
    /// Turns the call's outcome into the method's result.
    fn finish(result: Result<Self::Wire, RpcError>) -> Self::Output;
}

/// A method returning `T`: the call resolves to `Result<T, RpcError>`.
pub struct Value<T>(PhantomData<fn() -> T>);

impl<T: DeserializeOwned + Send + 'static> Returns for Value<T> {
    type Wire = T;
    type Output = Result<T, RpcError>;

    fn finish(result: Result<T, RpcError>) -> Self::Output {
        result
    }
}

/// A method returning `Result<T, E>` (its own error type `E`): the call resolves to
/// `Result<Result<T, E>, RpcError>`; the inner `Err` is the handler's error value, decoded
/// from the error reply's value, and the outer one everything else (transport, timeout, a
/// status without an error value of the method's type).
pub struct Fallible<T, E>(PhantomData<fn() -> (T, E)>);

impl<T, E> Returns for Fallible<T, E>
where
    T: DeserializeOwned + Send + 'static,
    E: DeserializeOwned + Send + 'static,
{
    type Wire = T;
    type Output = Result<Result<T, E>, RpcError>;

    fn finish(result: Result<T, RpcError>) -> Self::Output {
        match result {
            Ok(v) => Ok(Ok(v)),
            Err(RpcError::Status {
                service,
                method,
                request_id,
                details: Some(details),
                ..
            }) => codec::decode::<E>(&details)
                .map(Err)
                .map_err(|reason| RpcError::Codec {
                    context: format!(
                        "decoding the error value of {service}.{method} (request {request_id})"
                    ),
                    reason,
                }),
            Err(e) => Err(e),
        }
    }
}

/// Decodes a typed method's arguments (a msgpack array of the positional arguments) into
/// their tuple; a mismatch is INVALID_ARGUMENT, as for [`Server::method`](crate::Server::method).
#[doc(hidden)]
pub fn decode_args<A: DeserializeOwned>(args: &[u8]) -> Result<A, HandlerError> {
    codec::decode_args(args).map_err(|e| {
        HandlerError::new(
            StatusCode::InvalidArgument,
            format!("the arguments do not match the method's parameters: {e}"),
        )
    })
}

/// Encodes a typed method's result; a failure is INTERNAL.
#[doc(hidden)]
pub fn encode_result<T: Serialize>(value: &T) -> Result<Bytes, HandlerError> {
    codec::encode(value).map_err(|e| {
        HandlerError::new(
            StatusCode::Internal,
            format!("cannot encode the result: {e}"),
        )
    })
}

/// Compile-time check that a typed method's parameter or result type travels: the generated
/// code calls it (never at run time) with the span of the type, so a missing serde derive is
/// reported at the type.
#[doc(hidden)]
pub fn assert_wire_type<T: Serialize + DeserializeOwned>() {}

/// A handler's own error value as a reply: status UNKNOWN, its `Display` text as the message
/// (what a Python caller or `krpc call` shows), and the value itself, msgpack-encoded, as the
/// details the typed client decodes (wire/WIRE.md section 4). An error value that cannot be
/// encoded becomes an INTERNAL status naming why.
pub fn user_error<E: Serialize + std::fmt::Display>(error: &E) -> HandlerError {
    match codec::encode(error) {
        Ok(details) => {
            HandlerError::new(StatusCode::Unknown, error.to_string()).with_details(details)
        }
        Err(e) => HandlerError::new(
            StatusCode::Internal,
            format!("the handler failed ({error}) and its error value cannot be encoded: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
    enum DivError {
        #[error("division of {0} by zero")]
        ByZero(i64),
    }

    #[test]
    fn a_user_error_travels_as_details_and_comes_back_typed() {
        let e = user_error(&DivError::ByZero(7));
        assert_eq!(e.code, StatusCode::Unknown);
        assert_eq!(e.message, "division of 7 by zero");
        let status = RpcError::Status {
            service: "Calc".into(),
            method: "div".into(),
            request_id: "x".into(),
            code: e.code,
            message: e.message,
            details: e.details.map(|d| d.to_vec().into()),
        };
        let out = Fallible::<i64, DivError>::finish(Err(status));
        assert_eq!(out.unwrap(), Err(DivError::ByZero(7)));
        // A status without details (a refusal, a panic) stays an RpcError.
        let plain = RpcError::Status {
            service: "Calc".into(),
            method: "div".into(),
            request_id: "x".into(),
            code: StatusCode::Internal,
            message: "panicked".into(),
            details: None,
        };
        assert!(Fallible::<i64, DivError>::finish(Err(plain)).is_err());
        // Details of another type: a codec error naming the call, not a wrong value.
        let wrong = RpcError::Status {
            service: "Calc".into(),
            method: "div".into(),
            request_id: "x".into(),
            code: StatusCode::Unknown,
            message: "?".into(),
            details: Some(codec::encode(&"text").unwrap().to_vec().into()),
        };
        match Fallible::<i64, DivError>::finish(Err(wrong)) {
            Err(RpcError::Codec { context, .. }) => assert!(context.contains("Calc.div")),
            other => panic!("{other:?}"),
        }
    }

    /// The error value through the record codec, as the server writes it and the client reads
    /// it: plain, and sealed under payload security (an error without a value stays unsealed).
    #[test]
    fn a_user_error_value_crosses_the_record_codec_plain_and_sealed() {
        use crate::codec::record::{ClientCodec, Opened, ServerCodec};
        use crate::envelope::Reply;
        use crate::security::PayloadSecurity;

        let security = PayloadSecurity::new(1, "correct horse battery").unwrap();
        for sealing in [None, Some(security)] {
            let server = ServerCodec::Native {
                sealing: sealing.clone(),
                replay_window: Duration::from_secs(600),
            };
            let client = ClientCodec::Native {
                sealing: sealing.clone(),
            };
            let id = RequestId([3; 16]);
            let read = |reply: &Reply| {
                let r = server.reply_record(reply);
                let record = krpc_kafka::ConsumerRecord {
                    topic: "krpc.replies".into(),
                    partition: 0,
                    offset: 0,
                    timestamp: 0,
                    log_append_time: false,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                };
                client.open_reply(&record)
            };
            let failed = Err(user_error(&DivError::ByZero(9)));
            let reply = server.reply(id, failed, "s1", 10, 0);
            assert_eq!(reply.key_id.is_some(), sealing.is_some());
            match read(&reply) {
                Opened::Failed(code, message, details) => {
                    assert_eq!(
                        (code, message.as_str()),
                        (StatusCode::Unknown, "division of 9 by zero")
                    );
                    assert_eq!(
                        codec::decode::<DivError>(&details).unwrap(),
                        DivError::ByZero(9)
                    );
                }
                _ => panic!("sealing {}: not a typed failure", sealing.is_some()),
            }
            let plain = server.reply(id, Err(HandlerError::from("boom")), "s1", 10, 0);
            assert!(plain.key_id.is_none() && plain.payload.is_empty());
            assert!(matches!(read(&plain), Opened::Status(StatusCode::Unknown, m) if m == "boom"));
        }
    }
}
