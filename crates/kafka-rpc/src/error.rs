//! The errors a caller or a server sees.

use std::time::Duration;

use crate::status::StatusCode;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The server answered with an error status.
    #[error("{service}.{method} (request {request_id}): {code}: {message}")]
    Status {
        /// Service called.
        service: String,
        /// Method called.
        method: String,
        /// Request id.
        request_id: String,
        /// The status.
        code: StatusCode,
        /// The server's message.
        message: String,
        /// The handler's error value (msgpack), when a typed service's method returned its own
        /// error type (`Result<T, E>`; see [`crate::typed`]); the typed client decodes it.
        /// (A boxed slice keeps `RpcError` small.)
        details: Option<Box<[u8]>>,
    },
    /// A legacy (Python) server's method raised: its exception line and traceback (the
    /// pickled exception itself is never read).
    #[error("{service}.{method} (request {request_id}): raised {exception}")]
    Remote {
        /// Service called.
        service: String,
        /// Method called.
        method: String,
        /// Request id.
        request_id: String,
        /// The traceback's last line (`ValueError: bad`).
        exception: String,
        /// The whole traceback text.
        traceback: String,
    },
    /// No reply within the call's timeout.
    #[error("{service}.{method} (request {request_id}): {} within {timeout:?}", if *stored { "no reply" } else { "not even stored in Kafka" })]
    Timeout {
        /// Service called.
        service: String,
        /// Method called.
        method: String,
        /// Request id.
        request_id: String,
        /// The timeout.
        timeout: Duration,
        /// Whether the request had been stored in Kafka (acknowledged) when the time ran out.
        stored: bool,
    },
    /// The Kafka layer failed (broker unreachable, produce failed...).
    #[error("{context}: {source}")]
    Kafka {
        /// What we were doing.
        context: String,
        /// The Kafka error.
        #[source]
        source: krpc_kafka::Error,
    },
    /// The arguments could not be encoded, or the result decoded.
    #[error("{context}: {reason}")]
    Codec {
        /// What we were doing.
        context: String,
        /// Why it failed.
        reason: String,
    },
    /// An argument or setting is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The service called has no request topic: no server of it ever ran (or the name is
    /// misspelt). Creating request topics is the server's job, or the client's when
    /// [`ClientOptions::create_request_topics`](crate::ClientOptions::create_request_topics)
    /// is set.
    #[error("unknown service {service:?}: its request topic {topic} does not exist (start a server of it first, or let the caller create it: ClientOptions::create_request_topics, krpc call --create-request-topic)")]
    UnknownService {
        /// Service called.
        service: String,
        /// The request topic looked up.
        topic: String,
    },
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

impl RpcError {
    /// The status code this error amounts to.
    pub fn code(&self) -> StatusCode {
        match self {
            RpcError::Status { code, .. } => *code,
            RpcError::Remote { .. } => StatusCode::Unknown,
            RpcError::Timeout { .. } => StatusCode::DeadlineExceeded,
            RpcError::Kafka { .. } | RpcError::Closed => StatusCode::Unavailable,
            RpcError::Codec { .. } | RpcError::InvalidArgument(_) => StatusCode::InvalidArgument,
            RpcError::UnknownService { .. } => StatusCode::Unimplemented,
        }
    }

    pub(crate) fn kafka(context: impl Into<String>, source: krpc_kafka::Error) -> Self {
        RpcError::Kafka {
            context: context.into(),
            source,
        }
    }
}

/// What a handler returns when it fails: a status code and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// The status (`Unknown` unless the handler chose one).
    pub code: StatusCode,
    /// The message the caller sees.
    pub message: String,
    /// The handler's own error value, msgpack-encoded (a typed service's `Result<T, E>`), sent
    /// as the reply's value (wire/WIRE.md section 4) for the typed client to decode; `None`:
    /// the reply's value is empty.
    pub details: Option<bytes::Bytes>,
}

impl HandlerError {
    /// An error with a chosen status code.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Attaches the handler's error value, msgpack-encoded (see [`HandlerError::details`]).
    pub fn with_details(mut self, details: bytes::Bytes) -> Self {
        self.details = Some(details);
        self
    }

    /// `UNIMPLEMENTED`: the service has no method `method`.
    pub fn unimplemented(method: &str) -> Self {
        Self::new(
            StatusCode::Unimplemented,
            format!("the service has no method {method:?}"),
        )
    }
}

impl<E: std::fmt::Display> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self {
            code: StatusCode::Unknown,
            message: e.to_string(),
            details: None,
        }
    }
}
