//! Counters of what a server did, readable while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters of a server.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A snapshot of [`Counters`].
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct ServerStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// The current values.
            pub fn snapshot(&self) -> ServerStats {
                ServerStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl std::fmt::Display for ServerStats {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut first = true;
                $(
                    if !first { f.write_str(" ")?; }
                    first = false;
                    write!(f, "{}={}", stringify!($name), self.$name)?;
                )*
                let _ = first;
                Ok(())
            }
        }
    };
}

counters! {
    /// Records taken from the request topic.
    received,
    /// Calls whose handler returned a value.
    ok,
    /// Calls whose handler returned an error.
    handler_errors,
    /// Calls whose handler panicked.
    panics,
    /// Calls of a method the service does not have.
    unknown_method,
    /// Calls whose arguments did not decode into the method's parameters.
    bad_arguments,
    /// Records that are not valid requests (missing or malformed headers, other wire versions).
    malformed,
    /// Requests not started because their deadline had passed.
    expired,
    /// Calls whose handler was still running at the deadline: cancelled through its context
    /// and answered DEADLINE_EXCEEDED (its permit released).
    deadline_exceeded,
    /// Calls whose handler was stopped because the server stopped (drain timeout run out):
    /// not answered, left uncommitted for the partition's next owner.
    stopped,
    /// Redelivered requests not run again (their reply re-sent, or still running).
    deduplicated,
    /// Requests over the size limit.
    oversize,
    /// Requests refused by payload security (unsealed, forged, wrong key, too old, replayed)
    /// or, in the legacy format, by a checksum mismatch.
    auth_failures,
    /// Legacy (Python kafka-rpc 1.0.8) client handshakes answered.
    handshakes,
    /// Records copied to the dead-letter topic.
    dead_lettered,
    /// Dead letters that could not be produced.
    dead_letter_failures,
    /// One-way calls run (no reply sent).
    one_way,
    /// Replies that could not be produced.
    reply_failures,
    /// Offset commits that failed.
    commit_failures,
    /// Partition assignments received: one per rebalance this server took part in.
    assignments,
    /// Record batches of the request topic that could not be decoded (unsupported codec,
    /// corrupt) and were stepped over: their records cannot be read, so cannot be answered.
    undecodable_batches,
    /// Completion records deleted by trimming the completion topic to the dedup window
    /// (`ServerOptions::completion_trim_interval`).
    completions_trimmed,
    /// Request-topic offsets jumped over by offset resets (a committed position below the log
    /// start that retention or DeleteRecords moved): those requests are gone from the broker.
    reset_skipped_offsets,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
