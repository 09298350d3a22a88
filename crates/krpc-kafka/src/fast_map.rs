//! The hash map of the request path's bookkeeping: waiters by correlation id, requests in flight
//! by broker, fetch sessions by broker, connections by broker and lane, the producer's
//! partition queues and sequence numbers, the fetcher's holes, the metadata cache's leader
//! index. (Not the public maps of `ClusterMetadata`, which keep std's hasher so their types
//! name no other crate.)
//!
//! `std`'s default hasher (SipHash-1-3) showed as about 1.6% of the client's user-space CPU in a
//! produce-then-fetch round trip (`perf`, 2026-12-01), spent on these keys (topic names among
//! them) a few times per request. foldhash's fast hasher, which hashbrown uses by default, is
//! several times cheaper on them. It is seeded per process and per map, which foldhash calls
//! minimally resistant to deliberate collisions: enough here, where the only keys taken from
//! the network come from the cluster's own metadata: its brokers' addresses and its topic
//! names (in the metadata cache's leader index). A principal allowed to create topics could
//! pick colliding names; the worst it gets is slower lookups in this client's cache.

use std::collections::HashMap;

/// A `HashMap` with foldhash's fast, per-process seeded hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
