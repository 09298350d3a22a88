//! The Python kafka-rpc 1.0.8 wire format ("legacy"), so Rust and Python services interoperate
//! while a fleet migrates: a [`Server`](crate::Server) with
//! [`ServerOptions::legacy`](crate::ServerOptions::legacy) serves the Python `KRPCClient`, and a
//! [`LegacyClient`] calls the Python `KRPCServer`.
//!
//! The format: requests on `krpc_<name>_server`, replies on `krpc_<name>_client`, the record key
//! a task id (a uuid in hex) shared by request and reply, a msgpack map as the value
//! (module `message`), one `checksum` header (crc32, when `verify` is on) and an optional AES mode
//! (module `cipher`). A record keyed `handshake` is answered in kind. Python exceptions travel as
//! pickles; we write them for Python callers (module `pickle`) and never read them: a Python
//! server's exception reaches a Rust caller as its traceback text.
//!
//! What the format lacks stays lacking for legacy callers: no deadline travels (the server
//! cannot tell an abandoned call), the checksum and the cipher are no protection against
//! tampering, and Python clients share one consumer group (`krpc`), so their replies reach
//! only one Python client per service. Our server keeps its guarantees (commit after reply,
//! dedup, dead letters, a reply for every failure) in this format too.

mod client;
mod names;

crate::internal_mods! {
    cipher;
    message;
    pickle;
}

use std::time::Duration;

pub use cipher::LegacyCipher;
pub use client::{LegacyClient, LegacyClientOptions};
pub use message::LegacyFormat;
#[cfg(feature = "unstable-internals")]
pub use message::{LegacyCall, LegacyReply, OpenError};
#[cfg(not(feature = "unstable-internals"))]
pub(crate) use message::{LegacyCall, LegacyReply, OpenError};
pub use names::*;

use crate::envelope::RequestId;

/// How a [`Server`](crate::Server) serves a legacy service (the service name is the Python
/// `topic_name`).
///
/// `#[non_exhaustive]`: start from [`LegacyOptions::default`] and chain the `with_*` setters;
/// [`Server::new`](crate::Server::new) checks it ([`LegacyOptions::validate`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LegacyOptions {
    /// Checksum and encryption settings; they must match the Python clients'.
    pub format: LegacyFormat,
    /// Consumer group: [`PYTHON_GROUP`] unless set, so Rust and Python servers of one service
    /// share its requests (in groups of their own, each would run every request).
    pub group: String,
    /// Partitions of the topics when we create them (the Python server's 64).
    pub partitions: i32,
}

impl Default for LegacyOptions {
    fn default() -> Self {
        Self {
            format: LegacyFormat::default(),
            group: PYTHON_GROUP.to_string(),
            partitions: PYTHON_PARTITIONS,
        }
    }
}

impl LegacyOptions {
    /// Checks the settings, as [`Server::new`](crate::Server::new) does: a consumer group
    /// (Java's `group.id` must not be empty) and at least one partition.
    ///
    /// # Errors
    ///
    /// [`crate::RpcError::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<(), crate::RpcError> {
        crate::client::check(!self.group.is_empty(), || {
            "LegacyOptions::group (group.id) must not be empty, got \"\"".into()
        })?;
        crate::client::check(self.partitions >= 1, || {
            format!(
                "LegacyOptions::partitions must be >= 1, got {}",
                self.partitions
            )
        })
    }
}

crate::client::with_setters! { LegacyOptions {
    /// Sets [`format`](Self::format).
    with_format(format: LegacyFormat);
    /// Sets [`group`](Self::group) (the consumer group's `group.id`).
    with_group(group: into String);
    /// Sets [`partitions`](Self::partitions).
    with_partitions(partitions: i32);
}}

/// The task id a key holds: 32 hex digits (a uuid4's `hex`), as 16 bytes.
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn task_id(key: &[u8]) -> Option<RequestId> {
    if key.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    hex::decode_to_slice(key, &mut id).ok()?;
    Some(RequestId(id))
}

/// The partition librdkafka's default partitioner (`consistent_random`: crc32 of the key)
/// gives `key`, so our replies land where a Python server's would.
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn reply_partition(key: &[u8], partitions: i32) -> i32 {
    (crc32fast::hash(key) % partitions.max(1) as u32) as i32
}

/// Now, as the Python server writes its `time` field (`%Y-%m-%d %H:%M:%S.%f`), in UTC.
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn now_text() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_default()
}

/// The default time a legacy call waits (the Python client's `timeout=10`).
pub const PYTHON_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_32_hex_digits() {
        let id = task_id(b"0123456789abcdef0123456789ABCDEF").unwrap();
        assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
        assert!(task_id(b"handshake").is_none());
        assert!(task_id(b"0123456789abcdef0123456789abcdeg").is_none());
    }

    #[test]
    fn now_reads_like_pythons_strftime() {
        let t = now_text();
        assert_eq!(t.len(), 26, "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[19..20], ".");
    }
}
