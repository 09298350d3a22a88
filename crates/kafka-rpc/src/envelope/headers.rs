//! The record header names of the wire format (wire/WIRE.md), and typed readers for them.

use bytes::Bytes;
use krpc_kafka::{ConsumerRecord, Header};

/// Wire format version (1 byte).
pub const VERSION: &str = "krpc-v";
/// Request id (16 bytes), on requests and replies.
pub const ID: &str = "krpc-id";
/// Method name (UTF-8), on requests.
pub const METHOD: &str = "krpc-method";
/// Reply topic (UTF-8), on requests that want a reply.
pub const REPLY_TOPIC: &str = "krpc-reply-topic";
/// Reply partition (4-byte big-endian signed), with the reply topic.
pub const REPLY_PARTITION: &str = "krpc-reply-partition";
/// Absolute deadline, ms since the Unix epoch (8-byte big-endian signed), optional.
pub const DEADLINE: &str = "krpc-deadline-ms";
/// When the client sent the request, ms since the Unix epoch (8-byte big-endian signed).
pub const SENT: &str = "krpc-sent-ms";
/// Status code (2-byte big-endian unsigned), on replies.
pub const STATUS: &str = "krpc-status";
/// Error message (UTF-8), on replies whose status is not OK.
pub const MESSAGE: &str = "krpc-message";
/// Id of the server that answered (UTF-8), on replies.
pub const SERVER: &str = "krpc-server";
/// Time the handler ran, µs (8-byte big-endian unsigned), on replies.
pub const HANDLER_US: &str = "krpc-handler-us";
/// Time the request waited in Kafka before a server picked it up, ms (8-byte big-endian signed).
pub const QUEUE_MS: &str = "krpc-queue-ms";

/// Id of the key that sealed the value (2-byte big-endian unsigned); present only when the
/// payload is sealed (payload security).
pub const KEY_ID: &str = "krpc-key-id";

/// The wire format version this crate writes and reads.
pub const WIRE_VERSION: u8 = 1;

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required header is absent (or null).
    #[error("header {0} is missing")]
    Missing(&'static str),
    /// A header has the wrong length.
    #[error("header {name} has {got} bytes, expected {want}")]
    Length {
        /// Header name.
        name: &'static str,
        /// Bytes present.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// A text header is not UTF-8.
    #[error("header {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// The record uses a wire version this crate does not speak.
    #[error("wire version {0} is not supported (this crate speaks {WIRE_VERSION})")]
    Version(u8),
}

/// Typed access to the headers of one received record.
pub struct Headers<'a>(pub &'a ConsumerRecord);

impl Headers<'_> {
    /// The raw value of `name`, if present and not null.
    pub fn raw(&self, name: &'static str) -> Option<&Bytes> {
        self.0.header(name)
    }

    /// A required fixed-length header.
    pub fn fixed<const N: usize>(&self, name: &'static str) -> Result<[u8; N], HeaderError> {
        let v = self.raw(name).ok_or(HeaderError::Missing(name))?;
        <[u8; N]>::try_from(&v[..]).map_err(|_| HeaderError::Length {
            name,
            got: v.len(),
            want: N,
        })
    }

    /// An optional fixed-length header.
    pub fn fixed_opt<const N: usize>(
        &self,
        name: &'static str,
    ) -> Result<Option<[u8; N]>, HeaderError> {
        match self.raw(name) {
            None => Ok(None),
            Some(_) => self.fixed(name).map(Some),
        }
    }

    /// A required UTF-8 header.
    pub fn text(&self, name: &'static str) -> Result<String, HeaderError> {
        let v = self.raw(name).ok_or(HeaderError::Missing(name))?;
        String::from_utf8(v.to_vec()).map_err(|_| HeaderError::NotUtf8(name))
    }

    /// An optional UTF-8 header.
    pub fn text_opt(&self, name: &'static str) -> Result<Option<String>, HeaderError> {
        match self.raw(name) {
            None => Ok(None),
            Some(_) => self.text(name).map(Some),
        }
    }
}

/// A header with a fixed-size big-endian value.
pub fn header(name: &str, value: impl Into<Bytes>) -> Header {
    Header::new(name, value)
}
