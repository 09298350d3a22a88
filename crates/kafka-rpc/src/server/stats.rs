//! Counters of what a server did, readable while it runs, and exported through the `metrics`
//! facade as `krpc_server_<name>_total{service}` once the server runs (see
//! [`crate::metrics`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// One counter of [`Counters`]: its value in memory, and the `metrics` counter it also
/// increments once the server has bound it to its service (when it starts running).
#[derive(Debug, Default)]
pub struct Stat {
    value: AtomicU64,
    exported: OnceLock<metrics::Counter>,
}

impl Stat {
    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// The current value (what an `AtomicU64` field gave; `order` as for
    /// [`AtomicU64::load`]).
    pub fn load(&self, order: Ordering) -> u64 {
        self.value.load(order)
    }

    /// Adds `n`, in memory and to the exported counter.
    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        if let Some(c) = self.exported.get() {
            c.increment(n);
        }
    }

    /// Sets a counter kept elsewhere (the consumer's) to its running total `total`; the
    /// exported counter grows by the difference (so servers of one service in one process add
    /// up instead of overwriting each other).
    pub(crate) fn set_total(&self, total: u64) {
        let before = self.value.swap(total, Ordering::Relaxed);
        if let Some(c) = self.exported.get() {
            c.increment(total.saturating_sub(before));
        }
    }
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Live counters of a server.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: Stat,)*
            /// The server's other metrics (histograms, gauges), once bound.
            exported: OnceLock<crate::metrics::ServerMetrics>,
        }

        /// A snapshot of [`Counters`]. `#[non_exhaustive]`: counters are added over time.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct ServerStats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Counters {
            /// The current values.
            pub fn snapshot(&self) -> ServerStats {
                ServerStats { $($name: self.$name.get(),)* }
            }

            /// From now on, every counter also increments its `metrics` counter
            /// (`krpc_server_<name>_total{service}`) and the server's histograms and gauges
            /// are recorded, in whatever recorder is installed now. The first binding stays.
            pub(crate) fn bind(&self, service: &str) {
                $(
                    let _ = self.$name.exported.set(crate::metrics::server_counter(
                        crate::metrics::server_counter_name!($name),
                        service,
                    ));
                )*
                let _ = self.exported.set(crate::metrics::ServerMetrics::new(service));
            }

            /// The server's histograms and gauges (`None` before [`Counters::bind`]).
            pub(crate) fn exported(&self) -> Option<&crate::metrics::ServerMetrics> {
                self.exported.get()
            }
        }

        /// Every counter: its name in [`ServerStats`], its `metrics` name
        /// (`krpc_server_<name>_total`, labelled `service`) and its doc text.
        pub const COUNTER_NAMES: &[(&str, &str, &str)] = &[
            $((
                stringify!($name),
                crate::metrics::server_counter_name!($name),
                concat!($($doc),*),
            ),)*
        ];

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
    /// Request records whose `traceparent` or `tracestate` header was invalid and ignored (the
    /// request ran in a new trace, or without the state; see [`crate::trace`]).
    invalid_trace_headers,
}

impl Counters {
    /// Adds one to a counter (and to its `metrics` counter once bound).
    pub fn bump(counter: &Stat) {
        counter.add(1);
    }
}
