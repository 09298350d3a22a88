//! KIP-227 incremental fetch sessions: what one broker's session holds, and what the next
//! Fetch request to that broker says (the Java client's `FetchSessionHandler` does the same).
//!
//! - The first request to a broker is full: session id 0, epoch 0 (create a session), every
//!   partition listed. A response with a non-zero session id means the broker keeps one; the
//!   next requests carry that id and epochs 1, 2, ... (after `i32::MAX`, 1 again) and list only
//!   partitions that are new or whose fetch offset or byte limit changed since the last request,
//!   plus the partitions dropped from the fetch set as `forgotten_topics_data`.
//! - A response with session id 0 to a create means the broker keeps no session for us (nisshi;
//!   a broker with `max.incremental.fetch.session.cache.slots` 0 or a full session cache;
//!   brokers before Kafka 1.1 never get here: sessions need Fetch v7): every request stays
//!   full with session id 0 and epoch 0, as Java's.
//! - FETCH_SESSION_ID_NOT_FOUND (70) starts afresh (id 0, epoch 0); INVALID_FETCH_SESSION_EPOCH
//!   (71), any other top-level error, a failed or timed-out request and a request whose answer
//!   was never read (a cancelled poll) send a full request with the old id and epoch 0, which
//!   closes the old session and creates a new one (Java's `nextCloseExisting`).
//!
//! The state is updated when a request is built (what the broker's session holds from then on
//! is what the request said), so it never depends on whether the fetcher applied the answer:
//! positions move only from answers, and an unapplied answer leaves them where the session
//! already has them.

use std::collections::HashSet;
use std::sync::Arc;

use super::Ask;
use crate::fast_map::FastMap;

/// The first Fetch version with sessions (KIP-227, Kafka 1.1).
pub(super) const MIN_VERSION: i16 = 7;
/// The epoch that closes a session (KIP-227's `FINAL_EPOCH`).
pub(super) const FINAL_EPOCH: i32 = -1;
/// Top-level error: the session id is not (or no longer) known to the broker.
pub(super) const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
/// Top-level error: the epoch is not the one the broker expects next.
pub(super) const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// A partition of a session: topic and partition.
type Key = (Arc<str>, i32);

/// One broker's fetch session, as this fetcher sees it.
#[derive(Debug, Default)]
pub(super) struct Session {
    /// The broker's session id (0: none). With `next_epoch` 0 and a non-zero id, the next
    /// (full) request closes this session and creates a new one.
    id: i32,
    /// Epoch of the next request: 0 full (create), 1.. incremental.
    next_epoch: i32,
    /// What the broker's session holds: each partition's fetch offset and byte limit as the
    /// last request sent them.
    held: FastMap<Key, (i64, i32)>,
    /// A request was built and its answer not yet handled.
    in_flight: bool,
    /// The broker answered the last create with session id 0 (logged once): the next create
    /// does not build `held` (see [`Session::plan`]).
    declined: bool,
}

/// What one Fetch request says about the session.
#[derive(Debug)]
pub(super) struct Plan {
    /// The request's `session_id`.
    pub session_id: i32,
    /// The request's `session_epoch`.
    pub epoch: i32,
    /// Indices (into the round's asks) of the partitions the request lists.
    pub listed: Vec<usize>,
    /// Partitions the request removes from the session (`forgotten_topics_data`).
    pub forgotten: Vec<Key>,
}

/// How the fetcher treats a broker's answer, as far as the session goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answered {
    /// Use the answer (its top-level error, if any, is handled as without sessions).
    Use,
    /// The session was refused (70/71 to an incremental request): drop this round's answer,
    /// no backoff; the next request is full.
    Refused,
}

/// The epoch after `epoch` (KIP-227: after `i32::MAX` comes 1; 0 is only for creating).
pub(super) fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl Session {
    /// The session part of the next request for `asks` (every partition this round fetches
    /// from the broker), and the held state updated to what that request says.
    pub fn plan(&mut self, addr: &str, asks: &[Ask]) -> Plan {
        if std::mem::replace(&mut self.in_flight, true) {
            self.reset(addr, "the answer to the last request was never read");
        }
        if self.next_epoch == 0 {
            // What a session created by this request would hold. Not built for a broker that
            // declined the last create (nisshi, a broker with
            // `max.incremental.fetch.session.cache.slots` 0 or a full session cache): it would
            // be thrown away on every fetch. Should such a broker grant one
            // after all, `answered` makes the next request a full one that replaces it.
            self.held.clear();
            if !self.declined {
                self.held
                    .extend(asks.iter().map(|(topic, partition, offset, max_bytes)| {
                        ((topic.clone(), *partition), (*offset, *max_bytes))
                    }));
            }
            return Plan {
                session_id: self.id,
                epoch: 0,
                listed: (0..asks.len()).collect(),
                forgotten: Vec::new(),
            };
        }
        let mut listed = Vec::new();
        let mut wanted: HashSet<Key> = HashSet::with_capacity(asks.len());
        for (i, (topic, partition, offset, max_bytes)) in asks.iter().enumerate() {
            let key = (topic.clone(), *partition);
            if self.held.insert(key.clone(), (*offset, *max_bytes)) != Some((*offset, *max_bytes)) {
                listed.push(i);
            }
            wanted.insert(key);
        }
        let forgotten: Vec<Key> = self
            .held
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in &forgotten {
            self.held.remove(key);
        }
        Plan {
            session_id: self.id,
            epoch: self.next_epoch,
            listed,
            forgotten,
        }
    }

    /// The broker answered the request `plan` described with top-level `error_code` and
    /// `session_id`.
    pub fn answered(
        &mut self,
        addr: &str,
        plan: &Plan,
        error_code: i16,
        session_id: i32,
    ) -> Answered {
        self.in_flight = false;
        let incremental = plan.epoch > 0;
        match error_code {
            0 => {}
            FETCH_SESSION_ID_NOT_FOUND if incremental => {
                tracing::debug!(broker = %addr, session = self.id, epoch = plan.epoch,
                    "fetch session not found by the broker (FETCH_SESSION_ID_NOT_FOUND); next fetch creates a new one");
                self.id = 0;
                self.next_epoch = 0;
                return Answered::Refused;
            }
            INVALID_FETCH_SESSION_EPOCH if incremental => {
                self.reset(addr, "INVALID_FETCH_SESSION_EPOCH");
                return Answered::Refused;
            }
            _ => {
                self.reset(addr, "top-level fetch error");
                return Answered::Use;
            }
        }
        if !incremental {
            if session_id == 0 {
                if !self.declined {
                    self.declined = true;
                    tracing::debug!(broker = %addr,
                        "the broker keeps no fetch session for us (session id 0): full fetches");
                }
                self.id = 0;
                self.next_epoch = 0;
            } else if self.declined {
                // Granted by a broker that had declined, to a request whose partitions were
                // not kept (see `plan`): the next request is full again and replaces it.
                tracing::debug!(broker = %addr, session = session_id,
                    "fetch session granted after a refusal; the next fetch replaces it");
                self.declined = false;
                self.id = session_id;
                self.next_epoch = 0;
            } else {
                tracing::debug!(broker = %addr, session = session_id, partitions = self.held.len(),
                    "fetch session created");
                self.id = session_id;
                self.next_epoch = 1;
            }
        } else if session_id == 0 {
            tracing::debug!(broker = %addr, session = self.id,
                "the broker closed the fetch session; next fetch creates a new one");
            self.id = 0;
            self.next_epoch = 0;
        } else if session_id != self.id {
            // Not what KIP-227 allows: start afresh rather than guess which session is meant.
            tracing::warn!(broker = %addr, session = self.id, answered = session_id,
                "incremental fetch answered for another session; next fetch creates a new one");
            self.id = 0;
            self.next_epoch = 0;
        } else {
            self.next_epoch = next_epoch(plan.epoch);
        }
        Answered::Use
    }

    /// The request failed (connection failure, timeout, unreadable answer): the broker may
    /// have evicted the session or moved its epoch; the next request is full.
    pub fn failed(&mut self, addr: &str, reason: &str) {
        self.in_flight = false;
        self.reset(addr, reason);
    }

    /// The broker's session to close, if one may be open (its id), forgotten here either
    /// way: the next request, if any, creates a new one.
    pub fn take_for_close(&mut self) -> Option<i32> {
        let id = std::mem::take(&mut self.id);
        self.next_epoch = 0;
        self.held.clear();
        self.in_flight = false;
        (id != 0).then_some(id)
    }

    /// The next request is full and closes the current session (if any).
    fn reset(&mut self, addr: &str, reason: &str) {
        if self.next_epoch != 0 {
            tracing::debug!(broker = %addr, session = self.id, reason,
                "fetch session reset; next fetch is full");
        }
        self.next_epoch = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(p: i32, offset: i64) -> Ask {
        (Arc::from("t"), p, offset, 100)
    }

    #[test]
    fn a_session_lists_only_changed_partitions_and_forgets_removed_ones() {
        let mut s = Session::default();
        let first = s.plan("b", &[ask(0, 0), ask(1, 0), ask(2, 0)]);
        assert_eq!(
            (first.session_id, first.epoch, first.listed.len()),
            (0, 0, 3)
        );
        assert_eq!(s.answered("b", &first, 0, 9), Answered::Use);
        let second = s.plan("b", &[ask(0, 0), ask(1, 5)]);
        assert_eq!((second.session_id, second.epoch), (9, 1));
        assert_eq!(second.listed, vec![1]);
        assert_eq!(second.forgotten, vec![(Arc::from("t"), 2)]);
        s.answered("b", &second, 0, 9);
        let third = s.plan("b", &[ask(0, 0), ask(1, 5)]);
        assert_eq!(
            (third.epoch, third.listed.len(), third.forgotten.len()),
            (2, 0, 0)
        );
    }

    #[test]
    fn session_errors_and_failures_make_the_next_request_full() {
        let mut s = Session::default();
        let asks = [ask(0, 0), ask(1, 0)];
        let p = s.plan("b", &asks);
        s.answered("b", &p, 0, 9);
        let p = s.plan("b", &asks);
        assert_eq!(
            s.answered("b", &p, FETCH_SESSION_ID_NOT_FOUND, 0),
            Answered::Refused
        );
        let p = s.plan("b", &asks);
        assert_eq!((p.session_id, p.epoch, p.listed.len()), (0, 0, 2));
        s.answered("b", &p, 0, 10);
        let p = s.plan("b", &asks);
        assert_eq!(
            s.answered("b", &p, INVALID_FETCH_SESSION_EPOCH, 0),
            Answered::Refused
        );
        // Closes session 10 and creates a new one.
        let p = s.plan("b", &asks);
        assert_eq!((p.session_id, p.epoch, p.listed.len()), (10, 0, 2));
        s.answered("b", &p, 0, 11);
        let p = s.plan("b", &asks);
        assert_eq!(p.epoch, 1);
        s.failed("b", "timeout");
        let p = s.plan("b", &asks);
        assert_eq!((p.session_id, p.epoch), (11, 0));
        s.answered("b", &p, 0, 12);
        assert_eq!(s.plan("b", &asks).epoch, 1);
        // That plan's answer was never handled (a cancelled poll): the next request is full.
        let p = s.plan("b", &asks);
        assert_eq!((p.session_id, p.epoch, p.listed.len()), (12, 0, 2));
    }

    #[test]
    fn a_broker_without_sessions_gets_full_creates_every_time() {
        let mut s = Session::default();
        for _ in 0..3 {
            let p = s.plan("b", &[ask(0, 0)]);
            assert_eq!((p.session_id, p.epoch, p.listed.len()), (0, 0, 1));
            s.answered("b", &p, 0, 0);
        }
    }

    /// A broker that declined (session id 0) and then grants a session to a full request:
    /// that request's partitions were not kept, so the session is replaced by the next full
    /// request (its id, epoch 0), and the one after is incremental, listing nothing that
    /// did not move.
    #[test]
    fn a_session_granted_after_a_refusal_is_replaced_by_a_full_request() {
        let mut s = Session::default();
        let asks = [ask(0, 0), ask(1, 0)];
        let p = s.plan("b", &asks);
        s.answered("b", &p, 0, 0); // declined
        let p = s.plan("b", &asks);
        assert!(s.held.is_empty(), "nothing kept for a broker that declines");
        assert_eq!(s.answered("b", &p, 0, 7), Answered::Use); // granted after all
        let p = s.plan("b", &asks);
        assert_eq!((p.session_id, p.epoch, p.listed.len()), (7, 0, 2));
        s.answered("b", &p, 0, 8);
        let p = s.plan("b", &asks);
        assert_eq!((p.session_id, p.epoch, p.listed.len()), (8, 1, 0));
    }

    #[test]
    fn the_epoch_wraps_to_one() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
