//! The RPC envelope: how a call and its reply ride in Kafka records (wire/WIRE.md).

mod completion;
pub mod headers;
mod reply;
mod request;

pub use completion::Completion;
// For the fuzz targets and tests (feature `unstable-internals`).
#[allow(unused_imports)]
pub use completion::{CompletionError, COMPLETIONS};
pub use reply::Reply;
// `RequestError` is for the fuzz targets (feature `unstable-internals`).
#[allow(unused_imports)]
pub use request::{read_metadata, ReplyTo, Request, RequestError, RequestId};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
